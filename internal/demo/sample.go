package demo

import (
	"cmp"
	"encoding/base64"
	"fmt"
	"strings"
	"time"
)

// SampleKind selects one of the sample messages.
type SampleKind int

const (
	// CIFailure is a GitHub Actions failure notification: From "GitHub <noreply@github.com>",
	// Subject "[org/repo] Run failed: build (main)", Authentication-Results with spf, dkim and
	// dmarc all "pass", multipart/alternative text and HTML.
	CIFailure SampleKind = iota
	// Invoice is a vendor invoice: From "Vendor Billing <billing@vendor.example>", Subject
	// "Invoice 2026-1234", multipart/mixed with a text part and a small PDF attachment
	// (invoice-2026-1234.pdf).
	Invoice
	// Personal is a plain-text note between people that no CI or invoice rule should match.
	Personal
)

// String returns the kind's name: "ci-failure", "invoice" or "personal".
func (k SampleKind) String() string {
	switch k {
	case CIFailure:
		return "ci-failure"
	case Invoice:
		return "invoice"
	case Personal:
		return "personal"
	default:
		return fmt.Sprintf("SampleKind(%d)", int(k))
	}
}

// NumSampleKinds is the number of sample kinds: SampleKind(i % NumSampleKinds) cycles through
// them.
const NumSampleKinds = 3

// SampleOptions varies a sample message.
type SampleOptions struct {
	// Kind selects the message.
	Kind SampleKind
	// Date is the Date header; zero means 2026-11-26T10:00:00Z plus i minutes. The Message-ID includes its
	// Unix time, so passing time.Now() makes messages unique across runs (the demo does this).
	Date time.Time
	// To is the recipient; empty means DefaultUser.
	To string
}

// Sample returns sample message i (i ≥ 0) of the given kind as RFC 5322 text with CRLF line
// endings. Messages with different i differ in Message-ID, Date and Subject: i = 0 has the
// canonical subject, i ≥ 1 appends " #i". The same i and options always give the same bytes.
func Sample(i int, opts SampleOptions) []byte {
	date := opts.Date
	if date.IsZero() {
		date = time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Minute)
	}
	s := sampleParams{
		i:      i,
		date:   date.Format(time.RFC1123Z),
		to:     cmp.Or(opts.To, DefaultUser),
		suffix: "",
		stamp:  fmt.Sprintf("%d.%d", date.Unix(), i),
	}
	if i > 0 {
		s.suffix = fmt.Sprintf(" #%d", i)
	}
	var text string
	switch opts.Kind {
	case Invoice:
		text = s.invoice()
	case Personal:
		text = s.personal()
	default:
		text = s.ciFailure()
	}
	return []byte(strings.ReplaceAll(text, "\n", "\r\n"))
}

type sampleParams struct {
	i      int
	date   string
	to     string
	suffix string
	stamp  string // makes Message-IDs and boundaries unique
}

func (s sampleParams) ciFailure() string {
	return `Delivered-To: ` + s.to + `
Return-Path: <noreply@github.com>
Authentication-Results: mx.google.com;
       dkim=pass header.i=@github.com header.s=pf2023 header.b=Qx7Lm2pA;
       spf=pass (google.com: domain of noreply@github.com designates 192.30.252.205 as permitted sender) smtp.mailfrom=noreply@github.com;
       dmarc=pass (p=REJECT sp=REJECT dis=NONE) header.from=github.com
Date: ` + s.date + `
From: GitHub <noreply@github.com>
To: ` + s.to + `
Message-ID: <org/repo/actions/runs/` + s.stamp + `@github.com>
Subject: [org/repo] Run failed: build (main)` + s.suffix + `
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="gh-alt-` + s.stamp + `"
List-ID: org/repo <repo.org.github.com>
List-Unsubscribe: <https://github.com/notifications/unsubscribe/org/repo>
X-GitHub-Reason: ci_activity
X-GitHub-Sender: octocat
Precedence: list
Auto-Submitted: auto-generated

--gh-alt-` + s.stamp + `
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 7bit

[org/repo] build workflow run

build: All jobs have failed

View workflow run: https://github.com/org/repo/actions/runs/` + s.stamp + `

  test (ubuntu-latest)
  Failed in 2 minutes and 3 seconds
  Process completed with exit code 1.

You are receiving this because you are subscribed to this thread.
Manage your GitHub Actions notifications: https://github.com/settings/notifications

--gh-alt-` + s.stamp + `
Content-Type: text/html; charset=utf-8
Content-Transfer-Encoding: 7bit

<!DOCTYPE html>
<html><body>
<h1>[org/repo] build workflow run</h1>
<p><strong>build:</strong> All jobs have failed</p>
<p><a href="https://github.com/org/repo/actions/runs/` + s.stamp + `">View workflow run</a></p>
<table><tr><td>test (ubuntu-latest)</td><td>Failed in 2 minutes and 3 seconds</td></tr></table>
</body></html>

--gh-alt-` + s.stamp + `--
`
}

