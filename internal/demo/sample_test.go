package demo

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	gomessage "github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset"
)

func TestSampleShapes(t *testing.T) {
	for _, tc := range []struct {
		kind        SampleKind
		from        string
		subject     string
		contentType string
		attachment  string
	}{
		{CIFailure, "noreply@github.com", "[org/repo] Run failed: build (main)", "multipart/alternative", ""},
		{Invoice, "billing@vendor.example", "Invoice 2026-1234", "multipart/mixed", "invoice-2026-1234.pdf"},
		{Personal, "alice@example.org", "Lunch on Friday?", "text/plain", ""},
	} {
		t.Run(tc.kind.String(), func(t *testing.T) {
			for _, i := range []int{0, 1, 7} {
				raw := Sample(i, SampleOptions{Kind: tc.kind})
				if bytes.Contains(bytes.ReplaceAll(raw, []byte("\r\n"), nil), []byte("\n")) {
					t.Fatal("bare LF in message; RFC 5322 §2.3 wants CRLF")
				}
				msg, err := mail.ReadMessage(bytes.NewReader(raw))
				if err != nil {
					t.Fatal(err)
				}
				from, err := mail.ParseAddress(msg.Header.Get("From"))
				if err != nil || from.Address != tc.from {
					t.Errorf("From = %v, %v; want %s", from, err, tc.from)
				}
				wantSubject := tc.subject
				if i > 0 {
					wantSubject += fmt.Sprintf(" #%d", i)
				}
				if got := msg.Header.Get("Subject"); got != wantSubject {
					t.Errorf("Subject = %q, want %q", got, wantSubject)
				}
				if _, err := msg.Header.Date(); err != nil {
					t.Errorf("Date: %v", err)
				}
				if _, err := mail.ParseAddress(msg.Header.Get("Message-ID")); err != nil {
					t.Errorf("Message-ID %q: %v", msg.Header.Get("Message-ID"), err)
				}
				mt, _, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
				if err != nil || mt != tc.contentType {
					t.Errorf("Content-Type %q, %v; want %s", mt, err, tc.contentType)
				}
				if tc.kind == CIFailure {
					ar := msg.Header.Get("Authentication-Results")
					for _, want := range []string{"mx.google.com;", "spf=pass", "dkim=pass", "dmarc=pass"} {
						if !strings.Contains(ar, want) {
							t.Errorf("Authentication-Results lacks %q: %s", want, ar)
						}
					}
				}
				checkParts(t, raw, tc.attachment)
			}
		})
	}
}

// checkParts walks the MIME tree with go-message and checks the attachment, if any, is a PDF.
func checkParts(t *testing.T, raw []byte, attachment string) {
	t.Helper()
	e, err := gomessage.Read(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	err = e.Walk(func(path []int, part *gomessage.Entity, err error) error {
		if err != nil {
			return err
		}
		if part.MultipartReader() != nil {
			return nil // Walk reads the children; reading the body here would consume them
		}
		body, err := io.ReadAll(part.Body)
		if err != nil {
			return err
		}
		if _, params, err := part.Header.ContentDisposition(); err == nil && params["filename"] != "" {
			if params["filename"] != attachment {
				t.Errorf("attachment %q, want %q", params["filename"], attachment)
			}
			checkPDF(t, body)
			found = true
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk MIME parts: %v", err)
	}
	if found != (attachment != "") {
		t.Errorf("attachment found = %v, want %q", found, attachment)
	}
}

// checkPDF checks that each cross-reference entry points at its object and startxref at xref.
func checkPDF(t *testing.T, pdf []byte) {
	t.Helper()
	if !bytes.HasPrefix(pdf, []byte("%PDF-1.4")) || !bytes.HasSuffix(pdf, []byte("%%EOF\n")) {
		t.Fatal("not a PDF")
	}
	entries := regexp.MustCompile(`(\d{10}) 00000 n `).FindAllSubmatch(pdf, -1)
	if len(entries) != 5 {
		t.Fatalf("%d xref entries, want 5", len(entries))
	}
	for i, e := range entries {
		off, _ := strconv.Atoi(string(e[1]))
		if want := fmt.Sprintf("%d 0 obj", i+1); !bytes.HasPrefix(pdf[off:], []byte(want)) {
			t.Errorf("xref entry %d points at %q, want %q", i+1, pdf[off:off+8], want)
		}
	}
	m := regexp.MustCompile(`startxref\n(\d+)\n`).FindSubmatch(pdf)
	if off, _ := strconv.Atoi(string(m[1])); !bytes.HasPrefix(pdf[off:], []byte("xref\n")) {
		t.Errorf("startxref %d does not point at xref", off)
	}
	if m := regexp.MustCompile(`/Length (\d+) >>\nstream\n`).FindSubmatchIndex(pdf); m != nil {
		n, _ := strconv.Atoi(string(pdf[m[2]:m[3]]))
		if !bytes.HasPrefix(pdf[m[1]+n:], []byte("\nendstream")) {
			t.Errorf("stream /Length %d is wrong", n)
		}
	}
}

func TestSampleUniqueAndStable(t *testing.T) {
	ids := make(map[string]bool)
	for kind := range SampleKind(NumSampleKinds) {
		for i := range 20 {
			raw := Sample(i, SampleOptions{Kind: kind})
			if !bytes.Equal(raw, Sample(i, SampleOptions{Kind: kind})) {
				t.Fatalf("%s %d: not deterministic", kind, i)
			}
			msg, err := mail.ReadMessage(bytes.NewReader(raw))
			if err != nil {
				t.Fatal(err)
			}
			id := msg.Header.Get("Message-ID")
			if ids[id] {
				t.Errorf("%s %d: duplicate Message-ID %s", kind, i, id)
			}
			ids[id] = true
		}
	}
	now := time.Now()
	a := Sample(0, SampleOptions{Kind: Invoice, Date: now})
	b := Sample(0, SampleOptions{Kind: Invoice, Date: now.Add(time.Second)})
	if idOf(t, a) == idOf(t, b) {
		t.Error("different Dates gave the same Message-ID")
	}
	if to := headerOf(t, Sample(0, SampleOptions{To: "x@example.test"}), "To"); to != "x@example.test" {
		t.Errorf("To = %q", to)
	}
}

func idOf(t *testing.T, raw []byte) string { return headerOf(t, raw, "Message-ID") }

func headerOf(t *testing.T, raw []byte, name string) string {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	return msg.Header.Get(name)
}
