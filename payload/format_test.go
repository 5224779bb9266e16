package payload

import (
	"encoding/json"
	"errors"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/mailhook/mailhook/message"
)

// goldenTemplate is the template of the template format's golden test: every function once.
const goldenTemplate = `{"id": {{ json .ID }}, "title": {{ json (truncate 20 .Subject) }}, "from": {{ json (address .From) }},
 "to": {{ json (address .To) }}, "rule": {{ json (upper .Rule) }}, "text": {{ json (trim .Text) }},
 "list": {{ json (default "none" (index .Headers "list-id")) }}, "cc": {{ json (default "nobody" (address .Cc)) }},
 "tag": {{ json (lower (replace " " "-" .Account)) }}, "defects": {{ json (join "," .Defects) }},
 "payload": {{ json . }}}`

func mustFormatter(t *testing.T, o FormatOptions) *Formatter {
	t.Helper()
	f, err := NewFormatter(o)
	if err != nil {
		t.Fatalf("NewFormatter(%+v): %v", o, err)
	}
	return f
}

func goldenPayload() *Payload {
	return New("msg_ABCDEFGHIJKLMNOPQRSTUVWXYZ", "ci-failures", "personal", "INBOX", 1795689278, 4711,
		fixedMessage(), message.Auth{SPF: "pass", DKIM: "pass", DMARC: "pass"}, BodyBoth, 0)
}

// Each format has a golden file of the exact body, and every body is valid JSON.
func TestFormatGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts FormatOptions
	}{
		{"json", FormatOptions{}},
		{"slack", FormatOptions{Format: FormatSlack}},
		{"discord", FormatOptions{Format: FormatDiscord}},
		{"teams", FormatOptions{Format: FormatTeams}},
		{"github", FormatOptions{Format: FormatGitHub}},
		{"github_event_type", FormatOptions{Format: FormatGitHub, EventType: "mail-received"}},
		{"template", FormatOptions{Format: FormatTemplate, Template: goldenTemplate}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := mustFormatter(t, tc.opts)
			b, err := f.Render(goldenPayload())
			if err != nil {
				t.Fatal(err)
			}
			if !json.Valid(b) {
				t.Fatalf("not valid JSON: %s", b)
			}
			if f.ContentType() != ContentTypeJSON {
				t.Errorf("content type %q", f.ContentType())
			}
			golden(t, "format_"+tc.name+".golden", b)
		})
	}
}

// The json format is payload v1, byte for byte.
func TestFormatJSONIsPayload(t *testing.T) {
	p := goldenPayload()
	want, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := mustFormatter(t, FormatOptions{Format: FormatJSON}).Render(p)
	if err != nil || string(got) != string(want) {
		t.Errorf("json format differs from Payload.Marshal (err %v)", err)
	}
}

// hostile is a message whose every text tries to format, mention, link or break out.
func hostile(n int) *Payload {
	m := fixedMessage()
	evil := "<!channel> <!everyone> @everyone @here <@U123> <#C1> *bold* _it_ ~s~ `c` ||sp|| [x](https://evil.example) & &amp; > quote\n# head\n- item\n"
	m.Subject = strings.Repeat(evil, n)
	m.From = message.Address{Name: "<@U999> @everyone", Address: "a@b.example"}
	m.Text = strings.Repeat(evil, n) + " see https://example.com/a_b*c?x=1&y=<2>"
	m.Attachments = []message.Attachment{{Filename: "<!here>.pdf", ContentType: "application/pdf", Size: 1}}
	return New("msg_X", "rule", "acct", "INBOX", 1, 2, m, message.Auth{}, BodyText, -1)
}

// strings collects every string value in a decoded JSON document, with its key.
func collectStrings(v any, key string, fn func(key, s string)) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			collectStrings(e, k, fn)
		}
	case []any:
		for _, e := range x {
			collectStrings(e, key, fn)
		}
	case string:
		fn(key, x)
	}
}

func decode(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("body is not JSON: %v\n%s", err, b)
	}
	return m
}

