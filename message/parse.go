package message

import (
	"bytes"
	"fmt"
	"io"
	"math"

	"github.com/emersion/go-imap/v2"
)

// Parse reads a whole RFC 5322 message (an .eml file) from r and builds its Message. It returns
// an error only when reading r fails; malformed content yields defects instead.
//
// Parse streams: it reads r once, line by line, with a MIME state machine that keeps an explicit
// stack of open multiparts (RFC 2046 §5.1) rather than recursing, so memory and stack stay
// bounded by lim however the input is shaped. Attachment content is counted, never decoded or
// kept; only text/plain and text/html bodies are decoded, from at most Limits.TextPartBytes of
// raw content each. Line breaks may be CRLF, LF or CR: sizes are counted as if they were CRLF,
// which is what IMAP servers report. Size is the number of bytes read from r.
//
// Parse and Build give the same Message for the same well-formed mail (Flags and InternalDate
// aside, which only IMAP knows). Defects that only a full read can reveal — a long line or a
// missing closing boundary in an attachment — appear only from Parse, and a multipart without
// a boundary is read as one text part here, while servers disagree on its structure.
func Parse(r io.Reader, lim Limits) (*Message, error) {
	lim = lim.withDefaults()
	p := &parser{lim: lim, lr: newLineReader(r, lim.LineBytes), texts: make(map[*imap.BodyStructureSinglePart]*parsedText),
		raws: map[*imap.BodyStructureSinglePart][]byte{}, innerIDs: map[*imap.BodyStructureSinglePart]string{}}
	p.dec = newDecoder(&p.d)
	p.run()
	if err := p.lr.ioErr(); err != nil {
		return nil, fmt.Errorf("read message: %w", err)
	}

	m := &Message{Size: p.lr.raw}
	m.applyHeader(p.rootFields, p.dec)
	t := flatten(p.root, lim, p.dec, &p.d)
	m.applyBodies(t, p.bodySource, lim, &p.d)
	m.TextFetched, m.HTMLFetched = true, true
	m.applyReports(t, p.rootFields, p, lim, &p.d)
	m.finish(p.rootFields, p.rootRaw, &p.d)
	return m, nil
}

// parser modes: what the current line belongs to.
const (
	modeHeader   = iota // a header section
	modeLeaf            // the body of a leaf part
	modeSkip            // content not looked at (too deep, too many parts)
	modePreamble        // before the first boundary of the innermost multipart
	modeEpilogue        // after the closing boundary of the innermost multipart
)

// frame is an open container: a multipart waiting for its boundaries, or a message/rfc822 part
// whose size is being counted.
type frame struct {
	multi  *imap.BodyStructureMultiPart // a multipart, or nil
	dash   []byte                       // "--" + boundary
	closed bool                         // the closing boundary was seen
	digest bool                         // multipart/digest: parts default to message/rfc822

	msg   *imap.BodyStructureSinglePart // a message/rfc822 part, or nil
	start int64
	outer bool // msg is not inside another encapsulated message: its Message-ID is kept

	depth int // depth of the container entity
}

// openLeaf is the leaf part whose body is being read.
type openLeaf struct {
	part  *imap.BodyStructureSinglePart
	start int64
	text  *capture // non-nil for a text body candidate
	raw   *capture // non-nil for a report or calendar part (reportSource)
}

// parsedText is a decoded text body candidate, kept until the bodies are chosen.
type parsedText struct {
	text      string
	truncated bool
	dropped   bool // not kept: the DecodedBytes budget was spent
	defects   defects
}

type parser struct {
	lim Limits
	lr  *lineReader
	d   defects
	dec *decoder

	pos     int64 // offset of the current line, counting line breaks as CRLF
	prevEOL int64 // length of the previous line's break: 2, or 0 at the start

	rootFields []rawField
	rootRaw    []byte
	root       imap.BodyStructure

	mode   int
	frames []*frame
	hdr    *headerReader
	hdrTop bool // hdr is the message's own header
	hdrFor *frame
	depth  int // depth of the entity whose header is being read
	leaf   *openLeaf

	parts     int
	stopParts bool
	kept      int64
	capBuf    []byte // reused raw buffer of text candidates
	texts     map[*imap.BodyStructureSinglePart]*parsedText
	// raws and innerIDs are what applyReports reads: the raw content of report and calendar
	// parts (at most maxRawParts of them), and the Message-ID of each message/rfc822 part,
	// both outside encapsulated messages.
	raws     map[*imap.BodyStructureSinglePart][]byte
	innerIDs map[*imap.BodyStructureSinglePart]string
}

