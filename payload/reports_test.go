package payload

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/mailhook/mailhook/internal/fixture"
	"github.com/mailhook/mailhook/message"
)

// A bounce, a complaint and an invitation ship their reports under the names rules use; other mail
// has none of the three keys. The chat formats show the bounce's recipient and status, the
// complaint's type and domain, the event's time.
func TestReportsInPayloadAndChat(t *testing.T) {
	for _, c := range []struct {
		file, key string
		want      []string // in the JSON payload
		chat      []string // in every chat format's body
	}{
		{"bounce-postfix.eml", "bounce", []string{`"kind":"hard"`, `"address":"jane.doe@example.org"`, `"status":"5.1.1"`,
			`"original_message_id":"<inv-2026-0042.1764663245@shop.example.com>"`},
			[]string{"Bounce", "hard · jane.doe@example.org · 5.1.1 · 550 5.1.1"}},
		{"arf-complaint.eml", "complaint", []string{`"feedback_type":"abuse"`, `"reported_domain":"shop.example.com"`},
			[]string{"Complaint", "abuse · shop.example.com · reader@example-isp.com"}},
		{"invite-google.eml", "calendar", []string{`"method":"REQUEST"`, `"start":"2026-12-10T09:00:00Z"`, `"all_day":false`},
			[]string{"Event", "REQUEST · Release review · 2026-12-10T09:00:00Z – 2026-12-10T10:00:00Z · Room 4.12, Berlin office"}},
		{"plain.eml", "", nil, nil},
	} {
		p := New("msg_X", "r", "a", "INBOX", 1, 1, fixture.Message(t, c.file), message.Auth{}, BodyText, 0)
		b, err := p.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"bounce", "complaint", "calendar"} {
			if _, has := m[k]; has != (k == c.key) {
				t.Errorf("%s: key %q present %v", c.file, k, has)
			}
		}
		for _, w := range c.want {
			if !strings.Contains(string(b), w) {
				t.Errorf("%s: payload lacks %s", c.file, w)
			}
		}
		for _, format := range []Format{FormatSlack, FormatDiscord, FormatTeams} {
			body, err := mustFormatter(t, FormatOptions{Format: format}).Render(p)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range c.chat {
				// Discord escapes markdown characters; compare without its backslashes.
				if !strings.Contains(strings.ReplaceAll(string(body), `\\`, ""), w) {
					t.Errorf("%s, %s: body lacks %q:\n%s", c.file, format, w, body)
				}
			}
		}
	}
}

// A template must cope with mail that is no bounce: {{.Bounce.Kind}} fails at startup with a
// hint, {{with .Bounce}} passes.
func TestTemplateReportsChecked(t *testing.T) {
	_, err := NewFormatter(FormatOptions{Format: FormatTemplate, Template: `{"kind": {{ json .Bounce.Kind }}}`})
	if err == nil || !strings.Contains(err.Error(), "{{with .Bounce}}") {
		t.Errorf("a template reading .Bounce.Kind unguarded: %v", err)
	}
	f := mustFormatter(t, FormatOptions{Format: FormatTemplate,
		Template: `{"kind": {{ with .Bounce }}{{ json .Kind }}{{ else }}null{{ end }}, "event": {{ with .Calendar }}{{ json .Start }}{{ else }}null{{ end }}}`})
	body, err := f.Render(New("msg_X", "r", "a", "INBOX", 1, 1, fixture.Message(t, "bounce-postfix.eml"), message.Auth{}, BodyText, 0))
	if err != nil || string(body) != `{"kind": "hard", "event": null}` {
		t.Errorf("rendered %s, %v", body, err)
	}
}