// Slack: every text escapes & < > (Slack's control characters), so no mention, broadcast or link
// can be injected, and every text is within the Block Kit limits.
func TestSlackEscapingAndLimits(t *testing.T) {
	for _, n := range []int{1, 500} {
		b, err := mustFormatter(t, FormatOptions{Format: FormatSlack}).Render(hostile(n))
		if err != nil {
			t.Fatal(err)
		}
		m := decode(t, b)
		collectStrings(m, "", func(key, s string) {
			if key != "text" {
				return
			}
			if strings.ContainsAny(s, "<>") {
				t.Errorf("unescaped < or > in %q", s)
			}
			if strings.Contains(strings.NewReplacer("&amp;", "", "&lt;", "", "&gt;", "").Replace(s), "&") {
				t.Errorf("unescaped & in %q", s)
			}
			if utf16Len(s) > 3000 {
				t.Errorf("text of %d characters exceeds a section's 3000", utf16Len(s))
			}
		})
		blocks := m["blocks"].([]any)
		header := blocks[0].(map[string]any)["text"].(map[string]any)["text"].(string)
		if utf16Len(header) > 150 {
			t.Errorf("header of %d characters exceeds 150", utf16Len(header))
		}
		if len(b) > 12000 {
			t.Errorf("message of %d bytes; Slack refuses blocks much beyond 13,000 characters", len(b))
		}
	}
}

// Discord: allowed_mentions parses nothing, markdown and mention syntax are escaped outside URLs,
// and the embed stays within Discord's limits.
func TestDiscordEscapingAndLimits(t *testing.T) {
	for _, n := range []int{1, 500} {
		b, err := mustFormatter(t, FormatOptions{Format: FormatDiscord}).Render(hostile(n))
		if err != nil {
			t.Fatal(err)
		}
		var msg discordMessage
		if err := json.Unmarshal(b, &msg); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), `"allowed_mentions":{"parse":[]}`) {
			t.Errorf("allowed_mentions does not parse nothing: %s", b)
		}
		if utf16Len(msg.Content) > 2000 {
			t.Errorf("content of %d characters", utf16Len(msg.Content))
		}
		e := msg.Embeds[0]
		total := utf16Len(e.Title) + utf16Len(e.Description) + utf16Len(e.Footer.Text)
		for _, f := range e.Fields {
			total += utf16Len(f.Name) + utf16Len(f.Value)
			if utf16Len(f.Value) > 1024 {
				t.Errorf("field %s of %d characters", f.Name, utf16Len(f.Value))
			}
		}
		if utf16Len(e.Title) > 256 || utf16Len(e.Description) > 4096 || total > 6000 {
			t.Errorf("embed title %d, description %d, total %d characters", utf16Len(e.Title), utf16Len(e.Description), total)
		}
		unescaped := regexp.MustCompile(`\\.`) // drop every escaped character, keep what is live
		for _, s := range []string{msg.Content, e.Title, e.Description, e.Fields[0].Value} {
			live := unescaped.ReplaceAllString(s, "")
			for _, bad := range []string{"@", "<", "*bold*", "[x]", "\n#", "\n-", "||"} {
				if strings.Contains(live, bad) {
					t.Errorf("%q survived escaping in %q", bad, s)
				}
			}
		}
		if n == 1 && !strings.Contains(e.Description, "https://example.com/a_b*c?x=1&y=") {
			t.Errorf("URL escaped: %q", e.Description)
		}
	}
}

