package payload

import (
	"bytes"
	"errors"
)

// Inline attachments are never stored in a job's body: the body holds a reference in their place,
// and the sender streams the content from the attachment spool on every attempt. So an attachment
// is never held whole in memory, and the body is still stored once and never rebuilt.
//
// A reference is the whole JSON string value of content_base64: "\u0000spool:<section>\u0000" once
// encoded, where <section> is the attachment's IMAP part number. No message can produce it, since
// every payload string is cleaned of NUL (see New). SplitInline finds the references again.

// inlineStart and inlineEnd delimit a reference as it appears in an encoded body.
const (
	inlineStart = `"\u0000spool:`
	inlineEnd   = `\u0000"`
)

// InlineFromSpool marks attachment i of the payload as shipped inline from the spooled content of
// IMAP section sec: in the stored body its content_base64 holds a reference that the sender
// replaces, on every attempt, with the standard base64 (RFC 4648 §4, padded, no line breaks) of
// the job's spooled file for sec. The caller puts that file in the spool before the job commits.
func (p *Payload) InlineFromSpool(i int, sec string) {
	p.Attachments[i].ContentBase64 = "\x00spool:" + sec + "\x00"
}

// HasInline reports whether a stored body refers to spooled attachment content.
func HasInline(body []byte) bool { return bytes.Contains(body, []byte(inlineStart)) }

// Piece is a run of a stored body: literal bytes, or (Section set) the place of one attachment's
// base64 content, between the quotes of its JSON string.
type Piece struct {
	Literal []byte
	Section string
}

// ErrMalformedInline is a stored body whose reference does not end.
var ErrMalformedInline = errors.New("malformed inline attachment reference")

// SplitInline cuts a stored body at its references: literal pieces (which keep the quotes around
// each reference) alternate with the sections whose base64 goes between them; the literals, with
// every section's base64 in its place, are the body to send. A body without references is one
// literal piece. The section is returned as written; the spool checks it.
func SplitInline(body []byte) ([]Piece, error) {
	var out []Piece
	rest := body
	for {
		i := bytes.Index(rest, []byte(inlineStart))
		if i < 0 {
			return append(out, Piece{Literal: rest}), nil
		}
		ref := rest[i+len(inlineStart):]
		j := bytes.Index(ref, []byte(inlineEnd))
		if j < 0 {
			return nil, ErrMalformedInline
		}
		// The literal ends with the opening quote; the rest starts with the closing one.
		out = append(out, Piece{Literal: rest[:i+1]}, Piece{Section: string(ref[:j])})
		rest = ref[j+len(inlineEnd)-1:]
	}
}
