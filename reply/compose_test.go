package reply

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"mime"
	netmail "net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailhook/mailhook/message"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with testdata/name, or rewrites the file with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (go test -update rewrites it)\ngot:  %s\nwant: %s", name, got, want)
	}
}

var replyDate = time.Date(2026, 3, 2, 10, 5, 0, 0, time.UTC)

func mustTemplate(t *testing.T, subject, body, html string) *Template {
	t.Helper()
	tpl, err := ParseTemplate("ack", subject, body, html, nil)
	if err != nil {
		t.Fatalf("parse templates: %v", err)
	}
	return tpl
}

func parseRaw(t *testing.T, raw string) *message.Message {
	t.Helper()
	m, err := message.Parse(strings.NewReader(raw), message.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// composeFor renders tpl over the original raw and composes the reply at replyDate.
func composeFor(t *testing.T, tpl *Template, raw string) ([]byte, *Job) {
	t.Helper()
	m := parseRaw(t, raw)
	to, skip := Check(m, Policy{OwnAddresses: []string{"help@us.test"}})
	if skip != "" {
		t.Fatalf("guards refused the original: %s", skip)
	}
	j, err := NewJob(tpl, m, to, Params{Account: "support", From: "Support Team <help@us.test>",
		OncePer: 7 * 24 * time.Hour, MessageID: "<fixed.mailhook@us.test>"})
	if err != nil {
		t.Fatal(err)
	}
	// The job survives its trip through the outbox unchanged.
	body, err := j.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	j2, err := ParseJob(body)
	if err != nil {
		t.Fatal(err)
	}
	out, err := j2.Compose(replyDate)
	if err != nil {
		t.Fatal(err)
	}
	return out, j2
}

// checkWire checks the properties every composed reply has: CRLF only, no line over 998 octets,
// parseable, exactly one recipient, and the RFC 3834 headers.
func checkWire(t *testing.T, raw []byte) *netmail.Message {
	t.Helper()
	for i, line := range bytes.Split(raw, []byte("\r\n")) {
		if len(line) > 998 {
			t.Errorf("line %d is %d octets (> 998)", i+1, len(line))
		}
		if bytes.ContainsAny(line, "\r\n") {
			t.Errorf("line %d holds a bare CR or LF: %q", i+1, line)
		}
	}
	m, err := netmail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("reply does not parse: %v", err)
	}
	if got := m.Header.Get("Auto-Submitted"); got != "auto-replied" {
		t.Errorf("Auto-Submitted = %q", got)
	}
	if m.Header.Get("Message-Id") == "" || m.Header.Get("Date") == "" {
		t.Error("Message-ID or Date missing")
	}
	to, err := m.Header.AddressList("To")
	if err != nil || len(to) != 1 {
		t.Errorf("To = %v, %v; want exactly one recipient", to, err)
	}
	for _, h := range []string{"Cc", "Bcc"} {
		if v := m.Header.Get(h); v != "" {
			t.Errorf("%s: %q in a reply", h, v)
		}
	}
	return m
}

const original = "Return-Path: <alice@example.com>\r\n" +
	"From: Alice <alice@example.com>\r\n" +
	"To: help@us.test\r\n" +
	"Subject: Invoice 42\r\n" +
	"Message-ID: <q2@example.com>\r\n" +
	"In-Reply-To: <a1@us.test>\r\n" +
	"References: <q0@example.com> <a1@us.test>\r\n" +
	"\r\nHello\r\n"

// The golden reply.
func TestReplyGolden(t *testing.T) {
	tpl := mustTemplate(t, "Re: {{ .Subject }}", "Hi {{ .From.Name }},\nthanks, we got your message {{ .MessageID }}.\n", "")
	raw, j := composeFor(t, tpl, original)
	golden(t, "reply_plain.golden", raw)
	m := checkWire(t, raw)
	if got := m.Header.Get("In-Reply-To"); got != "<q2@example.com>" {
		t.Errorf("In-Reply-To = %q", got)
	}
	if got := m.Header.Get("References"); got != "<q0@example.com> <a1@us.test> <q2@example.com>" {
		t.Errorf("References = %q (want the original References then its Message-ID)", got)
	}
	if got := m.Header.Get("To"); got != "<alice@example.com>" {
		t.Errorf("To = %q", got)
	}
	if got := m.Header.Get(LoopHeader); got != "help@us.test" {
		t.Errorf("%s = %q", LoopHeader, got)
	}
	if j.To != "alice@example.com" || j.EnvelopeFrom != "" {
		t.Errorf("envelope: to %q from %q", j.To, j.EnvelopeFrom)
	}
}

// Threading without References: In-Reply-To's single id, then the Message-ID; without a Message-ID, no
// In-Reply-To.
func TestReplyThreading(t *testing.T) {
	for _, tc := range []struct {
		name, headers, inReplyTo, refs string
	}{
		{"in-reply-to only", "Message-ID: <m@x>\r\nIn-Reply-To: <p@x>\r\n", "<m@x>", "<p@x> <m@x>"},
		{"nothing", "Message-ID: <m@x>\r\n", "<m@x>", "<m@x>"},
		{"no message-id", "References: <p@x>\r\n", "", "<p@x>"},
		{"none at all", "", "", ""},
		{"in-reply-to with two ids", "Message-ID: <m@x>\r\nIn-Reply-To: <p@x> <q@x>\r\n", "<m@x>", "<m@x>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := "Return-Path: <a@example.com>\r\nFrom: a@example.com\r\nTo: help@us.test\r\nSubject: s\r\n" + tc.headers + "\r\nx\r\n"
			out, _ := composeFor(t, mustTemplate(t, "Re", "ok", ""), raw)
			m := checkWire(t, out)
			if got := m.Header.Get("In-Reply-To"); got != tc.inReplyTo {
				t.Errorf("In-Reply-To = %q, want %q", got, tc.inReplyTo)
			}
			if got := m.Header.Get("References"); got != tc.refs {
				t.Errorf("References = %q, want %q", got, tc.refs)
			}
		})
	}
}

