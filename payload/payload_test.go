package payload

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

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

func fixedMessage() *message.Message {
	return &message.Message{
		MessageID: "<run-4711@github.com>",
		Subject:   "[acme/app] Run failed: CI - main (abc123)",
		From:      message.Address{Name: "GitHub", Address: "noreply@github.com"},
		To:        []message.Address{{Name: "Ops", Address: "ops@example.com"}},
		ReplyTo:   []message.Address{{Address: "reply+abc@reply.github.com"}},
		Date:      time.Date(2026, 11, 26, 11, 0, 0, 0, time.FixedZone("+0100", 3600)),
		Size:      48213,
		Headers: []message.Header{
			{Name: "Received", Value: "from a by b; Thu, 26 Nov 2026 10:00:01 +0000"},
			{Name: "Received", Value: "from c by a; Thu, 26 Nov 2026 10:00:00 +0000"},
			{Name: "From", Value: "GitHub <noreply@github.com>"},
			{Name: "List-ID", Value: "acme/app <app.acme.github.com>"},
			{Name: "Subject", Value: "[acme/app] Run failed: CI - main (abc123)"},
		},
		Text:        "Run failed.\n<https://github.com/acme/app/actions/runs/1> & more",
		HTML:        "<p>Run failed.</p>",
		TextFetched: true, HTMLFetched: true,
		Attachments: []message.Attachment{{Filename: "log.txt", ContentType: "text/plain", Size: 1234, Section: "2"}},
		Automated:   true,
		ListID:      "acme/app <app.acme.github.com>",
		Defects:     []string{},
	}
}

func TestPayloadGolden(t *testing.T) {
	p := New("msg_ABCDEFGHIJKLMNOPQRSTUVWXYZ", "ci-failures", "personal", "INBOX", 1795689278, 4711,
		fixedMessage(), message.Auth{SPF: "pass", DKIM: "pass", DMARC: "pass"}, BodyBoth, 0)
	b, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "payload_v1.golden", b)

	// Every documented field is present under its documented name.
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range strings.Fields("version type id rule account mailbox uid uidvalidity message_id date from to cc " +
		"reply_to subject text html reply_text urls size automated auth attachments headers truncated defects") {
		if _, ok := m[k]; !ok {
			t.Errorf("field %q missing", k)
		}
	}
	if len(m) != 26 {
		t.Errorf("%d fields, want 26", len(m))
	}
}

func TestPayloadBodyModes(t *testing.T) {
	for _, tc := range []struct {
		mode            BodyMode
		hasText, hasHTM bool
	}{
		{"", true, false}, {BodyText, true, false}, {BodyHTML, false, true}, {BodyBoth, true, true},
		{BodyNone, false, false}, {"bogus", true, false},
	} {
		p := New("id", "r", "a", "INBOX", 1, 2, fixedMessage(), message.Auth{}, tc.mode, 0)
		b, _ := p.Marshal()
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		_, text := m["text"]
		_, html := m["html"]
		if text != tc.hasText || html != tc.hasHTM {
			t.Errorf("mode %q: text %v html %v, want %v %v", tc.mode, text, html, tc.hasText, tc.hasHTM)
		}
	}
	for _, s := range []string{"", "none", "text", "html", "both"} {
		if _, err := ParseBodyMode(s); err != nil {
			t.Errorf("ParseBodyMode(%q): %v", s, err)
		}
	}
	if _, err := ParseBodyMode("all"); err == nil {
		t.Error(`ParseBodyMode("all") accepted`)
	}
}

func TestPayloadTruncation(t *testing.T) {
	m := fixedMessage()
	m.Text = "aé€😀" // 1 + 2 + 3 + 4 bytes
	m.HTML = "short"
	for max, want := range map[int]string{1: "a", 2: "a", 3: "aé", 5: "aé", 6: "aé€", 9: "aé€", 10: "aé€😀", 11: "aé€😀", -1: "aé€😀"} {
		p := New("id", "r", "a", "INBOX", 1, 2, m, message.Auth{}, BodyBoth, max)
		cut := want != m.Text
		if *p.Text != want || *p.HTML != "short" && max >= 5 || p.Truncated != cut ||
			slices.Contains(p.Defects, DefectBodyTruncated) != cut {
			t.Errorf("max %d: text %q html %q truncated %v defects %v; want text %q", max, *p.Text, *p.HTML,
				p.Truncated, p.Defects, want)
		}
	}
	// The message's own truncation and defects carry over, sorted and unique.
	m.Truncated, m.Defects = true, []string{"line_too_long", "bad_date"}
	p := New("id", "r", "a", "INBOX", 1, 2, m, message.Auth{}, BodyText, 3)
	if !p.Truncated || !slices.Equal(p.Defects, []string{"bad_date", "body_truncated", "line_too_long"}) {
		t.Errorf("truncated %v defects %v", p.Truncated, p.Defects)
	}
}

