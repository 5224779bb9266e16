package message

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
)

// typicalMail returns a ~50 KB multipart message: plain and HTML alternatives and a PDF.
func typicalMail() []byte {
	var b strings.Builder
	b.WriteString("Return-Path: <notifications@github.example>\r\n")
	for i := 0; i < 8; i++ {
		fmt.Fprintf(&b, "Received: from relay%d.example (relay%d.example [192.0.2.%d]) by mx.example.com with ESMTPS id x%d; Wed, 26 Nov 2025 10:00:0%d +0000\r\n", i, i, i, i, i)
	}
	b.WriteString("Authentication-Results: mx.example.com; spf=pass smtp.mailfrom=github.example; dkim=pass header.d=github.example; dmarc=pass\r\n")
	b.WriteString("From: GitHub <notifications@github.example>\r\nTo: Team <team@example.com>, =?utf-8?q?J=C3=B6rg?= <jorg@example.com>\r\n")
	b.WriteString("Subject: =?utf-8?q?=5Bmailhook=5D_CI_failed_on_main_=E2=9C=97?=\r\nDate: Wed, 26 Nov 2025 10:00:00 +0000\r\n")
	b.WriteString("Message-ID: <bench@github.example>\r\nList-Id: mailhook <mailhook.github.example>\r\nMIME-Version: 1.0\r\n")
	b.WriteString("Content-Type: multipart/mixed; boundary=\"mixed\"\r\n\r\n--mixed\r\nContent-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n")
	b.WriteString("--alt\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n")
	for i := 0; i < 120; i++ {
		fmt.Fprintf(&b, "Step %d of the build failed: caf=C3=A9 test_%d expected 1 got 2, see the log =\r\nfor details.\r\n", i, i)
	}
	b.WriteString("--alt\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	var html strings.Builder
	for i := 0; i < 120; i++ {
		fmt.Fprintf(&html, "<tr><td>Step %d</td><td class=\"fail\">failed: café test_%d expected 1 got 2</td></tr>\n", i, i)
	}
	writeBase64(&b, []byte(html.String()))
	b.WriteString("--alt--\r\n\r\n--mixed\r\nContent-Type: application/pdf; name=\"log.pdf\"\r\nContent-Disposition: attachment; filename=\"log.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	writeBase64(&b, bytes.Repeat([]byte("%PDF-1.4 binary \x00\x01\x02\xff"), 1100))
	b.WriteString("--mixed--\r\n")
	return []byte(b.String())
}

func writeBase64(b *strings.Builder, data []byte) {
	s := base64.StdEncoding.EncodeToString(data)
	for i := 0; i < len(s); i += 76 {
		b.WriteString(s[i:min(i+76, len(s))])
		b.WriteString("\r\n")
	}
}

func BenchmarkParse(b *testing.B) {
	mail := typicalMail()
	b.ReportAllocs()
	b.SetBytes(int64(len(mail)))
	for b.Loop() {
		m, err := Parse(bytes.NewReader(mail), Limits{})
		if err != nil || m.Text == "" || m.HTML == "" || len(m.Attachments) != 1 {
			b.Fatalf("Parse: %v %+v", err, m)
		}
	}
}

// BenchmarkBuild builds from the pieces the IMAP server code path (imapserver, as imapmemserver
// uses it) extracts for the same mail.
func BenchmarkBuild(b *testing.B) {
	mail := typicalMail()
	bs := imapserver.ExtractBodyStructure(bytes.NewReader(mail))
	p := Pieces{
		Header:    imapserver.ExtractBodySection(bytes.NewReader(mail), &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader}),
		Structure: bs,
		Size:      int64(len(mail)),
		Parts:     map[string][]byte{},
	}
	text, html := BodySections(bs)
	for _, sec := range append(text, html...) {
		p.Parts[sec] = imapserver.ExtractBodySection(bytes.NewReader(mail), &imap.FetchItemBodySection{Part: sectionPath(b, sec)})
	}
	want, err := Parse(bytes.NewReader(mail), Limits{})
	if err != nil {
		b.Fatal(err)
	}
	if got := Build(p, Limits{}); got.Key != want.Key || got.Text != want.Text || got.HTML != want.HTML {
		b.Fatal("Build differs from Parse")
	}
	b.ReportAllocs()
	for b.Loop() {
		Build(p, Limits{})
	}
}

// BenchmarkParseCorpus parses the whole evaluation corpus once per iteration: the throughput and
// memory figures of parsing real-world mail.
func BenchmarkParseCorpus(b *testing.B) {
	files := allCorpus(b)
	if len(files) < 100 {
		b.Skip("corpus not found")
	}
	var total int64
	for _, f := range files {
		total += int64(len(f))
	}
	b.SetBytes(total)
	b.ReportAllocs()
	for b.Loop() {
		for _, f := range files {
			if _, err := Parse(bytes.NewReader(f), Limits{}); err != nil {
				b.Fatal(err)
			}
		}
	}
}