// CR, LF and "\r\nBcc:" in the original subject cannot add or change a header.
func TestReplySubjectInjection(t *testing.T) {
	tpl := mustTemplate(t, "Re: {{ .Subject }}", "ok", "")
	m := parseRaw(t, original)
	m.Subject = "Hello\r\nBcc: victim@example.net\r\nX-Evil: 1\nSubject: second"
	j, err := NewJob(tpl, m, "alice@example.com", Params{Account: "support", From: "help@us.test",
		OncePer: time.Hour, MessageID: "<fixed.mailhook@us.test>"})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := j.Compose(replyDate)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "reply_injection.golden", raw)
	msg := checkWire(t, raw)
	for _, h := range []string{"Bcc", "X-Evil"} {
		if _, ok := msg.Header[h]; ok {
			t.Errorf("header %s was injected", h)
		}
	}
	if n := len(msg.Header["Subject"]); n != 1 {
		t.Errorf("%d Subject headers", n)
	}
	if got := msg.Header.Get("Subject"); got != "Re: Hello Bcc: victim@example.net X-Evil: 1 Subject: second" {
		t.Errorf("Subject = %q", got)
	}
}

// A non-ASCII subject is RFC 2047-encoded, a very long one folded, no line over 998 octets.
func TestReplySubjectEncoding(t *testing.T) {
	tpl := mustTemplate(t, "Re: {{ .Subject }}", "ok", "")
	dec := new(mime.WordDecoder)
	for _, subject := range []string{
		"Grüße aus Köln — 東京",
		strings.Repeat("x", 3000),
		strings.Repeat("wörd ", 400),
	} {
		m := parseRaw(t, original)
		m.Subject = subject
		j, err := NewJob(tpl, m, "alice@example.com", Params{Account: "a", From: "help@us.test", OncePer: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		raw, err := j.Compose(replyDate)
		if err != nil {
			t.Fatal(err)
		}
		msg := checkWire(t, raw)
		enc := msg.Header.Get("Subject")
		if strings.ContainsFunc(enc, func(r rune) bool { return r >= 0x80 }) {
			t.Errorf("subject header holds raw non-ASCII: %q", enc)
		}
		got, err := dec.DecodeHeader(enc)
		if err != nil {
			t.Fatalf("decode %q: %v", enc, err)
		}
		want := oneLine("Re: "+subject, maxSubjectBytes)
		if strings.ReplaceAll(got, " ", "") != strings.ReplaceAll(want, " ", "") {
			t.Errorf("subject round trip:\n got %q\nwant %q", got, want)
		}
	}
}

// An HTML alternative makes a multipart/alternative reply, composed the same way every time.
func TestReplyHTML(t *testing.T) {
	tpl := mustTemplate(t, "Re: {{ .Subject }}", "Thanks.", "<p>Thanks, <b>{{ .From.Name }}</b>.</p>")
	raw, _ := composeFor(t, tpl, original)
	again, _ := composeFor(t, tpl, original)
	if !bytes.Equal(raw, again) {
		t.Error("the same job composed two different messages")
	}
	golden(t, "reply_html.golden", raw)
	m := checkWire(t, raw)
	if ct := m.Header.Get("Content-Type"); !strings.HasPrefix(ct, "multipart/alternative;") {
		t.Fatalf("Content-Type = %q", ct)
	}
	body, _ := io.ReadAll(m.Body)
	if !bytes.Contains(body, []byte("<b>Alice</b>")) || !bytes.Contains(body, []byte("text/plain")) {
		t.Errorf("body lacks a part:\n%s", body)
	}
}

// Template errors name the field, at parse time, including unknown fields of the message.
func TestParseReplyTemplateErrors(t *testing.T) {
	for _, tc := range []struct {
		subject, body, html, want string
	}{
		{"Re: {{ .Subject ", "ok", "", "subject: "},
		{"Re", "{{ .NoSuchField }}", "", "body: "},
		{"Re", "ok", "{{ if }}", "html: "},
		{"", "ok", "", "subject: empty"},
		{"Re", " ", "", "body: empty"},
	} {
		_, err := ParseTemplate("ack", tc.subject, tc.body, tc.html, nil)
		var te *TemplateError
		if err == nil || !errors.As(err, &te) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseTemplate(%q, %q, %q) = %v, want an error with %q", tc.subject, tc.body, tc.html, err, tc.want)
		}
	}
}

func TestParseReplyJobRejects(t *testing.T) {
	for _, body := range []string{
		`{`, `{"version":2}`, `{"version":1,"account":"a","reply":"r","to":"x","message_id":"<m@x>"}`,
		`{"version":1,"account":"a","reply":"r","to":"a@x","message_id":"<m@x>","envelope_from":"a b@x"}`,
	} {
		if _, err := ParseJob([]byte(body)); err == nil {
			t.Errorf("ParseJob(%s) accepted", body)
		}
	}
}

// TestReplyHTMLEscapes: the html template escapes what comes from the message (its sender
// chose the subject and display name); text/template let it through as markup.
func TestReplyHTMLEscapes(t *testing.T) {
	tpl := mustTemplate(t, "Re: {{ .Subject }}", "Thanks {{ .From.Name }}: {{ .Subject }}",
		`<p>Thanks {{ .From.Name }}</p><p>{{ .Subject }}</p><a href="mailto:{{ .From.Address }}">reply</a>`)
	m := &message.Message{
		Subject: `<script>alert(1)</script><a href="https://evil.example">click</a>`,
		From:    message.Address{Name: `"><img src=x onerror=alert(2)>`, Address: `"x\" onclick=alert(3)"@example.com`},
	}
	_, text, html, err := tpl.Render(m, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"<script>", "<img", `<a href="https://evil.example"`, `" onclick`} {
		if strings.Contains(html, bad) {
			t.Errorf("html reply carries markup from the message %q:\n%s", bad, html)
		}
	}
	for _, want := range []string{"&lt;script&gt;alert(1)&lt;/script&gt;", "&lt;img src=x onerror=alert(2)&gt;"} {
		if !strings.Contains(html, want) {
			t.Errorf("html reply lacks the escaped %q:\n%s", want, html)
		}
	}
	if !strings.Contains(text, "<script>alert(1)</script>") {
		t.Errorf("the text body is escaped too: %q", text)
	}
}

// TestReplyTemplateFields: a reply template reads the rule's extracted fields as .Fields.NAME; the
// names the rules define pass the startup check, a name no rule defines fails it, and a field
// from mail arrives escaped in the html alternative.
func TestReplyTemplateFields(t *testing.T) {
	tpl, err := ParseTemplate("ack", "Re: invoice {{ .Fields.number }}", "We booked {{ .Fields.number }} over {{ .Fields.amount }}.",
		"<p>{{ .Fields.number }}</p>", []string{"amount", "number"})
	if err != nil {
		t.Fatal(err)
	}
	m := &message.Message{Subject: "Invoice", From: message.Address{Address: "billing@vendor.example"}}
	subject, text, html, err := tpl.Render(m, map[string]any{"number": "INV-<1>", "amount": "120.50"})
	if err != nil {
		t.Fatal(err)
	}
	if subject != "Re: invoice INV-<1>" || text != "We booked INV-<1> over 120.50." || html != "<p>INV-&lt;1&gt;</p>" {
		t.Errorf("rendered %q / %q / %q", subject, text, html)
	}
	if _, err := ParseTemplate("ack", "Re", "{{ .Fields.numbr }}", "", []string{"number"}); err == nil ||
		!strings.Contains(err.Error(), "body: ") || !strings.Contains(err.Error(), "numbr") {
		t.Errorf("a name no rule extracts: %v; want an error naming the body and the key", err)
	}
}