func TestDiscordEscape(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"plain text", "plain text"},
		{"**bold** and _it_", `\*\*bold\*\* and \_it\_`},
		{"@everyone hi", `\@everyone hi`},
		{"<@123> <#456> <t:1:R>", `\<\@123> \<#456> \<t:1:R>`},
		{"> quote\n# head\n- item\na - b", "\\> quote\n\\# head\n\\- item\na - b"},
		{"see https://x.example/a_b*c and _x_", `see https://x.example/a_b*c and \_x\_`},
		{"(https://x.example/a_b)", `\(https://x.example/a_b)`},
		{`back\slash`, `back\\slash`},
	} {
		if got := discordEscape(tc.in, 1000); got != tc.want {
			t.Errorf("discordEscape(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestEscapeCutNeverSplitsAnEscape(t *testing.T) {
	for max := 1; max < 30; max++ {
		got := slackEscape("a&b<c>d&e<f>g&h<i>j&k", max)
		if utf16Len(got) > max {
			t.Errorf("max %d: %q is %d long", max, got, utf16Len(got))
		}
		trimmed := strings.TrimSuffix(got, "…")
		for _, ent := range []string{"&am", "&l", "&g", "&a"} {
			if strings.HasSuffix(trimmed, ent) || strings.HasSuffix(trimmed, "&") {
				t.Errorf("max %d: split entity in %q (%s)", max, got, ent)
			}
		}
	}
	if got := truncateRunes("😀😀😀", 4); got != "😀…" {
		t.Errorf("truncateRunes counts UTF-16: got %q", got)
	}
}

// Teams: the mail's text is in TextRuns (no markdown), and the whole body stays under the size
// a Teams message may have, however long the mail.
func TestTeamsLimits(t *testing.T) {
	for _, n := range []int{1, 2000} {
		b, err := mustFormatter(t, FormatOptions{Format: FormatTeams}).Render(hostile(n))
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > teamsMaxBytes {
			t.Errorf("%d bytes, want at most %d", len(b), teamsMaxBytes)
		}
		m := decode(t, b)
		if m["type"] != "message" {
			t.Errorf("type %v", m["type"])
		}
		if strings.Contains(string(b), `"TextBlock"`) {
			t.Errorf("a TextBlock (markdown) is used: %s", b)
		}
	}
}

// GitHub: client_payload has at most 10 top-level properties, event_type defaults to the rule, and
// the Accept header GitHub asks for comes with the format.
func TestGitHubBody(t *testing.T) {
	f := mustFormatter(t, FormatOptions{Format: FormatGitHub})
	b, err := f.Render(hostile(2000))
	if err != nil {
		t.Fatal(err)
	}
	m := decode(t, b)
	if len(m) != 2 || m["event_type"] != "rule" {
		t.Errorf("top level %v", m)
	}
	cp := m["client_payload"].(map[string]any)
	if len(cp) > 10 {
		t.Errorf("client_payload has %d top-level properties, GitHub allows 10", len(cp))
	}
	if n := len(cp["text"].(string)); n > githubTextMaxBytes {
		t.Errorf("text of %d bytes", n)
	}
	if h := f.Headers(); len(h) != 1 || h[0].Name != "Accept" || h[0].Value != "application/vnd.github+json" {
		t.Errorf("headers %v", h)
	}
	if h := mustFormatter(t, FormatOptions{Format: FormatSlack}).Headers(); h != nil {
		t.Errorf("slack headers %v", h)
	}
}

func TestTemplate(t *testing.T) {
	p := goldenPayload()
	t.Run("text content type skips the JSON check", func(t *testing.T) {
		f := mustFormatter(t, FormatOptions{Format: FormatTemplate, ContentType: "text/plain; charset=utf-8",
			Template: `{{ .Subject }} from {{ .From.Address }}`})
		b, err := f.Render(p)
		if err != nil {
			t.Fatal(err)
		}
		if want := "[acme/app] Run failed: CI - main (abc123) from noreply@github.com"; string(b) != want {
			t.Errorf("got %q", b)
		}
		if f.ContentType() != "text/plain; charset=utf-8" {
			t.Errorf("content type %q", f.ContentType())
		}
	})
	t.Run("+json content type is checked", func(t *testing.T) {
		_, err := NewFormatter(FormatOptions{Format: FormatTemplate, ContentType: "application/cloudevents+json",
			Template: `{"subject": "{{ .Subject }}"}`})
		if err == nil {
			t.Fatal("unquoted subject with quotes in the sample passed the JSON check")
		}
	})
	t.Run("render-time invalid JSON", func(t *testing.T) {
		// Valid on the sample (its subject has quotes, but this template drops them), not on p.
		f := mustFormatter(t, FormatOptions{Format: FormatTemplate,
			Template: `{"n": {{ if eq .Rule "sample-rule" }}1{{ else }}{{ .Subject }}{{ end }}}`})
		if _, err := f.Render(p); err == nil || !strings.Contains(err.Error(), "not valid JSON") {
			t.Errorf("render: %v", err)
		}
	})
	t.Run("body none gives empty Text", func(t *testing.T) {
		f := mustFormatter(t, FormatOptions{Format: FormatTemplate, Body: BodyNone, Template: `{"t": {{ json .Text }}}`})
		np := New("msg_1", "r", "a", "INBOX", 1, 1, fixedMessage(), message.Auth{}, BodyNone, 0)
		b, err := f.Render(np)
		if err != nil || string(b) != `{"t": ""}` {
			t.Errorf("got %s, %v", b, err)
		}
	})
	for _, tc := range []struct {
		name  string
		opts  FormatOptions
		field string
		want  string
	}{
		{"missing template", FormatOptions{Format: FormatTemplate}, "template", "required"},
		{"syntax", FormatOptions{Format: FormatTemplate, Template: `{{ .Subject `}, "template", "unclosed action"},
		{"unknown field", FormatOptions{Format: FormatTemplate, Template: `{{ json .Subjekt }}`}, "template", "Subjekt"},
		{"unknown function", FormatOptions{Format: FormatTemplate, Template: `{{ shout .Subject }}`}, "template", "shout"},
		{"not JSON", FormatOptions{Format: FormatTemplate, Template: `subject: {{ .Subject }}`}, "template", "not valid JSON"},
		{"bad content type", FormatOptions{Format: FormatTemplate, Template: `x`, ContentType: "not a type"}, "content_type", "not a media type"},
		{"template on slack", FormatOptions{Format: FormatSlack, Template: `{}`}, "template", "only to format: template"},
		{"content type on json", FormatOptions{ContentType: "text/plain"}, "content_type", "only to format: template"},
		{"event type on json", FormatOptions{EventType: "x"}, "event_type", "only to format: github"},
		{"long event type", FormatOptions{Format: FormatGitHub, EventType: strings.Repeat("e", 101)}, "event_type", "longer than 100"},
		{"unknown format", FormatOptions{Format: "xml"}, "format", "not one of"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewFormatter(tc.opts)
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v, want a *FormatError", err)
			}
			if fe.Field != tc.field || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q (field %s), want field %s containing %q", err, fe.Field, tc.field, tc.want)
			}
		})
	}
}

