package payload

import (
	"bytes"
	"errors"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// Text helpers: UTF-8 cleaning and cutting, and the one-line and length rules of the chat formats.

// clean returns s as valid UTF-8 without NUL: invalid byte sequences and NULs become U+FFFD. JSON
// could escape NUL as \u0000, but many receivers reject it (PostgreSQL jsonb, for one).
func clean(s string) string {
	if utf8.ValidString(s) && !strings.Contains(s, "\x00") {
		return s
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.ReplaceAll(s, "\x00", "\uFFFD")
}

// capUTF8 cuts valid UTF-8 s to at most max bytes without splitting a character, and says whether
// it cut. A negative max means no cap.
func capUTF8(s string, max int) (string, bool) {
	if max < 0 || len(s) <= max {
		return s, false
	}
	i := max
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i], true
}

// utf16Len counts s in UTF-16 code units, the way JavaScript does: the services' character
// limits are counted like this (an emoji outside the BMP counts 2), or in code points, which is
// never more.
func utf16Len(s string) int {
	n := 0
	for _, r := range s {
		n += utf16.RuneLen(r)
	}
	return n
}

// truncateRunes cuts s to at most max UTF-16 code units, ending in "…" when it cut.
func truncateRunes(s string, max int) string {
	if max <= 0 {
		return ""
	}
	if utf16Len(s) <= max {
		return s
	}
	var b strings.Builder
	n := 0
	for _, r := range s {
		l := utf16.RuneLen(r)
		if n+l > max-1 {
			break
		}
		b.WriteRune(r)
		n += l
	}
	return strings.TrimRightFunc(b.String(), unicode.IsSpace) + "…"
}

// escapeCut escapes s one rune at a time with esc (which sees the previous rune and the rest of
// s) and cuts the result to at most max UTF-16 code units, ending in "…" when it cut; an escape
// sequence is never split.
func escapeCut(s string, max int, esc func(prev, r rune, rest string) string) string {
	if max <= 0 {
		return ""
	}
	var pieces []string
	total, prev := 0, '\n'
	for i, r := range s {
		p := esc(prev, r, s[i+utf8.RuneLen(r):])
		pieces = append(pieces, p)
		total += utf16Len(p)
		prev = r
		if total > max {
			break // it will be cut: the rest is not needed
		}
	}
	if total <= max {
		return strings.Join(pieces, "")
	}
	var b strings.Builder
	n := 0
	for _, p := range pieces {
		l := utf16Len(p)
		if n+l > max-1 {
			break
		}
		b.WriteString(p)
		n += l
	}
	return strings.TrimRightFunc(b.String(), unicode.IsSpace) + "…"
}

// oneLineText turns s into one line: every run of white space and control characters (CR and LF
// included) becomes one space, and none is left at either end. An invalid byte reads as U+FFFD;
// the result is never longer than s.
func oneLineText(s string) string {
	var b strings.Builder
	space := false
	for _, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			space = true
			continue
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		if b.Len()+utf8.RuneLen(r) > len(s) {
			break
		}
		b.WriteRune(r)
	}
	return b.String()
}

// errBufferFull ends a template execution that produced more than its limit.
var errBufferFull = errors.New("output limit reached")

// limitedBuffer keeps the first max bytes written and then fails with errBufferFull.
type limitedBuffer struct {
	bytes.Buffer
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.Len(); len(p) > room {
		b.Buffer.Write(p[:max(room, 0)])
		return max(room, 0), errBufferFull
	}
	return b.Buffer.Write(p)
}
