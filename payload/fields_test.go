package payload

import (
	"strings"
	"testing"

	"github.com/mailhook/mailhook/message"
)

// TestTemplateFields: a template format reads the rule's extracted fields as .Fields.NAME; the
// startup check renders the names the webhook's rules define (hostile strings, so a field put
// into JSON without json fails there), and a name no rule defines fails at startup.
func TestTemplateFields(t *testing.T) {
	opts := FormatOptions{Format: FormatTemplate, Template: `{"n": {{ json .Fields.number }}}`, Fields: []string{"number"}}
	f, err := NewFormatter(opts)
	if err != nil {
		t.Fatal(err)
	}
	p := sample(BodyText)
	p.SetFields(map[string]any{"number": `INV-"1"`}, nil)
	body, err := f.Render(p)
	if err != nil || string(body) != `{"n": "INV-\"1\""}` {
		t.Errorf("rendered %s, %v", body, err)
	}
	opts.Fields = nil
	if _, err := NewFormatter(opts); err == nil || !strings.Contains(err.Error(), "number") {
		t.Errorf("a field no rule extracts: %v; want a startup error naming it", err)
	}
	opts = FormatOptions{Format: FormatTemplate, Template: `{"n": "{{ .Fields.number }}"}`, Fields: []string{"number"}}
	if _, err := NewFormatter(opts); err == nil {
		t.Error("a field put into JSON without json passed the startup check")
	}
}

// TestSetFields: fields go into the payload JSON, failed ones' defects join the sorted defects.
func TestSetFields(t *testing.T) {
	p := sample(BodyNone)
	p.Defects = []string{"bad_date"}
	p.SetFields(map[string]any{"a": "x", "b": nil}, []string{"extract_failed:b"})
	raw, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), `"defects":["bad_date","extract_failed:b"],"fields":{"a":"x","b":null}`) {
		t.Errorf("payload %s", raw)
	}
}

// TestReplyTextAndURLs: a payload with bodies carries reply_text and urls of what it ships (a
// body: text webhook takes no URL from html), none without bodies; the chat formats show the
// reply without its quoted history.
func TestReplyTextAndURLs(t *testing.T) {
	msg := &message.Message{Subject: "Re: build", From: message.Address{Address: "bob@example.com"}}
	msg.Text = "Fixed in https://ci.example/run/9.\n\nOn Tue, Dec 1, 2026 at 10:14 AM Alice <alice@example.com> wrote:\n> The build at https://ci.example/run/8 fails.\n> Lots of old thread text.\n"
	msg.HTML = `<p>Fixed in <a href="https://ci.example/run/9">run 9</a>, see <a href="https://docs.example/">docs</a></p>`
	p := New("msg_X", "r", "a", "INBOX", 1, 1, msg, msg.Auth(""), BodyText, 0)
	if p.ReplyText == nil || *p.ReplyText != "Fixed in https://ci.example/run/9." {
		t.Errorf("reply_text %v", p.ReplyText)
	}
	if p.URLs == nil || strings.Join(*p.URLs, " ") != "https://ci.example/run/9 https://ci.example/run/8" {
		t.Errorf("urls %v", p.URLs)
	}
	both := New("msg_X", "r", "a", "INBOX", 1, 1, msg, msg.Auth(""), BodyBoth, 0)
	if strings.Join(*both.URLs, " ") != "https://ci.example/run/9 https://ci.example/run/8 https://docs.example/" {
		t.Errorf("body both: urls %v", *both.URLs)
	}
	none := New("msg_X", "r", "a", "INBOX", 1, 1, msg, msg.Auth(""), BodyNone, 0)
	if raw, _ := none.Marshal(); strings.Contains(string(raw), "reply_text") || strings.Contains(string(raw), "urls") {
		t.Errorf("body none carries reply_text or urls: %s", raw)
	}
	for _, format := range []Format{FormatSlack, FormatDiscord, FormatTeams} {
		f, err := NewFormatter(FormatOptions{Format: format})
		if err != nil {
			t.Fatal(err)
		}
		body, err := f.Render(p)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(body), "Fixed in") || strings.Contains(string(body), "old thread text") {
			t.Errorf("%s shows the quoted history: %s", format, body)
		}
	}
}