// maxRawParts bounds the report and calendar parts Parse keeps (each at most CalendarBytes).
const maxRawParts = 8

// raw and innerMessageID make the parser the reportSource of Parse.
func (p *parser) raw(n *node) ([]byte, bool) {
	b, ok := p.raws[n.single]
	return b, ok
}

func (p *parser) innerMessageID(n *node) (string, bool) {
	id, ok := p.innerIDs[n.single]
	return id, ok
}

func (p *parser) run() {
	p.mode = modeHeader
	p.hdr = &headerReader{limit: p.lim.HeaderBytes, keepRaw: true}
	p.hdrTop = true
	for {
		l, ok := p.lr.next()
		if !ok {
			break
		}
		start := p.pos
		eol := int64(0)
		if l.eol {
			eol = 2
		}
		p.pos += l.full + eol
		if l.cut() {
			p.d.add("line_too_long")
			p.d.truncated = true
		}
		p.line(l, start)
		p.prevEOL = eol
	}
	p.eof()
}

// line handles one line that starts at offset start (p.pos is already past it).
func (p *parser) line(l line, start int64) {
	if len(l.b) >= 2 && l.b[0] == '-' && l.b[1] == '-' {
		for k := len(p.frames) - 1; k >= 0; k-- {
			f := p.frames[k]
			if f.multi == nil {
				continue
			}
			if delim, closing := f.match(l.b); delim || closing {
				p.boundary(k, start, closing)
				return
			}
		}
	}
	switch p.mode {
	case modeHeader:
		if len(l.b) == 0 && l.full == 0 {
			p.endHeader()
			return
		}
		p.hdr.add(l)
	case modeLeaf:
		if p.leaf.text != nil {
			p.leaf.text.add(l)
		}
		if p.leaf.raw != nil {
			p.leaf.raw.add(l)
		}
	}
}

// match reports whether line is a boundary delimiter line or the close delimiter of f
// (RFC 2046 §5.1.1). Trailing white space is allowed after a delimiter; anything may follow the
// closing "--".
func (f *frame) match(line []byte) (delim, closing bool) {
	if !bytes.HasPrefix(line, f.dash) {
		return false, false
	}
	rest := line[len(f.dash):]
	if len(rest) >= 2 && rest[0] == '-' && rest[1] == '-' {
		return false, true
	}
	return len(bytes.Trim(rest, " \t")) == 0, false
}

// boundary handles a boundary line of frame k that starts at offset start. Whatever is open
// inside frame k ends just before the line break that precedes the boundary line.
func (p *parser) boundary(k int, start int64, closing bool) {
	if p.mode == modeHeader {
		p.endHeader() // a part whose header runs into the boundary: an empty body
	}
	end := start - p.prevEOL
	p.closeLeaf(end, false)
	for len(p.frames)-1 > k {
		p.popFrame(end)
	}
	f := p.frames[k]
	switch {
	case f.closed:
		p.mode = modeEpilogue // boundary lines after the close delimiter: epilogue text
	case closing:
		f.closed = true
		p.mode = modeEpilogue
	case p.stopParts:
		p.mode = modeSkip
	default:
		p.mode = modeHeader
		p.hdr = &headerReader{limit: p.lim.HeaderBytes}
		p.hdrTop = false
		p.hdrFor = f
		p.depth = f.depth + 1
	}
}

// popFrame ends the innermost frame at offset end.
func (p *parser) popFrame(end int64) {
	f := p.frames[len(p.frames)-1]
	p.frames = p.frames[:len(p.frames)-1]
	if f.multi != nil && !f.closed {
		p.d.add("missing_close_boundary")
	}
	if f.msg != nil {
		f.msg.Size = size32(end - f.start)
	}
}