func (s sampleParams) invoice() string {
	pdf := base64.StdEncoding.EncodeToString(samplePDF())
	var wrapped strings.Builder
	for len(pdf) > 76 { // RFC 2045 §6.8: encoded lines of at most 76 characters
		wrapped.WriteString(pdf[:76] + "\n")
		pdf = pdf[76:]
	}
	wrapped.WriteString(pdf + "\n")
	return `Return-Path: <bounces@vendor.example>
Authentication-Results: mx.example.test;
       dkim=pass header.d=vendor.example;
       spf=pass smtp.mailfrom=vendor.example;
       dmarc=pass header.from=vendor.example
Date: ` + s.date + `
From: Vendor Billing <billing@vendor.example>
To: ` + s.to + `
Message-ID: <invoice-2026-1234.` + s.stamp + `@vendor.example>
Subject: Invoice 2026-1234` + s.suffix + `
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="inv-mixed-` + s.stamp + `"

This is a multi-part message in MIME format.

--inv-mixed-` + s.stamp + `
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

Hello,

please find attached invoice 2026-1234 for November 2026.

Amount due: 1.234,00 =E2=82=AC
Due date: 10 December 2026

Kind regards,
Vendor Billing

--inv-mixed-` + s.stamp + `
Content-Type: application/pdf; name="invoice-2026-1234.pdf"
Content-Disposition: attachment; filename="invoice-2026-1234.pdf"
Content-Transfer-Encoding: base64

` + wrapped.String() + `
--inv-mixed-` + s.stamp + `--
`
}

func (s sampleParams) personal() string {
	return `Date: ` + s.date + `
From: Alice Example <alice@example.org>
To: ` + s.to + `
Message-ID: <note.` + s.stamp + `@example.org>
Subject: Lunch on Friday?` + s.suffix + `
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8; format=flowed
Content-Transfer-Encoding: 8bit

Hi,

are you free for lunch on Friday? The new place by the river does a
good soup. 12:30 would suit me.

Alice
`
}

// samplePDF returns a minimal, valid one-page PDF 1.4 (about 600 bytes) that says
// "Invoice 2026-1234", with exact cross-reference offsets and stream length.
func samplePDF() []byte {
	const content = "BT /F1 24 Tf 72 760 Td (Invoice 2026-1234) Tj ET"
	objects := []string{
		"<< /Type /Catalog /Pages 2 0 R >>",
		"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
		"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R " +
			"/Resources << /Font << /F1 5 0 R >> >> >>",
		fmt.Sprintf("<< /Length %d >>\nstream\n%s\nendstream", len(content), content),
		"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
	}
	var b strings.Builder
	b.WriteString("%PDF-1.4\n")
	offsets := make([]int, len(objects))
	for i, obj := range objects {
		offsets[i] = b.Len()
		fmt.Fprintf(&b, "%d 0 obj\n%s\nendobj\n", i+1, obj)
	}
	xref := b.Len()
	fmt.Fprintf(&b, "xref\n0 %d\n0000000000 65535 f \n", len(objects)+1)
	for _, off := range offsets {
		fmt.Fprintf(&b, "%010d 00000 n \n", off)
	}
	fmt.Fprintf(&b, "trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n", len(objects)+1, xref)
	return []byte(b.String())
}
