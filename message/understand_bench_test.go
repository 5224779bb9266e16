package message

import (
	"fmt"
	"strings"
	"testing"
)

// replyOfSize is a Gmail-style reply of about n bytes of text (a short answer over a long quoted
// thread with links) and its html alternative.
func replyOfSize(n int) (text, html string) {
	var t, h strings.Builder
	t.WriteString("Thanks, that fixed it: https://ci.example.com/run/42\n\nBob\n\nOn Tue, Dec 1, 2026 at 10:14 AM Alice <alice@example.com> wrote:\n")
	h.WriteString(`<div dir="ltr">Thanks, that fixed it: <a href="https://ci.example.com/run/42">run 42</a><br>Bob</div><div class="gmail_quote">`)
	for i := 0; t.Len() < n/2; i++ {
		line := fmt.Sprintf("> Line %d of the thread, see https://docs.example.com/page/%d for details.\n", i, i%50)
		t.WriteString(line)
		fmt.Fprintf(&h, `<blockquote>Line %d of the thread, see <a href="https://docs.example.com/page/%d">the page</a> for details.</blockquote>`, i, i%50)
	}
	return t.String(), h.String()
}

// noticeOfSize is an Exim bounce notice of about n bytes: the failure and the returned message.
func noticeOfSize(n int) string {
	var t strings.Builder
	t.WriteString("This message was created automatically by mail delivery software.\n\nA message that you sent could not be delivered to one or more of its\nrecipients. This is a permanent error. The following address(es) failed:\n\n  ops@example.net\n    host mx.example.net [198.51.100.7]\n    SMTP error from remote mail server after RCPT TO:<ops@example.net>:\n    550 5.1.1 <ops@example.net>: Recipient address rejected: User unknown\n\n------ This is a copy of the message, including all the headers. ------\n\nFrom: CI <ci@example.com>\nMessage-Id: <build-1842@example.com>\nSubject: Build failed\n\n")
	for i := 0; t.Len() < n; i++ {
		fmt.Fprintf(&t, "Step %d of the build log, see https://ci.example.com/run/42/step/%d for details.\n", i, i%50)
	}
	return t.String()
}

// BenchmarkUnderstand measures reply_text, urls and bounce together on replies of 5 KB, 50 KB and
// 500 KB (text and html; bounce sees a reply's header and stops there) and on plain-text bounce
// notices of those sizes (bounce reads the whole notice): the bound is 1 ms at 50 KB, and the time
// must grow linearly with the size.
func BenchmarkUnderstand(b *testing.B) {
	replyHeader := []rawField{{name: "From", value: "Bob <bob@example.com>"}, {name: "Subject", value: "Re: build 42"}}
	noticeHeader := []rawField{{name: "From", value: "Mail Delivery System <Mailer-Daemon@smtp.example.com>"},
		{name: "Subject", value: "Mail delivery failed: returning message to sender"},
		{name: "X-Failed-Recipients", value: "ops@example.net"}}
	understand := func(b *testing.B, fields []rawField, text, html string) {
		if r := ReplyText(text, html); r == "" {
			b.Fatal("no reply text")
		}
		if u := URLs(text, html); len(u) == 0 {
			b.Fatal("no urls")
		}
		if looksLikeBounce(fields) {
			if bn := textBounce(fields, text); bn == nil || bn.Kind != "hard" {
				b.Fatalf("bounce %+v", bn)
			}
		}
	}
	for _, size := range []int{5 << 10, 50 << 10, 500 << 10} {
		text, html := replyOfSize(size)
		b.Run(fmt.Sprintf("reply/%dKB", size>>10), func(b *testing.B) {
			b.SetBytes(int64(len(text) + len(html)))
			for b.Loop() {
				understand(b, replyHeader, text, html)
			}
		})
	}
	for _, size := range []int{5 << 10, 50 << 10, 500 << 10} {
		notice := noticeOfSize(size)
		b.Run(fmt.Sprintf("notice/%dKB", size>>10), func(b *testing.B) {
			b.SetBytes(int64(len(notice)))
			for b.Loop() {
				understand(b, noticeHeader, notice, "")
			}
		})
	}
}

// BenchmarkDSN measures a delivery report of 10 and 100 recipients (about 2 and 20 KB).
func BenchmarkDSN(b *testing.B) {
	for _, n := range []int{10, 100} {
		var r strings.Builder
		r.WriteString("Reporting-MTA: dns; mx1.example.net\nArrival-Date: Wed,  2 Dec 2026 09:14:06 +0100 (CET)\n\n")
		for i := range n {
			fmt.Fprintf(&r, "Final-Recipient: rfc822; user%d@example.org\nAction: failed\nStatus: 5.1.1\nDiagnostic-Code: smtp; 550 5.1.1 <user%d@example.org>: Recipient address\n    rejected: User unknown in virtual mailbox table\n\n", i, i)
		}
		report := r.String()
		b.Run(fmt.Sprintf("%drecipients", n), func(b *testing.B) {
			b.SetBytes(int64(len(report)))
			for b.Loop() {
				if bn, ok := parseDSN(report); !ok || len(bn.Recipients) != n {
					b.Fatal("bad report")
				}
			}
		})
	}
}
