package payload

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"reflect"
	"strconv"
	"strings"
	"text/template"
	"time"
	"unicode"

	"github.com/mailhook/mailhook/message"
)

// This file renders a Payload as the request body a destination expects. The body is rendered once,
// when the message is committed, and stored in the job: every retry sends the same bytes, and the
// signature covers them whatever the format.

// Format says how a webhook's request body is rendered from the Payload.
type Format string

// Formats. The zero value means FormatJSON.
const (
	// FormatJSON is payload version 1 itself (Payload.Marshal).
	FormatJSON Format = "json"
	// FormatSlack is a Slack incoming-webhook message: a notification text and Block Kit blocks
	// (header, fields, the start of the text body, context).
	FormatSlack Format = "slack"
	// FormatDiscord is a Discord execute-webhook message with one embed, and allowed_mentions
	// parsing nothing, so mail can never ping @everyone, a role or a user.
	FormatDiscord Format = "discord"
	// FormatTeams is a Microsoft Teams message carrying one Adaptive Card, as the Workflows
	// ("When a Teams webhook request is received") trigger expects.
	FormatTeams Format = "teams"
	// FormatGitHub is a GitHub repository_dispatch request: {"event_type", "client_payload"}.
	FormatGitHub Format = "github"
	// FormatTemplate is the output of a Go text/template over the payload.
	FormatTemplate Format = "template"
)

// Formats returns every format, in documentation order.
func Formats() []Format {
	return []Format{FormatJSON, FormatSlack, FormatDiscord, FormatTeams, FormatGitHub, FormatTemplate}
}

// Limits of the rendered bodies. The services' own limits are larger; these leave room for the
// escaping and the JSON around the text, and keep a message readable.
const (
	// Slack (Block Kit): header text ≤ 150 characters, section text ≤ 3000, a field ≤ 2000, a
	// context element ≤ 2000; the message text is cut by Slack at 40,000.
	slackHeaderMax  = 150
	slackSectionMax = 2900
	slackFieldMax   = 500
	slackTextMax    = 500
	// Discord: content ≤ 2000 characters, embed title ≤ 256, description ≤ 4096, field value
	// ≤ 1024, footer ≤ 2048, and all of an embed's text together ≤ 6000.
	discordContentMax     = 300
	discordTitleMax       = 250
	discordDescriptionMax = 3500
	discordFieldMax       = 300
	// Teams: a message posted by a workflow is at most about 28 KB; the card's text is cut until
	// the whole body fits teamsMaxBytes.
	teamsTextMax  = 6000
	teamsMaxBytes = 24 << 10
	// GitHub: event_type ≤ 100 characters; client_payload ≤ 10 top-level properties.
	githubEventTypeMax = 100
	githubTextMaxBytes = 16 << 10
	// maxTemplateBytes bounds the output of a template.
	maxTemplateBytes = 8 << 20
)

// ContentTypeJSON is the Content-Type of every format but a template with its own content_type.
const ContentTypeJSON = "application/json"

// FormatOptions configure a Formatter.
type FormatOptions struct {
	// Format is the body format; "" means FormatJSON.
	Format Format
	// Template is the Go text/template source of FormatTemplate (required there, refused
	// elsewhere). It is executed with the payload as data: {{ .Subject }}, {{ .From.Address }},
	// {{ .Text }} (a string, "" when not shipped), {{ json . }} (the whole payload v1), and the
	// functions json, truncate, default, lower, upper, trim, replace, join and address.
	Template string
	// ContentType is the Content-Type of FormatTemplate bodies (default application/json). When it
	// is a JSON media type (application/json or any +json), the output must be valid JSON.
	ContentType string
	// EventType is the repository_dispatch event_type of FormatGitHub, at most 100 characters;
	// "" means the name of the rule that matched.
	EventType string
	// Body is the webhook's body mode: the template check at startup renders a sample message
	// with it, so a template reading a body the webhook does not ship still renders.
	Body BodyMode
	// Fields are the names the extract: of the rules sending to this webhook defines: the
	// sample carries each (a hostile string), so {{ .Fields.amount }} renders at startup and a
	// misspelt name fails there.
	Fields []string
}

// FormatError is a problem with one option of a format; Field is "format", "template",
// "content_type" or "event_type".
type FormatError struct {
	Field string
	Err   error
}

