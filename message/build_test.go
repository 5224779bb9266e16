package message

import (
	"reflect"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
)

func leaf(typ, sub string, params map[string]string, disp string, dispParams map[string]string) *imap.BodyStructureSinglePart {
	bs := &imap.BodyStructureSinglePart{Type: typ, Subtype: sub, Params: params, Encoding: "7bit", Size: 10}
	if disp != "" {
		bs.Extended = &imap.BodyStructureSinglePartExt{Disposition: &imap.BodyStructureDisposition{Value: disp, Params: dispParams}}
	}
	return bs
}

func multi(sub string, children ...imap.BodyStructure) *imap.BodyStructureMultiPart {
	return &imap.BodyStructureMultiPart{Subtype: sub, Children: children}
}

func rfc822(inner imap.BodyStructure) *imap.BodyStructureSinglePart {
	bs := leaf("message", "rfc822", nil, "", nil)
	bs.MessageRFC822 = &imap.BodyStructureMessageRFC822{BodyStructure: inner}
	return bs
}

func TestBodySections(t *testing.T) {
	plain := func() *imap.BodyStructureSinglePart { return leaf("TEXT", "Plain", nil, "", nil) }
	html := func() *imap.BodyStructureSinglePart { return leaf("text", "html", nil, "", nil) }
	pdf := func() *imap.BodyStructureSinglePart {
		return leaf("application", "pdf", nil, "attachment", map[string]string{"filename": "a.pdf"})
	}
	tests := []struct {
		name       string
		bs         imap.BodyStructure
		text, html []string
	}{
		{"single text part", plain(), []string{"1"}, nil},
		{"single html part", html(), nil, []string{"1"}},
		{"single pdf", pdf(), nil, nil},
		{"alternative", multi("alternative", plain(), html()), []string{"1"}, []string{"2"}},
		{"mixed with alternative and pdf", multi("mixed", multi("alternative", plain(), html()), pdf()),
			[]string{"1.1"}, []string{"1.2"}},
		{"alternative of related", multi("alternative", plain(), multi("related", html(), leaf("image", "png", nil, "inline", nil))),
			[]string{"1"}, []string{"2.1"}},
		{"related: only the root", multi("related", html(), html()), nil, []string{"1"}},
		{"text attachment is not a body",
			multi("mixed", plain(), leaf("text", "plain", nil, "attachment", nil),
				leaf("text", "plain", map[string]string{"name": "log.txt"}, "", nil),
				leaf("text", "plain", nil, "inline", map[string]string{"filename": "shown.txt"})),
			[]string{"1", "4"}, nil},
		{"inline texts are joined", multi("mixed", plain(), leaf("image", "gif", nil, "", nil), plain()),
			[]string{"1", "3"}, nil},
		{"attached message is not a body", multi("mixed", plain(), rfc822(multi("alternative", plain(), html()))),
			[]string{"1"}, nil},
		{"top-level message/rfc822", rfc822(plain()), nil, nil},
		{"last alternative wins", multi("alternative", plain(), plain(), leaf("text", "calendar", nil, "", nil)),
			[]string{"2"}, nil},
		{"signed", multi("signed", multi("alternative", plain(), html()), leaf("application", "pgp-signature", nil, "", nil)),
			[]string{"1.1"}, []string{"1.2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text, html := BodySections(tt.bs)
			if !reflect.DeepEqual(text, tt.text) || !reflect.DeepEqual(html, tt.html) {
				t.Errorf("BodySections = %q, %q; want %q, %q", text, html, tt.text, tt.html)
			}
		})
	}
}

