package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/mailhook/mailhook/message"
	"github.com/mailhook/mailhook/rules"
	"github.com/mailhook/mailhook/watcher"
)

// Explanation is what the pipeline does with one message, as `mailhook test` reports it: the
// parsed message under the names expressions use, every rule's verdict with its clauses, and the
// jobs that would be queued with their bodies. Its JSON form is `mailhook test --json`'s line.
type Explanation struct {
	File       string              `json:"file"`
	Account    string              `json:"account,omitempty"`
	Mailbox    string              `json:"mailbox,omitempty"`
	UIDValid   uint32              `json:"uidvalidity,omitempty"`
	UID        uint32              `json:"uid,omitempty"`
	Message    *ExplainedMessage   `json:"message,omitempty"`
	Rules      []ExplainedRule     `json:"rules"`
	Deliveries []ExplainedDelivery `json:"deliveries"`
	Error      string              `json:"error,omitempty"`

	// untrusted: the account believes no Authentication-Results header, so auth.* is empty.
	untrusted bool
}

// ExplainedMessage is the parsed message, under the names expressions use.
type ExplainedMessage struct {
	MessageID   string               `json:"message_id"`
	Subject     string               `json:"subject"`
	From        message.Address      `json:"from"`
	Sender      message.Address      `json:"sender"`
	To          []message.Address    `json:"to"`
	Cc          []message.Address    `json:"cc"`
	ReplyTo     []message.Address    `json:"reply_to"`
	Date        *time.Time           `json:"date"`
	Size        int64                `json:"size"`
	Flags       []string             `json:"flags"`
	Text        string               `json:"text"`
	HTML        string               `json:"html"`
	ReplyText   string               `json:"reply_text"`
	URLs        []string             `json:"urls"`
	Attachments []message.Attachment `json:"attachments"`
	Automated   bool                 `json:"automated"`
	ListID      string               `json:"list_id"`
	Bounce      *message.Bounce      `json:"bounce"`
	Complaint   *message.Complaint   `json:"complaint"`
	Calendar    *message.Calendar    `json:"calendar"`
	Defects     []string             `json:"defects"`
	Auth        message.Auth         `json:"auth"`
	Truncated   bool                 `json:"truncated"`
	Headers     []ExplainedHeader    `json:"headers"`
}

// ExplainedHeader is one header field as the message carries it.
type ExplainedHeader struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// ExplainedRule is one rule's verdict on the message.
type ExplainedRule struct {
	Name        string            `json:"name"`
	Matched     bool              `json:"matched"`
	Fires       bool              `json:"fires"`                // matched and not cut off by an earlier stop: true
	Skipped     string            `json:"skipped,omitempty"`    // "account filter" | "mailbox filter"
	StoppedBy   string            `json:"stopped_by,omitempty"` // the earlier rule with stop: true
	FalseClause string            `json:"false_clause,omitempty"`
	Clauses     []ExplainedClause `json:"clauses,omitempty"`
	Error       string            `json:"error,omitempty"`
	Actions     []string          `json:"actions,omitempty"` // of a firing rule, as written in YAML
	// Fields are a firing rule's extracted fields as its payloads carry them; FieldErrors says
	// why a field is null (its defect is extract_failed:NAME).
	Fields      map[string]any    `json:"fields,omitempty"`
	FieldErrors map[string]string `json:"field_errors,omitempty"`
}

// ExplainedClause is the value of one top-level clause of a rule's expression.
type ExplainedClause struct {
	Source string `json:"source"`
	Value  bool   `json:"value"`
	Error  string `json:"error,omitempty"`
}

// ExplainedDelivery is one job the message would queue.
type ExplainedDelivery struct {
	ID        string   `json:"id"`
	Kind      string   `json:"kind"`
	Target    string   `json:"target"`
	Rule      string   `json:"rule"`
	DependsOn []string `json:"depends_on,omitempty"`
	// Body is the request body exactly as it would be sent (a JSON value for webhooks).
	Body json.RawMessage `json:"body,omitempty"`
	// BodyText is a body that is not JSON (a reply's message), as text.
	BodyText string `json:"body_text,omitempty"`
}

