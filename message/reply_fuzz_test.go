package message

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzReplyText: any text and html give a reply text without a panic, valid UTF-8 when the input
// is, never longer than the text it came from (when there is one), and the text itself when
// nothing was cut.
func FuzzReplyText(f *testing.F) {
	for _, tc := range replyCases {
		f.Add(tc.text, tc.html)
	}
	f.Add("", "<div class=gmail_quote><blockquote><blockquote></div>")
	f.Fuzz(func(t *testing.T, text, html string) {
		got := ReplyText(text, html)
		if text != "" {
			if len(got) > len(text) {
				t.Fatalf("reply %q longer than text %q", got, text)
			}
			if !strings.HasPrefix(text, strings.TrimRight(got, " \t\r\n")) && got != text {
				t.Fatalf("reply %q is not a prefix of text %q", got, text)
			}
		}
		if utf8.ValidString(text) && utf8.ValidString(html) && !utf8.ValidString(got) {
			t.Fatalf("invalid UTF-8 from valid input: %q", got)
		}
	})
}

// FuzzURLs: any text and html give at most 100 distinct URLs, each http(s) with a host and at
// most 4 KiB, without a panic.
func FuzzURLs(f *testing.F) {
	f.Add("see https://example.com/a(b)c). and http://x.y", `<a href="https://example.com/">x</a><area href=http://a.b>`)
	f.Add("hthttps://https://", "<a href='HTTPS://E'>")
	f.Fuzz(func(t *testing.T, text, html string) {
		got := URLs(text, html)
		if len(got) > maxURLs {
			t.Fatalf("%d URLs", len(got))
		}
		seen := map[string]bool{}
		for _, u := range got {
			if seen[u] || len(u) > maxURLBytes || indexHTTP(u) != 0 || !hasHost(u) {
				t.Fatalf("bad URL %q in %q", u, got)
			}
			seen[u] = true
		}
	})
}