// eof ends everything still open. Inside an open multipart, the final line break is left out of
// the part, as the line break before a boundary would be.
func (p *parser) eof() {
	if p.mode == modeHeader {
		p.endHeader()
	}
	inMultipart := false
	for _, f := range p.frames {
		if f.multi != nil && !f.closed {
			inMultipart = true
		}
	}
	end := p.pos
	if inMultipart {
		end -= p.prevEOL
	}
	p.closeLeaf(end, !inMultipart)
	for len(p.frames) > 0 {
		p.popFrame(end)
	}
}

// closeLeaf ends the open leaf at offset end; withEOL says whether a final line break belongs
// to its body.
func (p *parser) closeLeaf(end int64, withEOL bool) {
	lf := p.leaf
	if lf == nil {
		return
	}
	p.leaf = nil
	lf.part.Size = size32(end - lf.start)
	if lf.raw != nil {
		lf.raw.end(withEOL)
		p.raws[lf.part] = lf.raw.buf
	}
	if lf.text == nil {
		return
	}
	lf.text.end(withEOL)
	pt := &parsedText{}
	pt.text, pt.truncated = lf.text.decode(lf.part.Encoding, lf.part.Params["charset"], p.lim, &pt.defects)
	p.capBuf = lf.text.buf[:0]
	if p.kept+int64(len(pt.text)) > p.lim.DecodedBytes {
		pt.text, pt.dropped = "", true
	}
	p.kept += int64(len(pt.text))
	p.texts[lf.part] = pt
}

func size32(n int64) uint32 {
	if n < 0 {
		return 0
	}
	if n > math.MaxUint32 {
		return math.MaxUint32
	}
	return uint32(n)
}

// endHeader completes the header being read and creates its entity.
func (p *parser) endHeader() {
	fields := p.hdr.finish()
	p.hdr.defects(&p.d)
	if p.hdrTop {
		p.rootFields, p.rootRaw = fields, p.hdr.raw
		p.hdrTop = false
		p.root = p.entity(fields, 0, false, nil)
		return
	}
	parent := p.hdrFor
	p.parts++
	if p.parts > p.lim.Parts {
		p.d.add("too_many_parts")
		p.d.truncated = true
		p.stopParts = true
		p.mode = modeSkip
		return
	}
	bs := p.entity(fields, p.depth, parent.digest, parent)
	switch {
	case parent.multi != nil:
		parent.multi.Children = append(parent.multi.Children, bs)
	case parent.msg != nil:
		parent.msg.MessageRFC822.BodyStructure = bs
		if parent.outer {
			id, _ := get(fields, "Message-Id")
			p.innerIDs[parent.msg] = messageID(id)
		}
	}
}