// Explain reports what the pipeline does with ev: every rule's explanation and the jobs made by
// the pipeline's own match m of ev (what Match returned, attachments spooled as the watcher
// would), so the bodies are the very bytes the daemon would send. name says where the message
// came from (a file name, or account/mailbox/uid).
func (p *Pipeline) Explain(ctx context.Context, name string, ev *watcher.Event, m watcher.Matched) (*Explanation, error) {
	trusted := ""
	if a := p.accounts[ev.Account]; a != nil {
		trusted = a.TrustedAuthservID
	}
	env := rules.NewEnv(ev.Account, ev.Mailbox, ev.UID, ev.Message, trusted)
	env.Understand() // shown whether or not a rule reads them
	e := &Explanation{File: name, Account: ev.Account, Mailbox: ev.Mailbox, UIDValid: ev.UIDValidity, UID: ev.UID,
		Message: explainMessage(ev.Message, env), Rules: []ExplainedRule{}, Deliveries: []ExplainedDelivery{},
		untrusted: trusted == ""}
	for _, x := range p.rules.Explain(env) {
		r := explainRule(x)
		if x.Fires {
			var errs []*rules.ExtractError
			r.Fields, errs = p.rules.Extract(x.Rule, env)
			for _, err := range errs {
				if r.FieldErrors == nil {
					r.FieldErrors = map[string]string{}
				}
				r.FieldErrors[err.Field] = err.Err.Error()
			}
		}
		e.Rules = append(e.Rules, r)
	}
	jobs, err := m.Jobs(ctx, ev)
	if err != nil {
		return nil, err
	}
	for _, j := range jobs {
		d := ExplainedDelivery{ID: j.ID, Kind: j.Kind, Target: j.Target, Rule: j.Rule, DependsOn: j.DependsOn}
		if json.Valid(j.Body) {
			d.Body = j.Body
		} else if len(j.Body) > 0 {
			d.BodyText = strings.ToValidUTF8(string(j.Body), "\uFFFD")
		}
		e.Deliveries = append(e.Deliveries, d)
	}
	return e, nil
}

// Unreadable is the explanation of a message that could not be read.
func Unreadable(name string, err error) *Explanation {
	return &Explanation{File: name, Rules: []ExplainedRule{}, Deliveries: []ExplainedDelivery{}, Error: err.Error()}
}

func explainRule(x rules.Explanation) ExplainedRule {
	r := ExplainedRule{Name: x.Rule.Name, Matched: x.Matched, Fires: x.Fires, Skipped: x.Skipped,
		StoppedBy: x.StoppedBy, FalseClause: x.FalseClause}
	if x.Err != nil {
		r.Error = x.Err.Error()
	}
	for _, c := range x.Clauses {
		ec := ExplainedClause{Source: c.Source, Value: c.Value}
		if c.Err != nil {
			ec.Error = c.Err.Error()
		}
		r.Clauses = append(r.Clauses, ec)
	}
	if x.Fires {
		for _, a := range x.Rule.Actions {
			r.Actions = append(r.Actions, describeAction(a))
		}
	}
	return r
}

func explainMessage(m *message.Message, env *rules.Env) *ExplainedMessage {
	auth := env.Auth
	em := &ExplainedMessage{ReplyText: env.ReplyText, URLs: orEmpty(env.URLs),
		MessageID: m.MessageID, Subject: m.Subject, From: m.From, Sender: m.Sender, To: orEmpty(m.To),
		Cc: orEmpty(m.Cc), ReplyTo: orEmpty(m.ReplyTo), Size: m.Size, Flags: orEmpty(m.Flags), Text: m.Text,
		HTML: m.HTML, Attachments: orEmpty(m.Attachments), Automated: m.Automated, ListID: m.ListID,
		Bounce: m.Bounce, Complaint: m.Complaint, Calendar: m.Calendar,
		Defects: orEmpty(m.Defects), Auth: auth, Truncated: m.Truncated, Headers: []ExplainedHeader{},
	}
	if !m.Date.IsZero() {
		em.Date = &m.Date
	}
	for _, h := range m.Headers {
		em.Headers = append(em.Headers, ExplainedHeader(h))
	}
	return em
}

// writeReports writes the bounce, complaint and calendar lines of `mailhook test`'s report.
func writeReports(b *bytes.Buffer, m *ExplainedMessage) {
	if x := m.Bounce; x != nil {
		fmt.Fprintf(b, "   bounce %s, reporting_mta %s, original_message_id %s\n", x.Kind, orNone(x.ReportingMTA), orNone(x.OriginalMessageID))
		for i, r := range x.Recipients {
			if i == 10 {
				fmt.Fprintf(b, "     … %d more recipients\n", len(x.Recipients)-i)
				break
			}
			fmt.Fprintf(b, "     %s %s %s %q\n", r.Address, r.Action, orNone(r.Status), r.Diagnostic)
		}
	}
	if x := m.Complaint; x != nil {
		fmt.Fprintf(b, "   complaint %s about %s, original_rcpt_to %s, original_mail_from %s, arrival_date %s, user_agent %q, original_message_id %s\n",
			x.FeedbackType, orNone(x.ReportedDomain), orNone(x.OriginalRcptTo), orNone(x.OriginalMailFrom),
			orNone(x.ArrivalDate), x.UserAgent, orNone(x.OriginalMessageID))
	}
	if x := m.Calendar; x != nil {
		fmt.Fprintf(b, "   calendar %s %q, start %s, end %s, all_day %v, location %q, status %s, organizer %s, %d attendees",
			orNone(x.Method), x.Summary, orNone(x.Start), orNone(x.End), x.AllDay, x.Location, orNone(x.Status),
			formatAddress(x.Organizer), len(x.Attendees))
		if x.RRule != "" {
			fmt.Fprintf(b, ", rrule %s", x.RRule)
		}
		b.WriteString("\n")
	}
}

