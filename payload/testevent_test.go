package payload

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/mailhook/mailhook/message"
)

// The test event reads as a test in every format; json carries "type": "mailhook.test" and a real
// payload "message.matched", so a receiver tells them apart.
func TestTestEventInEveryFormat(t *testing.T) {
	p := TestEvent("test_ABC", "ci", time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC))
	for _, f := range Formats() {
		o := FormatOptions{Format: f}
		if f == FormatTemplate {
			o.Template = `{"kind": {{ json .Type }}, "subject": {{ json .Subject }}}`
		}
		fm, err := NewFormatter(o)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		b, err := fm.RenderTest(p)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if !json.Valid(b) {
			t.Fatalf("%s: not JSON: %s", f, b)
		}
		if !strings.Contains(string(b), "mailhook test event for webhook ci") {
			t.Errorf("%s: the body does not say it is a test: %s", f, b)
		}
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		switch f {
		case FormatJSON:
			if m["type"] != TypeTest || m["id"] != "test_ABC" {
				t.Errorf("json: type %v id %v, want %q test_ABC", m["type"], m["id"], TypeTest)
			}
		case FormatGitHub:
			if m["event_type"] != TypeTest {
				t.Errorf("github: event_type %v, want %q", m["event_type"], TypeTest)
			}
		case FormatTemplate:
			if m["kind"] != TypeTest {
				t.Errorf("template: .Type %v, want %q", m["kind"], TypeTest)
			}
		}
	}
	real := New("msg_1", "r", "a", "INBOX", 1, 1, fixedMessage(), message.Auth{}, BodyText, 0)
	if real.Type != TypeMessageMatched {
		t.Errorf("a matched message's type is %q, want %q", real.Type, TypeMessageMatched)
	}
}
