package message

import (
	"bytes"
	"encoding/base64"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-message/charset"
)

// decodeTransfer undoes a Content-Transfer-Encoding (RFC 2045 §6) best-effort. bad reports that
// the input was malformed (and decoded anyway); unknown reports an encoding RFC 2045 does not
// define, in which case the input is returned as it is.
func decodeTransfer(raw []byte, enc string) (out []byte, bad, unknown bool) {
	switch enc {
	case "base64":
		out, bad = decodeBase64(raw)
		return out, bad, false
	case "quoted-printable":
		out, bad = decodeQP(raw)
		return out, bad, false
	case "7bit", "8bit", "binary":
		return raw, false, false
	}
	return raw, false, true
}

// base64Value maps a byte to its base64 value: 0–63, or 0xFF for bytes outside the alphabet.
// The URL-safe '-' and '_' are accepted too (and reported as malformed).
func base64Value(c byte) byte {
	switch {
	case c >= 'A' && c <= 'Z':
		return c - 'A'
	case c >= 'a' && c <= 'z':
		return c - 'a' + 26
	case c >= '0' && c <= '9':
		return c - '0' + 52
	case c == '+' || c == '-':
		return 62
	case c == '/' || c == '_':
		return 63
	}
	return 0xFF
}

// decodeBase64 decodes base64 (RFC 2045 §6.8) tolerantly: line breaks and white space are
// skipped, bytes outside the alphabet are dropped, "=" ends a quantum wherever it appears (so
// concatenated encodings decode), and a final partial quantum yields what it holds.
func decodeBase64(src []byte) (dst []byte, bad bool) {
	// Fast path: well-formed input (the standard decoder skips CR and LF itself).
	dst = make([]byte, base64.StdEncoding.DecodedLen(len(src)))
	if n, err := base64.StdEncoding.Decode(dst, src); err == nil {
		return dst[:n], false
	}
	dst = dst[:0]
	var q [4]byte
	n := 0
	prevPad := false
	flush := func() {
		switch n {
		case 1:
			bad = true
		case 2:
			dst = append(dst, q[0]<<2|q[1]>>4)
		case 3:
			dst = append(dst, q[0]<<2|q[1]>>4, q[1]<<4|q[2]>>2)
		}
		n = 0
	}
	for _, c := range src {
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		case '=':
			if n == 0 && !prevPad {
				bad = true
			}
			flush()
			prevPad = true
			continue
		}
		v := base64Value(c)
		if v == 0xFF || c == '-' || c == '_' {
			bad = true
			if v == 0xFF {
				continue
			}
		}
		prevPad = false
		q[n] = v
		n++
		if n == 4 {
			dst = append(dst, q[0]<<2|q[1]>>4, q[1]<<4|q[2]>>2, q[2]<<6|q[3])
			n = 0
		}
	}
	if n != 0 {
		bad = true // missing padding
		flush()
	}
	return dst, bad
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// decodeQP decodes quoted-printable (RFC 2045 §6.7) tolerantly: trailing white space is
// removed, "=" at the end of a line is a soft break, "=XX" with hex digits of either case is a
// byte, and any other "=" is kept as it is (reported as malformed).
func decodeQP(src []byte) (dst []byte, bad bool) {
	dst = make([]byte, 0, len(src))
	for len(src) > 0 {
		var ln []byte
		eol := false
		if i := bytes.IndexByte(src, '\n'); i >= 0 {
			ln, src, eol = src[:i], src[i+1:], true
		} else {
			ln, src = src, nil
		}
		ln = bytes.TrimRight(ln, " \t\r")
		soft := false
		if len(ln) > 0 && ln[len(ln)-1] == '=' {
			ln, soft = ln[:len(ln)-1], true
		}
		for i := 0; i < len(ln); i++ {
			c := ln[i]
			if c != '=' {
				dst = append(dst, c)
				continue
			}
			if i+2 < len(ln) {
				h, ok1 := unhex(ln[i+1])
				l, ok2 := unhex(ln[i+2])
				if ok1 && ok2 {
					dst = append(dst, h<<4|l)
					i += 2
					continue
				}
			}
			bad = true
			dst = append(dst, '=')
		}
		if eol && !soft {
			dst = append(dst, '\r', '\n')
		}
	}
	return dst, bad
}

// bodyText turns the raw (still transfer-encoded) content of a text part into what Text and
// HTML hold: transfer-decoded, converted from its charset to UTF-8, valid UTF-8 without NUL
// bytes, line breaks as "\n", and at most limit bytes (cut at a character boundary).
func bodyText(raw []byte, enc, cs string, limit int, d *defects) (text string, truncated bool) {
	b, bad, unknown := decodeTransfer(raw, enc)
	if bad {
		d.add("bad_encoding")
	}
	if unknown {
		d.add("unknown_encoding")
	}
	dec := newDecoder(d)
	r, _ := dec.charsetReader(cs, bytes.NewReader(b))
	// A charset conversion can grow the text up to threefold; read a little past the limit to
	// know whether it was reached.
	out, err := io.ReadAll(io.LimitReader(r, int64(limit)*3+utf8.UTFMax))
	if err != nil {
		d.add("bad_encoding")
	}
	s := clean(string(out))
	if strings.IndexByte(s, '\r') >= 0 {
		s = strings.ReplaceAll(s, "\r\n", "\n")
		s = strings.ReplaceAll(s, "\r", "\n")
	}
	if len(s) > limit {
		s = cutUTF8(s, limit)
		truncated = true
	}
	return s, truncated
}

// cutUTF8 returns the longest prefix of s of at most n bytes that ends at a character boundary.
func cutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// convertCharset converts s from the named charset to UTF-8, or returns it sanitised when the
// charset is unknown.
func convertCharset(cs, s string) string {
	r, err := charset.Reader(cs, strings.NewReader(s))
	if err != nil || r == nil {
		return clean(s)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		return clean(s)
	}
	return clean(string(out))
}