// describeAction renders an action as it is written in YAML.
func describeAction(a rules.Action) string {
	switch {
	case a.Webhook != "":
		return "webhook: " + a.Webhook
	case a.Reply != "":
		return "reply: " + a.Reply
	case a.MarkSeen:
		return "mark_seen: true"
	case len(a.Flag) > 0:
		return "flag: [" + strings.Join(a.Flag, ", ") + "]"
	case a.Move != "":
		return "move: " + a.Move
	case a.Copy != "":
		return "copy: " + a.Copy
	}
	return "(empty action)"
}

// WriteJSON writes e as one line of JSON. HTML escaping is off, so a webhook body (a RawMessage)
// is printed byte for byte as it would be sent.
func (e *Explanation) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(e)
}

// WriteText writes the human-readable report of one message; webhook bodies are indented (the
// JSON form keeps their exact bytes).
func (e *Explanation) WriteText(w io.Writer) error {
	var b bytes.Buffer
	m := e.Message
	fmt.Fprintf(&b, "== %s (as %s/%s)\n", e.File, e.Account, e.Mailbox)
	fmt.Fprintf(&b, "   from %s, subject %q", formatAddress(m.From), m.Subject)
	if m.Date != nil {
		fmt.Fprintf(&b, ", date %s", m.Date.Format(time.RFC3339))
	}
	fmt.Fprintf(&b, ", %d bytes, %d attachments\n", m.Size, len(m.Attachments))
	fmt.Fprintf(&b, "   auth spf=%s dkim=%s dmarc=%s", orNone(m.Auth.SPF), orNone(m.Auth.DKIM), orNone(m.Auth.DMARC))
	if e.untrusted {
		fmt.Fprintf(&b, " (account %q has no trusted_authserv_id: no Authentication-Results header is believed, so auth.* is never \"pass\")", e.Account)
	}
	if len(m.Defects) > 0 {
		fmt.Fprintf(&b, ", defects %s", strings.Join(m.Defects, " "))
	}
	b.WriteString("\n")
	if m.ReplyText != m.Text && m.ReplyText != "" {
		fmt.Fprintf(&b, "   reply_text (quoted history and signature cut): %q\n", m.ReplyText)
	}
	if len(m.URLs) > 0 {
		fmt.Fprintf(&b, "   urls %s\n", strings.Join(m.URLs, " "))
	}
	writeReports(&b, m)
	for _, r := range e.Rules {
		b.WriteString(r.verdict())
	}
	if len(e.Deliveries) == 0 {
		b.WriteString("   nothing would be sent\n")
	}
	for _, d := range e.Deliveries {
		fmt.Fprintf(&b, "   %s %q (rule %q), id %s", d.Kind, d.Target, d.Rule, d.ID)
		if len(d.DependsOn) > 0 {
			fmt.Fprintf(&b, ", after %s", strings.Join(d.DependsOn, " "))
		}
		b.WriteString(", body:\n")
		if d.Body == nil {
			b.WriteString(d.BodyText + "\n")
			continue
		}
		b.WriteString("     ")
		if err := json.Indent(&b, d.Body, "     ", "  "); err != nil {
			b.Write(d.Body)
		}
		b.WriteString("\n")
	}
	_, err := w.Write(b.Bytes())
	return err
}

// verdict is the rule's line in the text report.
func (r ExplainedRule) verdict() string {
	switch {
	case r.Skipped != "":
		return fmt.Sprintf("   rule %q: skipped (%s)\n", r.Name, r.Skipped)
	case r.Error != "":
		line, _, _ := strings.Cut(r.Error, "\n")
		return fmt.Sprintf("   rule %q: no match: evaluation failed: %s\n", r.Name, line)
	case r.Fires:
		line := fmt.Sprintf("   rule %q: MATCH → %s\n", r.Name, strings.Join(r.Actions, ", "))
		for _, name := range slices.Sorted(maps.Keys(r.Fields)) {
			v, _ := json.Marshal(r.Fields[name])
			if why, failed := r.FieldErrors[name]; failed {
				line += fmt.Sprintf("     field %s = null (extract_failed: %s)\n", name, why)
			} else {
				line += fmt.Sprintf("     field %s = %s\n", name, v)
			}
		}
		return line
	case r.Matched:
		return fmt.Sprintf("   rule %q: matched, but not run: rule %q before it has stop: true\n", r.Name, r.StoppedBy)
	}
	return fmt.Sprintf("   rule %q: no match: false: %s\n", r.Name, r.FalseClause)
}

// orEmpty makes a nil list an empty one, so JSON says [] rather than null.
func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func formatAddress(a message.Address) string {
	switch {
	case a.Address == "" && a.Name == "":
		return "(nobody)"
	case a.Name == "":
		return "<" + a.Address + ">"
	}
	return fmt.Sprintf("%q <%s>", a.Name, a.Address)
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
