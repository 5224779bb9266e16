package message

import (
	"strings"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// maxURLs is the most URLs a message yields; maxURLBytes the longest URL kept.
const (
	maxURLs     = 100
	maxURLBytes = 4096
)

// htmlReplyText turns html into plain text for ReplyText, leaving out script, style and the quote
// containers mail clients write: Gmail's div.gmail_quote (and its attribution), blockquote (Apple
// Mail's type=cite, Thunderbird's, Gmail's), Thunderbird's div.moz-cite-prefix, Outlook on the
// web's div#divRplyFwdMsg and div#appendonsend, after which Outlook puts the original.
func htmlReplyText(src string) string {
	z := html.NewTokenizer(strings.NewReader(src))
	var b strings.Builder
	skip := 0 // depth inside an element left out
	skipTag := []atom.Atom{}
	newline := func() {
		if b.Len() > 0 && !strings.HasSuffix(b.String(), "\n") {
			b.WriteByte('\n')
		}
	}
	for {
		switch z.Next() {
		case html.ErrorToken:
			return collapseBlankLines(b.String())
		case html.TextToken:
			if skip == 0 {
				writeCollapsed(&b, string(z.Text()))
			}
		case html.StartTagToken, html.SelfClosingTagToken:
			tok := z.Token()
			if skip > 0 {
				if tok.DataAtom == skipTag[len(skipTag)-1] && !voidElement(tok.DataAtom) {
					skip++
				}
				continue
			}
			if leftOut(tok) {
				if voidElement(tok.DataAtom) {
					continue
				}
				if appendOnSend(tok) {
					return collapseBlankLines(b.String()) // the rest is the original
				}
				skip, skipTag = 1, append(skipTag, tok.DataAtom)
				continue
			}
			if blockElement(tok.DataAtom) {
				newline()
			}
		case html.EndTagToken:
			tok := z.Token()
			if skip > 0 {
				if tok.DataAtom == skipTag[len(skipTag)-1] {
					if skip--; skip == 0 {
						skipTag = skipTag[:len(skipTag)-1]
					}
				}
				continue
			}
			if blockElement(tok.DataAtom) {
				newline()
			}
		}
	}
}

// writeCollapsed appends text with every run of white space made one space, and none at the
// start of a line or after a space already written.
func writeCollapsed(b *strings.Builder, text string) {
	space := b.Len() == 0 || strings.HasSuffix(b.String(), "\n") || strings.HasSuffix(b.String(), " ")
	for _, r := range text {
		if r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == '\f' {
			if !space {
				b.WriteByte(' ')
				space = true
			}
			continue
		}
		b.WriteRune(r)
		space = false
	}
}

// leftOut reports whether the element tok starts is left out of the reply text.
func leftOut(tok html.Token) bool {
	switch tok.DataAtom {
	case atom.Script, atom.Style, atom.Head, atom.Title, atom.Blockquote:
		return true
	case atom.Div:
		for _, a := range tok.Attr {
			switch a.Key {
			case "class":
				for _, c := range strings.Fields(a.Val) {
					if c == "gmail_quote" || c == "gmail_attr" || c == "moz-cite-prefix" || c == "yahoo_quoted" {
						return true
					}
				}
			case "id":
				if a.Val == "divRplyFwdMsg" || a.Val == "appendonsend" {
					return true
				}
			}
		}
	}
	return false
}

// appendOnSend reports whether tok is Outlook's marker after which the quoted original follows
// as siblings, not as children.
func appendOnSend(tok html.Token) bool {
	for _, a := range tok.Attr {
		if a.Key == "id" && (a.Val == "appendonsend" || a.Val == "divRplyFwdMsg") {
			return true
		}
	}
	return false
}

func blockElement(a atom.Atom) bool {
	switch a {
	case atom.P, atom.Div, atom.Br, atom.Li, atom.Tr, atom.H1, atom.H2, atom.H3, atom.H4, atom.H5, atom.H6,
		atom.Ul, atom.Ol, atom.Table, atom.Pre, atom.Hr:
		return true
	}
	return false
}

func voidElement(a atom.Atom) bool {
	switch a {
	case atom.Br, atom.Hr, atom.Img, atom.Meta, atom.Link, atom.Input:
		return true
	}
	return false
}

// collapseBlankLines trims each line's trailing spaces and keeps at most one blank line in a row.
func collapseBlankLines(s string) string {
	var b strings.Builder
	blank := 0
	for line := range strings.Lines(s) {
		line = strings.TrimRight(line, " \t\r\n")
		if line == "" {
			if blank++; blank > 1 || b.Len() == 0 {
				continue
			}
		} else {
			blank = 0
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	return strings.TrimRight(b.String(), "\n")
}

// URLs returns the distinct http and https URLs of text (as written, without trailing punctuation
// a sentence puts after them) and then of html's href attributes, in order of appearance, at most
// 100; URLs longer than 4 KiB are left out.
func URLs(text, htmlSrc string) []string {
	out := []string{}
	seen := map[string]bool{}
	add := func(u string) bool {
		if len(u) > maxURLBytes || seen[u] {
			return len(out) < maxURLs
		}
		seen[u] = true
		out = append(out, u)
		return len(out) < maxURLs
	}
	for rest := text; ; {
		i := indexHTTP(rest)
		if i < 0 {
			break
		}
		rest = rest[i:]
		end := strings.IndexFunc(rest, urlEnd)
		if end < 0 {
			end = len(rest)
		}
		u := trimURL(rest[:end])
		rest = rest[end:]
		if hasHost(u) && !add(u) {
			return out
		}
	}
	if htmlSrc == "" {
		return out
	}
	z := html.NewTokenizer(strings.NewReader(htmlSrc))
	for {
		tt := z.Next()
		if tt == html.ErrorToken {
			return out
		}
		if tt != html.StartTagToken && tt != html.SelfClosingTagToken {
			continue
		}
		name, hasAttr := z.TagName()
		if !hasAttr || (string(name) != "a" && string(name) != "area") {
			continue
		}
		for {
			key, val, more := z.TagAttr()
			if string(key) == "href" {
				u := strings.TrimSpace(string(val))
				if indexHTTP(u) == 0 && hasHost(u) && !add(u) {
					return out
				}
			}
			if !more {
				break
			}
		}
	}
}

// indexHTTP returns the index of the first "http://" or "https://" (any case) in s, or -1.
func indexHTTP(s string) int {
	for off := 0; ; {
		i := strings.IndexAny(s[off:], "hH")
		if i < 0 {
			return -1
		}
		i += off
		r := s[i:]
		if len(r) >= 7 && strings.EqualFold(r[:7], "http://") || len(r) >= 8 && strings.EqualFold(r[:8], "https://") {
			return i
		}
		off = i + 1
	}
}

// urlEnd reports whether r ends a URL written in text.
func urlEnd(r rune) bool {
	switch r {
	case ' ', '\t', '\n', '\r', '<', '>', '"', '\'', '`', '\u00a0':
		return true
	}
	return r < 0x20
}

// trimURL drops the punctuation a sentence puts after a URL: trailing . , ; : ! ? and a closing
// parenthesis or bracket without its opening one in the URL.
func trimURL(u string) string {
	for len(u) > 0 {
		switch c := u[len(u)-1]; c {
		case '.', ',', ';', ':', '!', '?':
			u = u[:len(u)-1]
		case ')':
			if strings.Count(u, "(") >= strings.Count(u, ")") {
				return u
			}
			u = u[:len(u)-1]
		case ']':
			if strings.Count(u, "[") >= strings.Count(u, "]") {
				return u
			}
			u = u[:len(u)-1]
		default:
			return u
		}
	}
	return u
}

// hasHost reports whether u has something after its scheme.
func hasHost(u string) bool {
	_, rest, ok := strings.Cut(u, "://")
	return ok && rest != "" && rest[0] != '/'
}
