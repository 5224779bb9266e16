package message

import (
	"io"
	"mime"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-message/charset"
)

// rawField is one header field as read: its name as written and its unfolded, undecoded value.
type rawField struct {
	name  string
	value string
}

// headerReader collects the fields of one header section, fed line by line. It keeps at most
// limit bytes (counting CRLF line ends); once the section grows beyond that, the field being
// read and every later one are dropped and tooLarge is set.
type headerReader struct {
	limit    int
	size     int
	tooLarge bool
	badLine  bool
	keepRaw  bool
	raw      []byte // the section with CRLF line ends, when keepRaw (up to limit bytes)
	fields   []rawField
	cur      []byte // the field being read: name, colon and value, folds removed
	started  bool   // a line has been seen
}

// add feeds one line (without its terminator) that is not the blank line ending the section.
func (h *headerReader) add(l line) {
	first := !h.started
	h.started = true
	if h.tooLarge {
		return
	}
	h.size += int(l.full) + 2
	if h.size > h.limit {
		h.tooLarge = true
		h.cur = h.cur[:0]
		return
	}
	if h.keepRaw {
		h.raw = append(h.raw, l.b...)
		h.raw = append(h.raw, '\r', '\n')
	}
	b := l.b
	if len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		if len(h.cur) > 0 {
			// RFC 5322 §2.2.3: unfolding removes the CRLF and keeps the white space.
			h.cur = append(h.cur, b...)
		} else {
			h.badLine = true // continuation without a field to continue
		}
		return
	}
	h.flush()
	if first && len(b) >= 5 && string(b[:5]) == "From " {
		return // an mbox "From " separator line before the header: not a field
	}
	h.cur = append(h.cur[:0], b...)
}

// flush completes the field being read.
func (h *headerReader) flush() {
	if len(h.cur) == 0 {
		return
	}
	b := h.cur
	h.cur = h.cur[:0]
	i := strings.IndexByte(string(b), ':')
	if i <= 0 {
		h.badLine = true
		return
	}
	name := strings.TrimRight(string(b[:i]), " \t")
	if name == "" {
		h.badLine = true
		return
	}
	for j := 0; j < len(name); j++ {
		if c := name[j]; c < 33 || c > 126 {
			h.badLine = true
			return
		}
	}
	h.fields = append(h.fields, rawField{name: name, value: strings.Trim(string(b[i+1:]), " \t")})
}

// finish ends the section and returns its fields.
func (h *headerReader) finish() []rawField {
	if !h.tooLarge {
		h.flush()
	}
	return h.fields
}

// defects lists what was wrong with the section.
func (h *headerReader) defects(d *defects) {
	if h.tooLarge {
		d.add("header_too_large")
		d.truncated = true
	}
	if h.badLine {
		d.add("bad_header")
	}
}

// get returns the raw value of the first field with the given name, and whether there is one.
func get(fields []rawField, name string) (string, bool) {
	for _, f := range fields {
		if strings.EqualFold(f.name, name) {
			return f.value, true
		}
	}
	return "", false
}

// defects collects defect names; the final list is sorted and unique.
type defects struct {
	set       map[string]bool
	truncated bool
}

func (d *defects) add(name string) {
	if d.set == nil {
		d.set = make(map[string]bool)
	}
	d.set[name] = true
}

// decoder decodes RFC 2047 encoded-words and charsets for one message. It exists per message (no
// package state) so that it can record defects; charsets come from go-message/charset.Reader,
// passed explicitly, so decoding does not depend on a global being registered.
type decoder struct {
	d  *defects
	wd mime.WordDecoder
}

func newDecoder(d *defects) *decoder {
	dec := &decoder{d: d}
	dec.wd.CharsetReader = dec.charsetReader
	return dec
}

// charsetReader converts text in the named charset to UTF-8. For an unknown charset it records
// "unknown_charset" and returns a reader that keeps ASCII and turns every other byte into U+FFFD,
// so that the result is valid UTF-8 and decoding goes on.
func (dec *decoder) charsetReader(name string, r io.Reader) (io.Reader, error) {
	name = strings.ToLower(strings.TrimSpace(name))
	switch name {
	case "utf-8", "utf8", "us-ascii", "ascii", "":
		return r, nil
	}
	cr, err := charset.Reader(name, r)
	if err != nil || cr == nil {
		dec.d.add("unknown_charset")
		return &asciiOnlyReader{r: r}, nil
	}
	return cr, nil
}

// asciiOnlyReader passes ASCII bytes and replaces every other byte with U+FFFD.
type asciiOnlyReader struct {
	r       io.Reader
	pending []byte
}

func (a *asciiOnlyReader) Read(p []byte) (int, error) {
	if len(a.pending) == 0 {
		buf := make([]byte, max(len(p)/3, 1))
		n, err := a.r.Read(buf)
		for _, c := range buf[:n] {
			if c < 0x80 {
				a.pending = append(a.pending, c)
			} else {
				a.pending = utf8.AppendRune(a.pending, utf8.RuneError)
			}
		}
		if n == 0 {
			return 0, err
		}
	}
	n := copy(p, a.pending)
	a.pending = a.pending[n:]
	return n, nil
}

// text decodes a header value: RFC 2047 encoded-words, then sanitising.
func (dec *decoder) text(raw string) string {
	s := raw
	if strings.Contains(raw, "=?") {
		if out, err := dec.wd.DecodeHeader(raw); err == nil {
			s = out
		}
	}
	return clean(s)
}

// clean makes s valid UTF-8 (invalid bytes become U+FFFD) and removes NUL bytes.
func clean(s string) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if strings.IndexByte(s, 0) >= 0 {
		s = strings.ReplaceAll(s, "\x00", "")
	}
	return s
}

// stripComments removes RFC 5322 comments (parenthesised, nested, with quoted-pairs) outside
// quoted strings, replacing each with a space.
func stripComments(s string) string {
	if !strings.ContainsRune(s, '(') {
		return s
	}
	var b strings.Builder
	depth := 0
	quoted := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && (quoted || depth > 0) && i+1 < len(s):
			if depth == 0 {
				b.WriteByte(c)
				b.WriteByte(s[i+1])
			}
			i++
		case depth == 0 && c == '"':
			quoted = !quoted
			b.WriteByte(c)
		case !quoted && c == '(':
			if depth == 0 {
				b.WriteByte(' ')
			}
			depth++
		case !quoted && depth > 0 && c == ')':
			depth--
		case depth == 0:
			b.WriteByte(c)
		}
	}
	return b.String()
}