func (e *FormatError) Error() string { return e.Field + ": " + e.Err.Error() }
func (e *FormatError) Unwrap() error { return e.Err }

// Formatter renders payloads in one format. Create it with NewFormatter; it is safe for concurrent
// use.
type Formatter struct {
	format      Format
	tpl         *template.Template
	contentType string
	checkJSON   bool // the output must be valid JSON
	eventType   string
}

// NewFormatter checks o and returns its Formatter. A template is parsed and rendered once over a
// sample message (Sample), so a syntax error, a misspelt field or output that is not
// valid JSON fails here, at startup, rather than on the first message.
func NewFormatter(o FormatOptions) (*Formatter, error) {
	f := &Formatter{format: o.Format, contentType: ContentTypeJSON, checkJSON: true}
	if f.format == "" {
		f.format = FormatJSON
	}
	var errs []error
	fail := func(field, format string, args ...any) {
		errs = append(errs, &FormatError{Field: field, Err: fmt.Errorf(format, args...)})
	}
	known := false
	for _, k := range Formats() {
		known = known || f.format == k
	}
	if !known {
		fail("format", "%q is not one of json, slack, discord, teams, github, template", string(o.Format))
	}
	if o.Template != "" && f.format != FormatTemplate {
		fail("template", "applies only to format: template")
	}
	if o.ContentType != "" && f.format != FormatTemplate {
		fail("content_type", "applies only to format: template (the other formats are JSON)")
	}
	if o.EventType != "" && f.format != FormatGitHub {
		fail("event_type", "applies only to format: github")
	}
	if f.format == FormatGitHub && o.EventType != "" {
		switch {
		case utf16Len(o.EventType) > githubEventTypeMax:
			fail("event_type", "longer than %d characters", githubEventTypeMax)
		case strings.IndexFunc(o.EventType, unicode.IsControl) >= 0:
			fail("event_type", "holds a control character")
		}
		f.eventType = o.EventType
	}
	if f.format == FormatTemplate {
		if o.ContentType != "" {
			mt, _, err := mime.ParseMediaType(o.ContentType)
			if err != nil || strings.ContainsAny(o.ContentType, "\r\n\x00") {
				fail("content_type", "%q is not a media type", o.ContentType)
			} else {
				f.contentType = o.ContentType
				f.checkJSON = mt == ContentTypeJSON || strings.HasSuffix(mt, "+json")
			}
		}
		if strings.TrimSpace(o.Template) == "" {
			fail("template", "required with format: template")
		} else {
			tpl, err := template.New("template").Option("missingkey=error").Funcs(templateFuncs()).Parse(o.Template)
			if err != nil {
				fail("template", "%v", err)
			} else {
				f.tpl = tpl
			}
		}
	}
	if len(errs) == 0 && f.tpl != nil {
		// Once over plain mail and once over a bounce, complaint and invitation in one: a template
		// must cope with both (.Bounce is nil for most mail: {{with .Bounce}}…{{end}}).
		for _, sample := range []*Payload{Sample(o.Body), SampleReports(o.Body)} {
			if len(o.Fields) > 0 {
				sample.Fields = map[string]any{}
				for _, name := range o.Fields {
					sample.Fields[name] = "sample " + name + hostileText
				}
			}
			if _, err := f.Render(sample); err != nil {
				hint := ""
				if strings.Contains(err.Error(), "nil pointer") {
					hint = " (bounce, complaint and calendar are absent from most mail: write {{with .Bounce}}…{{end}})"
				}
				fail("template", "on a sample message: %v%s", errors.Unwrap(err), hint)
				break
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return f, nil
}

// Format returns the formatter's format.
func (f *Formatter) Format() Format { return f.format }

// ContentType returns the Content-Type of the rendered bodies.
func (f *Formatter) ContentType() string { return f.contentType }

// Header is a request header a format's destination expects.
type Header struct {
	Name  string
	Value string
}

// Headers returns the request headers the format's destination expects, to be sent unless the
// webhook configures the same header itself: GitHub's REST API asks for
// Accept: application/vnd.github+json. The token GitHub also needs is the user's to configure
// (headers: [{name: Authorization, value: "Bearer ${GH_TOKEN}"}]).
func (f *Formatter) Headers() []Header {
	if f.format == FormatGitHub {
		return []Header{{Name: "Accept", Value: "application/vnd.github+json"}}
	}
	return nil
}

// Render returns the request body for p. Only a template can fail: an execution error, output
// over 8 MiB, or output that is not valid JSON where JSON is required.
func (f *Formatter) Render(p *Payload) ([]byte, error) {
	switch f.format {
	case FormatSlack:
		return marshalBody(slackBody(p))
	case FormatDiscord:
		return marshalBody(discordBody(p))
	case FormatTeams:
		return teamsBody(p)
	case FormatGitHub:
		return marshalBody(githubBody(p, f.eventType))
	case FormatTemplate:
		return f.renderTemplate(p)
	default:
		return p.Marshal()
	}
}

func (f *Formatter) renderTemplate(p *Payload) ([]byte, error) {
	b := &limitedBuffer{max: maxTemplateBytes}
	if err := f.tpl.Execute(b, newTemplateData(p)); err != nil {
		if errors.Is(err, errBufferFull) {
			err = fmt.Errorf("output exceeds %d bytes", maxTemplateBytes)
		}
		return nil, fmt.Errorf("render template for %s: %w", p.ID, err)
	}
	out := b.Bytes()
	if f.checkJSON && !json.Valid(out) {
		var v any
		err := json.Unmarshal(out, &v) // says where
		return nil, fmt.Errorf("render template for %s: %w", p.ID, fmt.Errorf("output is not valid JSON (%v); quote values with the json function, or set content_type", err))
	}
	return out, nil
}

// marshalBody encodes v like Payload.Marshal: no HTML escaping, no trailing newline.
func marshalBody(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("marshal body: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// Sample returns the payload of a made-up message with the body mode's bodies, with every
// list non-empty and, in every string that comes from the message (whose sender chooses it),
// text that needs escaping: quotes, backslashes, a newline, "</script>", U+2028, non-ASCII.
// NewFormatter renders templates over it at startup, so a template that puts any such field
// into JSON without the json function fails there, not on the first hostile message.
func Sample(body BodyMode) *Payload {
	p := sample(body)
	p.Headers[`x-"hostile\`+"\n</script>\u2028"] = []string{"x"} // a header name from the message too
	makeHostile(reflect.ValueOf(p).Elem())
	return p
}

// SampleReports is Sample with a bounce, a complaint and an invitation, their strings hostile too.
func SampleReports(body BodyMode) *Payload {
	p := sample(body)
	p.Bounce = &message.Bounce{Kind: "hard", ReportingMTA: "mx.example.invalid",
		OriginalMessageID: "<sent-1@mailhook.invalid>", Recipients: []message.BounceRecipient{{
			Address: "gone@example.invalid", Action: "failed", Status: "5.1.1", Diagnostic: "550 5.1.1 user unknown"}}}
	p.Complaint = &message.Complaint{FeedbackType: "abuse", UserAgent: "SampleFBL/1.0",
		OriginalMailFrom: "bounces@example.invalid", OriginalRcptTo: "reader@example.invalid",
		ArrivalDate: "2026-01-02T03:04:05Z", ReportedDomain: "example.invalid", OriginalMessageID: "<sent-2@mailhook.invalid>"}
	p.Calendar = &message.Calendar{Method: "REQUEST", UID: "sample-event@mailhook.invalid", Summary: "Sample event",
		Location: "Room 1", Start: "2026-01-05T09:00:00Z", End: "2026-01-05T10:00:00Z",
		Organizer: message.Address{Name: "Organizer", Address: "organizer@example.invalid"},
		Attendees: []message.CalendarAttendee{{Name: "Recipient", Address: "to@example.invalid", Status: "needs-action", Role: "req-participant"}},
		Status:    "confirmed"}
	makeHostile(reflect.ValueOf(p).Elem())
	return p
}

// hostileText is appended to every string of the sample payload that comes from the message.
const hostileText = ` "q" 'q' \ </script>` + "\n\u2028 Grüße"

// ours are the payload's strings that mailhook or its configuration writes, never a message:
// the job id, the rule, account and mailbox names, the defects, attachment content (base64).
var ours = map[string]bool{"ID": true, "Rule": true, "Account": true, "Mailbox": true, "Defects": true, "ContentBase64": true}

// makeHostile appends hostileText to every string reachable from v (a struct, pointer, slice or map
// value), skipping the fields named in ours.
func makeHostile(v reflect.Value) {
	switch v.Kind() {
	case reflect.String:
		v.SetString(v.String() + hostileText)
	case reflect.Pointer:
		if !v.IsNil() {
			makeHostile(v.Elem())
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if f := v.Type().Field(i); f.IsExported() && !ours[f.Name] {
				makeHostile(v.Field(i))
			}
		}
	case reflect.Slice:
		for i := range v.Len() {
			makeHostile(v.Index(i))
		}
	case reflect.Map:
		for _, k := range v.MapKeys() {
			e := reflect.New(v.Type().Elem()).Elem()
			e.Set(v.MapIndex(k))
			if e.Kind() == reflect.Slice { // a copy, so the sample's own slices are not shared
				e.Set(reflect.AppendSlice(reflect.MakeSlice(e.Type(), 0, e.Len()), e))
			}
			makeHostile(e)
			v.SetMapIndex(k, e)
		}
	}
}

// sample is Sample before hostileText.
func sample(body BodyMode) *Payload {
	m := &message.Message{
		MessageID: `<sample-1@mailhook.invalid>`,
		Subject:   `Sample "subject" <b>&</b> \ Grüße`,
		From:      message.Address{Name: `Sample "Sender"`, Address: "sender@example.invalid"},
		Sender:    message.Address{Address: "sender@example.invalid"},
		To:        []message.Address{{Name: "Recipient", Address: "to@example.invalid"}},
		Cc:        []message.Address{{Address: "cc@example.invalid"}},
		ReplyTo:   []message.Address{{Address: "reply@example.invalid"}},
		Date:      time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Size:      4096,
		Headers: []message.Header{
			{Name: "Subject", Value: `Sample "subject" <b>&</b> \ Grüße`},
			{Name: "List-Id", Value: "<list.example.invalid>"},
		},
		Text:        "Line one with \"quotes\", <tags> & a \\ backslash.\nLine two: Grüße, 日本語, https://example.invalid/run?id=1.\n",
		HTML:        `<p>Line one with "quotes" &amp; a \ backslash.</p>`,
		TextFetched: true, HTMLFetched: true,
		Attachments: []message.Attachment{{Filename: `report "final".pdf`, ContentType: "application/pdf", Size: 1234}},
		ListID:      "<list.example.invalid>",
		Defects:     []string{"sample"},
	}
	return New("msg_SAMPLE0000000000000000000000", "sample-rule", "sample-account", "INBOX", 1, 1, m,
		message.Auth{SPF: "pass", DKIM: "pass", DMARC: "pass"}, body, 0)
}

// ---- template ----

// templateData is what a template executes on: the payload, with Text and HTML as plain strings
// ("" when the webhook does not ship them) instead of the payload's pointers. {{ json . }} and
// {{ json .Payload }} both give payload version 1.
type templateData struct {
	*Payload
	Text string
	HTML string
}

func newTemplateData(p *Payload) templateData {
	d := templateData{Payload: p}
	if p.Text != nil {
		d.Text = *p.Text
	}
	if p.HTML != nil {
		d.HTML = *p.HTML
	}
	return d
}

// MarshalJSON encodes the payload itself.
func (d templateData) MarshalJSON() ([]byte, error) { return d.Payload.Marshal() }

// templateFuncs are the functions a template may call besides text/template's builtins.
func templateFuncs() template.FuncMap {
	return template.FuncMap{
		// json encodes any value as JSON (a string with its quotes): "subject": {{ json .Subject }}.
		"json": func(v any) (string, error) {
			b, err := marshalBody(v)
			return string(b), err
		},
		// truncate cuts s to at most n characters, the last being "…" when it cut.
		"truncate": func(n int, s string) string { return truncateRunes(s, n) },
		// default returns def when v is empty ("", 0, false, nil, an empty list or map).
		"default": func(def, v any) any {
			if v == nil {
				return def
			}
			if rv := reflect.ValueOf(v); rv.IsZero() || ((rv.Kind() == reflect.Slice || rv.Kind() == reflect.Map) && rv.Len() == 0) {
				return def
			}
			return v
		},
		"lower":   strings.ToLower,
		"upper":   strings.ToUpper,
		"trim":    strings.TrimSpace,
		"replace": func(old, new, s string) string { return strings.ReplaceAll(s, old, new) },
		"join":    func(sep string, list []string) string { return strings.Join(list, sep) },
		// address formats an Address or a list of them: "Name <addr>, addr2".
		"address": func(v any) (string, error) {
			switch a := v.(type) {
			case Address:
				return formatAddress(a), nil
			case []Address:
				parts := make([]string, 0, len(a))
				for _, x := range a {
					parts = append(parts, formatAddress(x))
				}
				return strings.Join(parts, ", "), nil
			}
			return "", fmt.Errorf("address: want an address or a list of addresses, got %T", v)
		},
	}
}

// formatAddress writes a as "Name <address>", or the address alone when there is no name.
func formatAddress(a Address) string {
	switch {
	case a.Name == "":
		return a.Address
	case a.Address == "":
		return a.Name
	}
	return a.Name + " <" + a.Address + ">"
}

// ---- chat message text ----

// sender describes the payload's From for a chat message.
func sender(p *Payload) string {
	if s := formatAddress(p.From); s != "" {
		return s
	}
	return "(no sender)"
}

// subjectOr returns the subject, or "(no subject)".
func subjectOr(p *Payload) string {
	if s := oneLineText(p.Subject); s != "" {
		return s
	}
	return "(no subject)"
}

// dateText formats the Date header for people, or "" when there is none.
func dateText(p *Payload) string {
	if p.Date == nil {
		return ""
	}
	return p.Date.UTC().Format("2006-01-02 15:04 UTC")
}

// bodyText returns the text body to show in a chat message, or "" (not shipped, or blank): the
// reply without its quoted history when that is shorter, so a reply in a long thread shows what
// its sender wrote.
func bodyText(p *Payload) string {
	if p.Text == nil {
		return ""
	}
	if p.ReplyText != nil && strings.TrimSpace(*p.ReplyText) != "" && len(*p.ReplyText) < len(*p.Text) {
		return strings.TrimSpace(*p.ReplyText)
	}
	return strings.TrimSpace(*p.Text)
}

// reportLine sums up a bounce, a complaint or an invitation for the chat formats, as a label and
// one line: ("Bounce", "hard · jane@example.org · 5.1.1 · 550 5.1.1 user unknown"); "" when the
// message is none of them.
func reportLine(p *Payload) (label, value string) {
	join := func(parts ...string) string {
		var kept []string
		for _, s := range parts {
			if s = oneLineText(s); s != "" {
				kept = append(kept, s)
			}
		}
		return truncateRunes(strings.Join(kept, " · "), 500)
	}
	switch {
	case p.Bounce != nil:
		b := p.Bounce
		var r message.BounceRecipient
		more := ""
		if len(b.Recipients) > 0 {
			r = b.Recipients[0]
			for _, o := range b.Recipients { // the first that failed or was delayed
				if o.Action == "failed" || o.Action == "delayed" {
					r = o
					break
				}
			}
			if n := len(b.Recipients) - 1; n > 0 {
				more = "+" + strconv.Itoa(n) + " more"
			}
		}
		return "Bounce", join(b.Kind, r.Address, r.Status, r.Diagnostic, more)
	case p.Complaint != nil:
		c := p.Complaint
		return "Complaint", join(c.FeedbackType, c.ReportedDomain, c.OriginalRcptTo)
	case p.Calendar != nil:
		c := p.Calendar
		when := c.Start
		if c.End != "" {
			when += " – " + c.End
		}
		return "Event", join(c.Method, c.Summary, when, c.Location)
	}
	return "", ""
}

// attachmentsText lists the attachments by name: "2 attachments: a.pdf, b.png".
func attachmentsText(p *Payload) string {
	if len(p.Attachments) == 0 {
		return ""
	}
	names := make([]string, 0, len(p.Attachments))
	for _, a := range p.Attachments {
		n := oneLineText(a.Filename)
		if n == "" {
			n = "(" + a.ContentType + ")"
		}
		names = append(names, n)
	}
	word := "attachments"
	if len(names) == 1 {
		word = "attachment"
	}
	return strconv.Itoa(len(names)) + " " + word + ": " + strings.Join(names, ", ")
}

// ---- Slack ----

// slackBody is an incoming-webhook message. Every text from the message is escaped as Slack's
// formatting reference requires for text objects (& < > become entities; nothing else is
// special), so mail cannot inject a link, a mention (<!channel>) or a broadcast. Texts are cut to
// the Block Kit limits.
func slackBody(p *Payload) slackMessage {
	subject := subjectOr(p)
	m := slackMessage{
		Text: slackEscape("New mail from "+oneLineText(sender(p))+": "+subject, slackTextMax),
		Blocks: []slackBlock{{
			Type: "header",
			Text: &slackText{Type: "plain_text", Text: slackEscape(subject, slackHeaderMax), Emoji: new(false)},
		}},
	}
	fields := []slackText{
		{Type: "mrkdwn", Text: "*From*\n" + slackEscape(oneLineText(sender(p)), slackFieldMax)},
		{Type: "mrkdwn", Text: "*Rule*\n" + slackEscape(p.Rule, slackFieldMax)},
		{Type: "mrkdwn", Text: "*Mailbox*\n" + slackEscape(p.Account+" / "+p.Mailbox, slackFieldMax)},
	}
	if d := dateText(p); d != "" {
		fields = append(fields, slackText{Type: "mrkdwn", Text: "*Date*\n" + d})
	}
	if label, line := reportLine(p); line != "" {
		fields = append(fields, slackText{Type: "mrkdwn", Text: "*" + label + "*\n" + slackEscape(line, slackFieldMax)})
	}
	m.Blocks = append(m.Blocks, slackBlock{Type: "section", Fields: fields})
	if t := bodyText(p); t != "" {
		m.Blocks = append(m.Blocks, slackBlock{Type: "section",
			Text: &slackText{Type: "plain_text", Text: slackEscape(t, slackSectionMax), Emoji: new(false)}})
	}
	ctx := []slackText{{Type: "mrkdwn", Text: "mailhook · " + slackEscape(p.ID, slackFieldMax)}}
	if a := attachmentsText(p); a != "" {
		ctx = append(ctx, slackText{Type: "mrkdwn", Text: slackEscape(a, slackFieldMax)})
	}
	m.Blocks = append(m.Blocks, slackBlock{Type: "context", Elements: ctx})
	return m
}

type slackMessage struct {
	Text   string       `json:"text"`
	Blocks []slackBlock `json:"blocks"`
}

type slackBlock struct {
	Type     string      `json:"type"`
	Text     *slackText  `json:"text,omitempty"`
	Fields   []slackText `json:"fields,omitempty"`
	Elements []slackText `json:"elements,omitempty"`
}

type slackText struct {
	Type  string `json:"type"`
	Text  string `json:"text"`
	Emoji *bool  `json:"emoji,omitempty"`
}

// slackEscape escapes &, < and > (Slack's control characters) and cuts the result to max.
func slackEscape(s string, max int) string {
	return escapeCut(s, max, func(_, r rune, _ string) string {
		switch r {
		case '&':
			return "&amp;"
		case '<':
			return "&lt;"
		case '>':
			return "&gt;"
		}
		return string(r)
	})
}

// ---- Discord ----

// discordBody is an execute-webhook message with one embed. allowed_mentions parses nothing, so no
// text can ping anyone; markdown in the mail is escaped (except inside URLs, which stay
// clickable); every text is cut within Discord's limits, 6000 characters per embed in all.
func discordBody(p *Payload) discordMessage {
	subject := subjectOr(p)
	e := discordEmbed{
		Title:  discordEscape(subject, discordTitleMax),
		Footer: &discordFooter{Text: "mailhook · " + p.ID},
		Fields: []discordField{
			{Name: "From", Value: discordEscape(oneLineText(sender(p)), discordFieldMax), Inline: true},
			{Name: "Rule", Value: discordEscape(p.Rule, discordFieldMax), Inline: true},
			{Name: "Mailbox", Value: discordEscape(p.Account+" / "+p.Mailbox, discordFieldMax), Inline: true},
		},
	}
	if p.Date != nil {
		e.Timestamp = p.Date.UTC().Format(time.RFC3339)
	}
	if t := bodyText(p); t != "" {
		e.Description = discordEscape(t, discordDescriptionMax)
	}
	if label, line := reportLine(p); line != "" {
		e.Fields = append(e.Fields, discordField{Name: label, Value: discordEscape(line, discordFieldMax)})
	}
	if a := attachmentsText(p); a != "" {
		e.Fields = append(e.Fields, discordField{Name: "Attachments", Value: discordEscape(a, discordFieldMax)})
	}
	return discordMessage{
		Content:         discordEscape("New mail: "+subject, discordContentMax),
		Embeds:          []discordEmbed{e},
		AllowedMentions: discordMentions{Parse: []string{}},
	}
}

type discordMessage struct {
	Content         string          `json:"content"`
	Embeds          []discordEmbed  `json:"embeds"`
	AllowedMentions discordMentions `json:"allowed_mentions"`
}

// discordMentions with an empty Parse list allows no mention of any kind.
type discordMentions struct {
	Parse []string `json:"parse"`
}

type discordEmbed struct {
	Title       string         `json:"title"`
	Description string         `json:"description,omitempty"`
	Timestamp   string         `json:"timestamp,omitempty"`
	Fields      []discordField `json:"fields"`
	Footer      *discordFooter `json:"footer,omitempty"`
}

type discordField struct {
	Name   string `json:"name"`
	Value  string `json:"value"`
	Inline bool   `json:"inline,omitempty"`
}

type discordFooter struct {
	Text string `json:"text"`
}

// discordEscape backslash-escapes Discord markdown in s and cuts the result to max. Discord hides a
// backslash before any punctuation, so escaping is invisible. Inside a word starting with http://
// or https:// nothing is escaped, so links keep working. Escaped everywhere else: * _ ~ ` | (bold,
// italics, strike, code, spoilers), [ ] ( ) (masked links), < (mentions, channels, timestamps), @
// (@everyone, @here, even though allowed_mentions would not ping) and \; at the start of a line
// also > # - (quotes, headings, lists).
func discordEscape(s string, max int) string {
	inURL := false
	return escapeCut(s, max, func(prev, r rune, rest string) string {
		if !inURL && !unicode.IsLetter(prev) && !unicode.IsDigit(prev) && r == 'h' &&
			(strings.HasPrefix(rest, "ttps://") || strings.HasPrefix(rest, "ttp://")) {
			inURL = true
		}
		if unicode.IsSpace(r) {
			inURL = false
			return string(r)
		}
		if inURL {
			if r == '<' { // a URL ends here for Discord; keep it from opening a mention
				inURL = false
				return `\<`
			}
			return string(r)
		}
		switch r {
		case '\\', '*', '_', '~', '`', '|', '[', ']', '(', ')', '<', '@':
			return `\` + string(r)
		case '>', '#', '-':
			if prev == '\n' {
				return `\` + string(r)
			}
		}
		return string(r)
	})
}

// ---- Teams ----

// teamsBody is a message with one Adaptive Card (version 1.4). Every text from the mail is a
// TextRun of a RichTextBlock, which Teams does not parse as markdown, so nothing needs escaping
// and nothing can be injected. The text body is cut until the whole body is within
// teamsMaxBytes (a Teams message is at most about 28 KB).
func teamsBody(p *Payload) ([]byte, error) {
	for limit := teamsTextMax; ; limit /= 2 {
		b, err := marshalBody(teamsMessage(p, limit))
		if err != nil || len(b) <= teamsMaxBytes || limit == 0 {
			return b, err
		}
	}
}

func teamsMessage(p *Payload, textMax int) teamsEnvelope {
	line := func(label, value string) teamsElement {
		return teamsElement{Type: "RichTextBlock", Inlines: []teamsRun{
			{Type: "TextRun", Text: label + ": ", Weight: "Bolder"},
			{Type: "TextRun", Text: truncateRunes(oneLineText(value), 500)},
		}}
	}
	body := []teamsElement{
		{Type: "RichTextBlock", Inlines: []teamsRun{
			{Type: "TextRun", Text: truncateRunes(subjectOr(p), 500), Weight: "Bolder", Size: "Medium"},
		}},
		line("From", sender(p)),
		line("Rule", p.Rule),
		line("Mailbox", p.Account+" / "+p.Mailbox),
	}
	if d := dateText(p); d != "" {
		body = append(body, line("Date", d))
	}
	if label, l := reportLine(p); l != "" {
		body = append(body, line(label, l))
	}
	if a := attachmentsText(p); a != "" {
		body = append(body, line("Attachments", a))
	}
	if t := bodyText(p); t != "" && textMax > 0 {
		body = append(body, teamsElement{Type: "RichTextBlock", Separator: true,
			Inlines: []teamsRun{{Type: "TextRun", Text: truncateRunes(t, textMax)}}})
	}
	body = append(body, teamsElement{Type: "RichTextBlock",
		Inlines: []teamsRun{{Type: "TextRun", Text: "mailhook · " + p.ID, IsSubtle: true, Size: "Small"}}})
	return teamsEnvelope{
		Type: "message",
		Attachments: []teamsAttachment{{
			ContentType: "application/vnd.microsoft.card.adaptive",
			Content: teamsCard{
				Schema:  "http://adaptivecards.io/schemas/adaptive-card.json",
				Type:    "AdaptiveCard",
				Version: "1.4",
				Body:    body,
				MSTeams: map[string]string{"width": "Full"},
			},
		}},
	}
}

type teamsEnvelope struct {
	Type        string            `json:"type"`
	Attachments []teamsAttachment `json:"attachments"`
}

type teamsAttachment struct {
	ContentType string    `json:"contentType"`
	ContentURL  *string   `json:"contentUrl"` // null, as the Workflows sample sends it
	Content     teamsCard `json:"content"`
}

type teamsCard struct {
	Schema  string            `json:"$schema"`
	Type    string            `json:"type"`
	Version string            `json:"version"`
	Body    []teamsElement    `json:"body"`
	MSTeams map[string]string `json:"msteams"`
}

type teamsElement struct {
	Type      string     `json:"type"`
	Separator bool       `json:"separator,omitempty"`
	Inlines   []teamsRun `json:"inlines"`
}

type teamsRun struct {
	Type     string `json:"type"`
	Text     string `json:"text"`
	Weight   string `json:"weight,omitempty"`
	Size     string `json:"size,omitempty"`
	IsSubtle bool   `json:"isSubtle,omitempty"`
}

// ---- GitHub ----

// githubBody is a repository_dispatch request (POST /repos/{owner}/{repo}/dispatches). GitHub
// allows at most 10 top-level properties in client_payload, so it carries the fields a workflow
// needs most; the text body is cut at 16 KiB and attachments are listed without content.
func githubBody(p *Payload, eventType string) githubDispatch {
	if eventType == "" {
		eventType = truncateRunes(p.Rule, githubEventTypeMax)
	}
	cp := githubClientPayload{
		ID: p.ID, Rule: p.Rule, Account: p.Account, Mailbox: p.Mailbox, MessageID: p.MessageID,
		Date: p.Date, From: p.From, Subject: p.Subject,
		Attachments: make([]githubAttachment, 0, len(p.Attachments)),
	}
	if p.Text != nil {
		cp.Text, _ = capUTF8(*p.Text, githubTextMaxBytes)
	}
	for _, a := range p.Attachments {
		cp.Attachments = append(cp.Attachments, githubAttachment{Filename: a.Filename, ContentType: a.ContentType, Size: a.Size})
	}
	return githubDispatch{EventType: eventType, ClientPayload: cp}
}

type githubDispatch struct {
	EventType     string              `json:"event_type"`
	ClientPayload githubClientPayload `json:"client_payload"`
}

// githubClientPayload has exactly 10 properties, GitHub's limit.
type githubClientPayload struct {
	ID          string             `json:"id"`
	Rule        string             `json:"rule"`
	Account     string             `json:"account"`
	Mailbox     string             `json:"mailbox"`
	MessageID   string             `json:"message_id"`
	Date        *time.Time         `json:"date"`
	From        Address            `json:"from"`
	Subject     string             `json:"subject"`
	Text        string             `json:"text"`
	Attachments []githubAttachment `json:"attachments"`
}

type githubAttachment struct {
	Filename    string `json:"filename"`
	ContentType string `json:"content_type"`
	Size        int64  `json:"size"`
}