func TestPayloadHeadersBounded(t *testing.T) {
	m := fixedMessage()
	m.Headers = nil
	big := strings.Repeat("x", 1000)
	for range 200 {
		m.Headers = append(m.Headers, message.Header{Name: "X-Big", Value: big})
	}
	p := New("id", "r", "a", "INBOX", 1, 2, m, message.Auth{}, BodyNone, 0)
	n := len(p.Headers["x-big"])
	if n == 0 || n*1005 > MaxHeaderBytes || !p.Truncated || !slices.Contains(p.Defects, DefectHeadersTruncated) {
		t.Errorf("%d headers kept, truncated %v, defects %v", n, p.Truncated, p.Defects)
	}
}

// Raw Latin-1 bytes, NULs and broken UTF-8 anywhere yield valid UTF-8 JSON without NUL.
func TestPayloadValidUTF8(t *testing.T) {
	latin1 := "Gr\xfc\xdfe aus K\xf6ln\x00"
	m := &message.Message{
		MessageID:   "<\xff\x00@x>",
		Subject:     latin1,
		From:        message.Address{Name: latin1, Address: "a\x00@b"},
		To:          []message.Address{{Name: "\xe2\x82", Address: "x@y"}},
		Headers:     []message.Header{{Name: "X-L\xe4tin", Value: latin1}},
		Text:        "body \x00 \xc3\x28 end",
		HTML:        "<p>\x80</p>",
		Attachments: []message.Attachment{{Filename: "f\xe9.pdf", ContentType: "application/pdf"}},
		Defects:     []string{"bad\xff"},
	}
	p := New("id\xff", "r\x00", "acc\xe9", "INBOX\xa0", 1, 2, m, message.Auth{SPF: "\xff"}, BodyBoth, 0)
	b, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !utf8.Valid(b) {
		t.Errorf("payload is not valid UTF-8: %q", b)
	}
	if bytes.Contains(b, []byte(`\u0000`)) || bytes.IndexByte(b, 0) >= 0 {
		t.Errorf("payload carries NUL: %s", b)
	}
	if !json.Valid(b) {
		t.Errorf("payload is not valid JSON: %s", b)
	}
	var back Payload
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Subject != "Gr\uFFFDe aus K\uFFFDln\uFFFD" {
		t.Errorf("subject = %q", back.Subject)
	}
	if !strings.Contains(string(b), `"<`) || strings.Contains(string(b), `\u003c`) {
		t.Errorf("angle brackets are escaped: %s", b)
	}
}

// Empty lists are [] and a missing date is null, never omitted.
func TestPayloadEmptyMessage(t *testing.T) {
	p := New("id", "r", "a", "INBOX", 1, 2, &message.Message{}, message.Auth{}, BodyText, 0)
	b, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"date":null`, `"to":[]`, `"cc":[]`, `"reply_to":[]`, `"attachments":[]`,
		`"headers":{}`, `"defects":[]`, `"text":""`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("payload lacks %s: %s", want, b)
		}
	}
}

func FuzzPayloadUTF8(f *testing.F) {
	f.Add("Gr\xfc\xdfe", "\x00", 10)
	f.Add("aé€😀", "<b>", 3)
	f.Fuzz(func(t *testing.T, s, h string, max int) {
		m := &message.Message{Subject: s, Text: s + h, HTML: h, Headers: []message.Header{{Name: h, Value: s}}}
		b, err := New(s, h, s, h, 1, 2, m, message.Auth{}, BodyBoth, max%64).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if !utf8.Valid(b) || !json.Valid(b) || bytes.Contains(b, []byte(`\u0000`)) {
			t.Fatalf("bad payload for %q, %q: %s", s, h, b)
		}
	})
}