func TestBuildAttachments(t *testing.T) {
	bs := multi("mixed",
		multi("alternative", leaf("text", "plain", nil, "", nil), leaf("text", "html", nil, "", nil)),
		// RFC 2231 parameters as a server may pass them through undecoded.
		leaf("Application", "PDF", map[string]string{"NAME": "fallback.pdf"}, "ATTACHMENT",
			map[string]string{"filename*0*": "utf-8''Rech", "filename*1*": "nung%20%E2%82%AC.pdf"}),
		leaf("image", "png", map[string]string{"name": "=?utf-8?q?l=C3=B6go.png?="}, "", nil),
		// A disposition a server could not parse, handed over whole.
		leaf("application", "zip", nil, "attachment; filename=my archive.zip", nil),
		rfc822(multi("mixed", leaf("text", "plain", nil, "", nil), leaf("application", "x-tar", nil, "", nil))),
	)
	m := Build(Pieces{Structure: bs}, Limits{})
	var got []string
	for _, a := range m.Attachments {
		got = append(got, a.Section+" "+a.ContentType+" "+a.Filename)
	}
	want := []string{
		"2 application/pdf Rechnung €.pdf",
		"3 image/png lögo.png",
		"4 application/zip my archive.zip",
		"5 message/rfc822 ",
		"5.1 text/plain ",
		"5.2 application/x-tar ",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("attachments:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if m.TextFetched || m.HTMLFetched {
		t.Error("bodies reported fetched without parts")
	}
}

func TestBuildBodies(t *testing.T) {
	text := leaf("text", "plain", map[string]string{"charset": "ISO-8859-1"}, "", nil)
	text.Encoding = "Quoted-Printable"
	html := leaf("text", "html", nil, "", nil)
	html.Encoding = "base64"
	html.Size = 1000
	bs := multi("alternative", text, html)

	m := Build(Pieces{
		Header:    []byte("Subject: hi\r\n\r\n"),
		Structure: bs,
		Parts:     map[string][]byte{"1": []byte("caf=E9=\r\n!\r\n"), "2": []byte("PHA+aGk8L3A+")},
		// The HTML part was fetched only partially.
		PartialParts: map[string]bool{"2": true},
	}, Limits{})
	if m.Text != "café!\n" || m.HTML != "<p>hi</p>" || !m.TextFetched || !m.HTMLFetched {
		t.Errorf("text %q html %q fetched %v %v", m.Text, m.HTML, m.TextFetched, m.HTMLFetched)
	}
	if !m.Truncated || !hasDefect(m, "body_truncated") {
		t.Errorf("partial part: truncated %v, defects %v", m.Truncated, m.Defects)
	}

	m = Build(Pieces{Structure: bs, Parts: map[string][]byte{"1": []byte("x")}}, Limits{})
	if !m.TextFetched || m.HTMLFetched || m.HTML != "" {
		t.Errorf("only text fetched: %v %v %q", m.TextFetched, m.HTMLFetched, m.HTML)
	}

	m = Build(Pieces{Header: []byte("Subject: no structure\r\n")}, Limits{})
	if m.Subject != "no structure" || m.TextFetched || m.HTMLFetched || m.Attachments != nil {
		t.Errorf("without structure: %+v", m)
	}
}

func TestBuildLimits(t *testing.T) {
	// A structure nested deeper than the limit, and one with too many parts.
	var deep imap.BodyStructure = leaf("text", "plain", nil, "", nil)
	for i := 0; i < 40; i++ {
		deep = multi("mixed", deep)
	}
	m := Build(Pieces{Structure: deep, Parts: map[string][]byte{}}, Limits{})
	if !hasDefect(m, "depth_exceeded") || !m.Truncated {
		t.Errorf("deep: defects %v", m.Defects)
	}
	var kids []imap.BodyStructure
	for i := 0; i < 20; i++ {
		kids = append(kids, leaf("image", "png", nil, "", nil))
	}
	m = Build(Pieces{Structure: multi("mixed", kids...)}, Limits{Parts: 5})
	if !hasDefect(m, "too_many_parts") || len(m.Attachments) != 5 {
		t.Errorf("many: defects %v, %d attachments", m.Defects, len(m.Attachments))
	}

	// A header section beyond the limit keeps the fields before it.
	hdr := "Subject: s\r\n" + strings.Repeat("X-A: 12345678901234567890\r\n", 100)
	m = Build(Pieces{Header: []byte(hdr)}, Limits{HeaderBytes: 1000})
	if m.Subject != "s" || !hasDefect(m, "header_too_large") || len(m.Headers) > 40 {
		t.Errorf("header: subject %q defects %v, %d headers", m.Subject, m.Defects, len(m.Headers))
	}
}
