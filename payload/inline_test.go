package payload

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"testing"

	"github.com/mailhook/mailhook/message"
)

// A body with inline references splits into literals and sections; putting each section's base64
// between the literals gives valid JSON whose content_base64 values are that base64.
func TestSplitInline(t *testing.T) {
	m := &message.Message{Subject: "scans", Attachments: []message.Attachment{
		{Filename: "a.pdf", ContentType: "application/pdf", Size: 3, Section: "2"},
		{Filename: "b.png", ContentType: "image/png", Size: 4, Section: "4.2"},
		{Filename: "c.txt", ContentType: "text/plain", Size: 5, Section: "5"},
	}}
	p := New("msg_A", "r", "personal", "INBOX", 7, 42, m, message.Auth{}, BodyNone, 0)
	p.InlineFromSpool(0, "2")
	p.InlineFromSpool(1, "4.2")
	body, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !HasInline(body) {
		t.Fatalf("HasInline = false for %s", body)
	}
	pieces, err := SplitInline(body)
	if err != nil {
		t.Fatal(err)
	}
	content := map[string][]byte{"2": []byte("%PD"), "4.2": []byte("\x89PNG")}
	var out bytes.Buffer
	var secs []string
	for _, pc := range pieces {
		if pc.Section == "" {
			out.Write(pc.Literal)
			continue
		}
		secs = append(secs, pc.Section)
		out.WriteString(base64.StdEncoding.EncodeToString(content[pc.Section]))
	}
	if len(secs) != 2 || secs[0] != "2" || secs[1] != "4.2" {
		t.Errorf("sections %v, want [2 4.2]", secs)
	}
	var back Payload
	if err := json.Unmarshal(out.Bytes(), &back); err != nil {
		t.Fatalf("joined body is not JSON: %v\n%s", err, out.Bytes())
	}
	for i, want := range []string{"JVBE", "iVBORw==", ""} {
		if got := back.Attachments[i].ContentBase64; got != want {
			t.Errorf("attachment %d: content_base64 %q, want %q", i, got, want)
		}
	}

	plain := []byte(`{"version":1}`)
	if HasInline(plain) {
		t.Error("HasInline = true for a body without references")
	}
	if pieces, err := SplitInline(plain); err != nil || len(pieces) != 1 || !bytes.Equal(pieces[0].Literal, plain) {
		t.Errorf("SplitInline(plain) = %v, %v; want the body as one literal", pieces, err)
	}
	if _, err := SplitInline([]byte(`{"content_base64":"\u0000spool:2"}`)); !errors.Is(err, ErrMalformedInline) {
		t.Errorf("unterminated reference: err %v, want ErrMalformedInline", err)
	}
}