// entity creates the body structure of an entity whose header has just been read, at depth
// depth, and sets the mode for its body. parent is the frame it belongs to (nil for the
// message itself).
func (p *parser) entity(fields []rawField, depth int, digest bool, parent *frame) imap.BodyStructure {
	bodyStart := p.pos
	ct, hasCT := get(fields, "Content-Type")
	mt, params, ok := parseMediaHeader(ct)
	if !ok {
		p.d.add("bad_content_type")
	}
	if mt == "" && digest && (!hasCT || ok) {
		mt = "message/rfc822" // RFC 2046 §5.1.5
	}
	typ, sub, ok := splitMediaType(mt)
	if !ok {
		p.d.add("bad_content_type")
	}
	encValue, _ := get(fields, "Content-Transfer-Encoding")
	enc := normEncoding(encValue)
	dispRaw, _ := get(fields, "Content-Disposition")
	disp, dispParams, _ := parseMediaHeader(dispRaw)
	var dispStruct *imap.BodyStructureDisposition
	if disp != "" {
		dispStruct = &imap.BodyStructureDisposition{Value: disp, Params: dispParams}
	}

	if typ == "multipart" {
		boundary := params["boundary"]
		if boundary != "" {
			mp := &imap.BodyStructureMultiPart{Subtype: sub, Extended: &imap.BodyStructureMultiPartExt{
				Params: params, Disposition: dispStruct}}
			if depth+1 > p.lim.Depth {
				p.d.add("depth_exceeded")
				p.d.truncated = true
				p.mode = modeSkip
				return mp
			}
			p.frames = append(p.frames, &frame{multi: mp, dash: []byte("--" + boundary), digest: sub == "digest", depth: depth})
			p.mode = modePreamble
			return mp
		}
		// RFC 2046 §5.1.1 requires a boundary; without one the body is read as one text part.
		p.d.add("missing_boundary")
		typ, sub = "text", "plain"
	}

	sp := &imap.BodyStructureSinglePart{Type: typ, Subtype: sub, Params: params, Encoding: enc,
		Extended: &imap.BodyStructureSinglePartExt{Disposition: dispStruct}}
	if id, ok := get(fields, "Content-Id"); ok {
		sp.ID = id
	}
	mediaType := typ + "/" + sub
	if isMessageType(mediaType) && identityEncoding(enc) {
		sp.MessageRFC822 = &imap.BodyStructureMessageRFC822{}
		if depth+1 > p.lim.Depth {
			p.d.add("depth_exceeded")
			p.d.truncated = true
			p.leaf = &openLeaf{part: sp, start: bodyStart}
			p.mode = modeLeaf
			return sp
		}
		p.frames = append(p.frames, &frame{msg: sp, start: bodyStart, depth: depth, outer: !p.inMessage()})
		p.mode = modeHeader
		p.hdr = &headerReader{limit: p.lim.HeaderBytes}
		p.hdrFor = p.frames[len(p.frames)-1]
		p.depth = depth + 1
		return sp
	}

	p.leaf = &openLeaf{part: sp, start: bodyStart}
	p.mode = modeLeaf
	// Capture what node.bodyCandidate will consider a body (it cannot be known yet which
	// alternative wins); the text of an attached message never is one.
	leaf := node{mediaType: mediaType, filename: filenameOf(dispParams, params)}
	if (mediaType == "text/plain" || mediaType == "text/html") && !p.inMessage() &&
		disp != "attachment" && (disp == "inline" || leaf.filename == "") {
		p.leaf.text = &capture{buf: p.capBuf, limit: int(p.lim.TextPartBytes())}
		p.capBuf = nil
	}
	if len(p.raws) < maxRawParts && !p.inMessage() {
		switch {
		case isCalendar(&leaf):
			p.leaf.raw = &capture{limit: CalendarBytes}
		case isDSN(&leaf), isARF(&leaf), isHeadersType(mediaType):
			p.leaf.raw = &capture{limit: ReportBytes}
		}
	}
	return sp
}

// inMessage reports whether the current entity lies inside an attached message/rfc822 part,
// whose text is never the message's body.
func (p *parser) inMessage() bool {
	for _, f := range p.frames {
		if f.msg != nil {
			return true
		}
	}
	return false
}

// bodySource yields the decoded text of a body leaf captured while parsing.
func (p *parser) bodySource(n *node, d *defects) (string, bool, bool) {
	pt := p.texts[n.single]
	if pt == nil {
		return "", false, true
	}
	for k := range pt.defects.set {
		d.add(k)
	}
	if pt.defects.truncated {
		d.truncated = true
	}
	return pt.text, pt.truncated || pt.dropped, true
}

// capture collects the raw content of a text body part, with CRLF line breaks, up to limit
// bytes. The line break after the last line is held back until it is known not to precede a
// boundary (RFC 2046 §5.1.1: that CRLF belongs to the boundary).
type capture struct {
	buf      []byte
	limit    int
	pending  bool
	cut      bool
	longLine bool
}

func (c *capture) add(l line) {
	if l.cut() {
		c.longLine = true
	}
	if c.pending {
		c.write([]byte{'\r', '\n'})
	}
	c.write(l.b)
	c.pending = l.eol
}

func (c *capture) write(b []byte) {
	room := c.limit - len(c.buf)
	if len(b) > room {
		b = b[:max(room, 0)]
		c.cut = true
	}
	c.buf = append(c.buf, b...)
}

// end completes the capture; withEOL says whether a held-back final line break belongs to it.
func (c *capture) end(withEOL bool) {
	if withEOL && c.pending {
		c.write([]byte{'\r', '\n'})
	}
	c.pending = false
}

// decode turns the captured content into body text (see bodyText), recording what was cut.
func (c *capture) decode(enc, charset string, lim Limits, d *defects) (string, bool) {
	text, truncated := bodyText(c.buf, normEncoding(enc), charset, lim.TextBytes, d)
	if c.longLine {
		d.add("line_too_long")
		d.truncated = true
	}
	return text, truncated || c.cut || c.longLine
}