// Every format renders the sample of every body mode, as valid JSON.
func TestFormatsRenderSample(t *testing.T) {
	for _, f := range Formats() {
		o := FormatOptions{Format: f}
		if f == FormatTemplate {
			o.Template = `{{ json . }}`
		}
		for _, body := range []BodyMode{BodyNone, BodyText, BodyHTML, BodyBoth} {
			b, err := mustFormatter(t, o).Render(Sample(body))
			if err != nil || !json.Valid(b) {
				t.Errorf("%s, body %s: %v", f, body, err)
			}
		}
	}
}

// TestTemplateCheckEveryField: the start-up check renders the template over a sample whose every
// string from the message carries quotes, a backslash, a newline, "</script>" and U+2028, so a
// field put into JSON without the json function fails there. The sample used to have them in
// some fields only: "{{ .From.Address }}" passed, and a quoted local part then injected keys.
func TestTemplateCheckEveryField(t *testing.T) {
	for _, field := range []string{".Subject", ".MessageID", ".From.Name", ".From.Address", "(index .To 0).Address",
		"(index .To 0).Name", "(index .Cc 0).Address", "(index .ReplyTo 0).Address", ".Text", ".HTML",
		"(index .Attachments 0).Filename", "(index .Attachments 0).ContentType", `(index (index .Headers "list-id") 0)`,
		".Auth.DKIM", `{{ range $k, $v := .Headers }}{{ $k }}{{ end }}`} {
		expr := "{{ " + field + " }}"
		if strings.HasPrefix(field, "{{") {
			expr = field
		}
		_, err := NewFormatter(FormatOptions{Format: FormatTemplate, Body: BodyBoth, Template: `{"x": "` + expr + `"}`})
		if err == nil || !strings.Contains(err.Error(), "not valid JSON") {
			t.Errorf("%s unquoted: %v; want the start-up check to fail", field, err)
		}
		if _, err := NewFormatter(FormatOptions{Format: FormatTemplate, Body: BodyBoth,
			Template: `{"x": {{ json ` + strings.Trim(expr, "{} ") + ` }}}`}); err != nil && !strings.HasPrefix(field, "{{") {
			t.Errorf("%s with json: %v", field, err)
		}
	}
	// Every string from the message carries the hostile text; what mailhook writes does not.
	var walk func(path string, v reflect.Value)
	walk = func(path string, v reflect.Value) {
		switch v.Kind() {
		case reflect.String:
			if hostileNow := strings.Contains(v.String(), hostileText); hostileNow == isOurs(path) {
				t.Errorf("%s = %q", path, v.String())
			}
		case reflect.Pointer:
			if !v.IsNil() {
				walk(path, v.Elem())
			}
		case reflect.Struct:
			for i := range v.NumField() {
				if v.Type().Field(i).IsExported() {
					walk(path+"."+v.Type().Field(i).Name, v.Field(i))
				}
			}
		case reflect.Slice, reflect.Array:
			if v.Len() == 0 && v.Type().Elem().Kind() != reflect.Uint8 {
				t.Errorf("%s is empty in the sample", path)
			}
			for i := range v.Len() {
				walk(path+"[]", v.Index(i))
			}
		case reflect.Map:
			for _, k := range v.MapKeys() {
				walk(path+"{}", v.MapIndex(k))
			}
		}
	}
	walk("", reflect.ValueOf(Sample(BodyBoth)).Elem())
}

// isOurs reports whether a field path of the payload is written by mailhook, not the message.
func isOurs(path string) bool {
	for _, f := range []string{".ID", ".Rule", ".Account", ".Mailbox", ".Defects[]", ".ContentBase64"} {
		if strings.HasSuffix(path, f) {
			return true
		}
	}
	return false
}
