package message

import (
	"bytes"
	"slices"
)

// Build builds the Message of one mail from what an IMAP fetch returned (see Pieces): the header
// section gives the header fields, BODYSTRUCTURE gives the attachments and says which sections
// are the bodies (BodySections), and the fetched sections in Parts give Text and HTML.
//
// TextFetched (HTMLFetched) is true when every text/plain (text/html) body section was in Parts,
// so a message without such a body has it true and an empty Text. Without a Structure, nothing
// is known about the body: no attachments, and TextFetched and HTMLFetched are false.
//
// For the same mail, Build given the body sections returns what Parse returns for the whole
// message, apart from Flags and InternalDate, which only IMAP knows, and from defects only a full
// read can reveal (see Parse).
func Build(p Pieces, lim Limits) *Message {
	lim = lim.withDefaults()
	var d defects
	dec := newDecoder(&d)

	h := &headerReader{limit: lim.HeaderBytes, keepRaw: true}
	fields := readHeader(h, p.Header, lim, &d)
	h.defects(&d)

	m := &Message{
		Size:         p.Size,
		InternalDate: p.InternalDate,
		Flags:        slices.Clone(p.Flags),
	}
	m.applyHeader(fields, dec)
	if p.Structure != nil {
		t := flatten(p.Structure, lim, dec, &d)
		src := func(n *node, d *defects) (string, bool, bool) {
			raw, ok := p.Parts[n.section]
			if !ok {
				return "", false, false
			}
			c := capture{limit: int(lim.TextPartBytes())}
			lr := newLineReader(bytes.NewReader(raw), lim.LineBytes)
			for {
				l, ok := lr.next()
				if !ok {
					break
				}
				c.add(l)
			}
			c.end(true)
			text, truncated := c.decode(n.encoding, n.params["charset"], lim, d)
			if p.PartialParts[n.section] && int64(len(raw)) < int64(n.single.Size) {
				truncated = true
			}
			return text, truncated, true
		}
		m.applyBodies(t, src, lim, &d)
		m.applyReports(t, fields, piecesSource{p: p, lim: lim}, lim, &d)
	}
	m.finish(fields, h.raw, &d)
	return m
}

// piecesSource gives the report analysis the fetched sections.
type piecesSource struct {
	p   Pieces
	lim Limits
}

func (s piecesSource) raw(n *node) ([]byte, bool) {
	b, ok := s.p.Parts[n.section]
	return b, ok
}

func (s piecesSource) innerMessageID(n *node) (string, bool) {
	b, ok := s.p.Parts[n.section+".HEADER"]
	if !ok {
		return "", false
	}
	if v, ok := get(headerFields(b, s.lim), "Message-Id"); ok {
		return messageID(v), true
	}
	return "", true
}
