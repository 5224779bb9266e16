package pipeline_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailhook/mailhook/internal/demo"
	"github.com/mailhook/mailhook/message"
	"github.com/mailhook/mailhook/payload"
	"github.com/mailhook/mailhook/pipeline"
	"github.com/mailhook/mailhook/reply"
	"github.com/mailhook/mailhook/rules"
	"github.com/mailhook/mailhook/store"
	"github.com/mailhook/mailhook/watcher"
)

// compile compiles the rules of a test, each firing on every message.
func compile(t *testing.T, specs ...rules.Spec) *rules.Set {
	t.Helper()
	for i := range specs {
		if specs[i].When == "" {
			specs[i].When = "true"
		}
	}
	set, err := rules.Compile(specs)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

func newPipeline(t *testing.T, cfg pipeline.Config) *pipeline.Pipeline {
	t.Helper()
	p, err := pipeline.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func parse(t *testing.T, raw []byte) *message.Message {
	t.Helper()
	m, err := message.Parse(bytes.NewReader(raw), message.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// The pipeline's jobs for one message: webhook, reply (when the guards pass) and post-actions
// that wait for both; a guarded reply yields no job and the post-actions wait for the webhook
// alone; our own reply yields nothing at all, so two mailhooks cannot answer each other forever.
func TestReplyAndPostActionJobs(t *testing.T) {
	tpl, err := reply.ParseTemplate("ack", "Re: {{ .Subject }}", "ok", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	var skips []string
	cfg := pipeline.Config{
		Rules: compile(t, rules.Spec{Name: "r", Actions: []rules.Action{
			{Flag: []string{`\Flagged`}}, {Webhook: "hook"}, {Reply: "ack"}, {Move: "Done"}}}),
		Webhooks: []pipeline.Webhook{{Name: "hook", Body: payload.BodyText, Attachments: pipeline.AttachmentsMetadata}},
		Replies:  []pipeline.Reply{{Name: "ack", Template: tpl, OncePer: 168 * time.Hour}},
		Accounts: []pipeline.Account{{Name: "a", Username: "me@us.test", From: "help@us.test"}},
		OnSkip:   func(_, _, reason string) { skips = append(skips, reason) },
	}
	p := newPipeline(t, cfg)
	handle := func(raw string) []store.Job {
		t.Helper()
		jobs, err := p.Handle(context.Background(), &watcher.Event{Account: "a", Mailbox: "INBOX", UIDValidity: 9, UID: 5,
			Message: parse(t, []byte(raw))})
		if err != nil {
			t.Fatal(err)
		}
		return jobs
	}
	id := func(i int) string { return store.JobID("a", "INBOX", 9, 5, "r", i) }
	base := "Return-Path: <x@example.com>\r\nFrom: x@example.com\r\nTo: help@us.test\r\nSubject: s\r\nMessage-ID: <1@x>\r\n"

	jobs := handle(base + "\r\nhi\r\n")
	kinds := func(jobs []store.Job) (out []string) {
		for _, j := range jobs {
			out = append(out, j.Kind+" "+j.Target+" deps="+strings.Join(j.DependsOn, ","))
		}
		return out
	}
	want := []string{
		"webhook hook deps=",
		"reply ack deps=",
		`post_action flag:\Flagged deps=` + id(1) + "," + id(2),
		"post_action move:Done deps=" + id(1) + "," + id(2) + "," + id(0),
	}
	if got := kinds(jobs); !slices.Equal(got, want) {
		t.Errorf("jobs:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	jobs = handle(base + "Auto-Submitted: auto-replied\r\n\r\nhi\r\n")
	want = []string{"webhook hook deps=", `post_action flag:\Flagged deps=` + id(1), "post_action move:Done deps=" + id(1) + "," + id(0)}
	if got := kinds(jobs); !slices.Equal(got, want) {
		t.Errorf("with a guarded reply, jobs:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Our loop marker alone can be copied by anyone who received one of our replies: no reply,
	// but the webhook and the post-actions go out.
	noReply := []string{"webhook hook deps=", `post_action flag:\Flagged deps=` + id(1), "post_action move:Done deps=" + id(1) + "," + id(0)}
	if got := kinds(handle(base + reply.LoopHeader + ": help@us.test\r\n\r\nhi\r\n")); !slices.Equal(got, noReply) {
		t.Errorf("a message with our loop marker: jobs %v, want %v", got, noReply)
	}
	// A Message-ID we recorded as one of our replies (without the marker) is the same weak sign;
	// a sender already in the ledger gets no second reply job.
	cfg.Ledger = fakeLedger{own: "<ours@us.test>", replied: "y@example.com"}
	p = newPipeline(t, cfg)
	if got := kinds(handle(strings.Replace(base, "<1@x>", "<ours@us.test>", 1) + "\r\nhi\r\n")); !slices.Equal(got, noReply) {
		t.Errorf("a message with our recorded Message-ID: jobs %v, want %v", got, noReply)
	}
	jobs = handle(strings.Replace(base, "x@example.com>", "y@example.com>", 1) + "\r\nhi\r\n")
	if got := kinds(jobs); len(got) != 3 || slices.ContainsFunc(jobs, func(j store.Job) bool { return j.Kind == store.KindReply }) {
		t.Errorf("a sender in the ledger got jobs %v", got)
	}
	want = []string{reply.SkipAutoSubmitted, reply.SkipOwnMessage, reply.SkipOwnMessage, "already_replied"}
	if !slices.Equal(skips, want) {
		t.Errorf("skips counted %v, want %v", skips, want)
	}

	// With the installation key, our replies are signed, and a signed one triggers nothing at all;
	// the same signature copied to a message to someone else, or under another subject, does not
	// make it ours.
	cfg.OwnKey = []byte("0123456789abcdef0123456789abcdef")
	p = newPipeline(t, cfg)
	jobs = handle(base + "\r\nhi\r\n")
	var sent reply.Job
	for _, j := range jobs {
		if j.Kind == store.KindReply {
			if err := json.Unmarshal(j.Body, &sent); err != nil {
				t.Fatal(err)
			}
		}
	}
	if sent.Signature == "" || sent.Signature != reply.Sign(cfg.OwnKey, sent.MessageID, sent.To, sent.Subject) {
		t.Fatalf("reply job %+v is not signed", sent)
	}
	composed, err := sent.Compose(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if got := handle(string(composed)); len(got) != 0 {
		t.Errorf("our signed reply, back in a watched mailbox, produced jobs %v", kinds(got))
	}
	forged := strings.Replace(string(composed), "To: <x@example.com>", "To: <victim@example.com>", 1)
	if forged == string(composed) {
		t.Fatalf("no To header to change in\n%s", composed)
	}
	if got := kinds(handle(forged)); len(got) == 0 || got[0] != "webhook hook deps=" {
		t.Errorf("a copied signature on a message to someone else was taken for ours: jobs %v", got)
	}
}

// fakeLedger answers the pipeline's ledger questions.
type fakeLedger struct{ own, replied string }

var _ pipeline.Ledger = fakeLedger{}

func (f fakeLedger) OwnReply(_ context.Context, id string) (bool, error) { return id == f.own, nil }

func (f fakeLedger) Replied(_ context.Context, k store.ReplyKey, _ time.Time) (bool, error) {
	return strings.EqualFold(k.Sender, f.replied), nil
}

// fakeEndpoints says which endpoints are disabled, and why.
type fakeEndpoints map[string]string

var _ pipeline.EndpointStates = fakeEndpoints{}

func (f fakeEndpoints) Endpoint(_ context.Context, name string) (store.EndpointState, error) {
	s := store.EndpointState{Name: name}
	if reason, ok := f[name]; ok {
		s.DisabledAt, s.Reason = time.Now(), reason
	}
	return s, nil
}

// formatter builds the formatter of a webhook's format options.
func formatter(t *testing.T, o payload.FormatOptions) *payload.Formatter {
	t.Helper()
	f, err := payload.NewFormatter(o)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// The pipeline renders each webhook's body in its format once, commits the job of a disabled
// endpoint held, and commits a job whose template fails on this message dead with the reason,
// rather than failing the commit (which would stall the mailbox).
func TestRendersFormats(t *testing.T) {
	webhooks := []pipeline.Webhook{
		{Name: "hook", Body: payload.BodyText, Formatter: formatter(t, payload.FormatOptions{Format: payload.FormatSlack, Body: payload.BodyText})},
		{Name: "picky", Body: payload.BodyText, Formatter: formatter(t, payload.FormatOptions{Format: payload.FormatTemplate, Body: payload.BodyText,
			Template: `{"n": {{ if eq .Rule "sample-rule" }}1{{ else }}{{ .Subject }}{{ end }}}`})},
		{Name: "off", Body: payload.BodyText, Formatter: formatter(t, payload.FormatOptions{Format: payload.FormatJSON, Body: payload.BodyText})},
	}
	var logs bytes.Buffer
	p := newPipeline(t, pipeline.Config{
		Rules:    compile(t, rules.Spec{Name: "all", Actions: []rules.Action{{Webhook: "hook"}, {Webhook: "picky"}, {Webhook: "off"}}}),
		Webhooks: webhooks, Accounts: []pipeline.Account{{Name: "work", Username: "me@example.com"}},
		Logger:    slog.New(slog.NewTextHandler(&logs, nil)),
		Endpoints: fakeEndpoints{"off": "http 410 Gone"},
	})
	jobs, err := p.Handle(context.Background(), sampleEvent(t, "work"))
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 3 {
		t.Fatalf("%d jobs, want 3", len(jobs))
	}
	var slack map[string]any
	if err := json.Unmarshal(jobs[0].Body, &slack); err != nil || slack["blocks"] == nil || jobs[0].State != "" {
		t.Errorf("slack job: state %q, body %s (%v)", jobs[0].State, jobs[0].Body, err)
	}
	if jobs[1].State != store.StateDead || !strings.Contains(jobs[1].LastError, "render: ") || jobs[1].Body != nil {
		t.Errorf("picky job: state %q, last error %q", jobs[1].State, jobs[1].LastError)
	}
	if !strings.Contains(logs.String(), "webhook body cannot be rendered") {
		t.Errorf("render failure not logged:\n%s", logs.String())
	}
	if jobs[2].State != store.StateHeld || jobs[2].LastError != "endpoint disabled: http 410 Gone" || len(jobs[2].Body) == 0 {
		t.Errorf("off job: state %q, last error %q", jobs[2].State, jobs[2].LastError)
	}
}

// sampleEvent is a CI-failure mail of account, as the watcher hands it to the pipeline.
func sampleEvent(t *testing.T, account string) *watcher.Event {
	t.Helper()
	return &watcher.Event{Account: account, Mailbox: "INBOX", UIDValidity: 9, UID: 5,
		Message: parse(t, demo.Sample(1, demo.SampleOptions{Kind: demo.CIFailure}))}
}

// fakeSpool records what the pipeline attaches to each job.
type fakeSpool map[string]map[string]string

var _ pipeline.Spool = fakeSpool{}

func (f fakeSpool) Attach(_ context.Context, id string, files map[string]string) error {
	f[id] = files
	return nil
}

// One match decides both what the watcher fetches and what the payload ships: Inline lists the
// attachments the matched rules' inline webhooks choose within max_inline_bytes (none for a rule
// that did not match, none for a metadata webhook); Jobs links the spooled ones into the job and
// marks the payload truncated when a chosen one was not fetched. Plan asks for attachment
// content only in mailboxes where such a webhook applies.
func TestInlineChoiceAndShipping(t *testing.T) {
	pdfs, err := rules.CompileAttachmentFilter(`content_type == "application/pdf"`)
	if err != nil {
		t.Fatal(err)
	}
	sp := fakeSpool{}
	p := newPipeline(t, pipeline.Config{
		Rules: compile(t,
			rules.Spec{Name: "invoices", Mailbox: "INBOX", Actions: []rules.Action{{Webhook: "inline"}, {Webhook: "meta"}}},
			rules.Spec{Name: "never", Mailbox: "INBOX", When: "false", Actions: []rules.Action{{Webhook: "all"}}}),
		Webhooks: []pipeline.Webhook{
			{Name: "inline", Attachments: pipeline.AttachmentsInline, AttachmentsWhen: pdfs, MaxInlineBytes: 1000},
			{Name: "meta", Attachments: pipeline.AttachmentsMetadata},
			{Name: "all", Attachments: pipeline.AttachmentsInline, MaxInlineBytes: 1 << 20},
		},
		Spool: sp,
	})
	if !p.Plan("a", "INBOX").Inline || p.Plan("a", "Archive").Inline {
		t.Errorf("plan inline: INBOX %v, Archive %v; want true, false", p.Plan("a", "INBOX").Inline, p.Plan("a", "Archive").Inline)
	}
	m := &message.Message{MessageID: "<1@x>", Attachments: []message.Attachment{
		{Filename: "a.pdf", ContentType: "application/pdf", Size: 600, Section: "2"},
		{Filename: "logo.png", ContentType: "image/png", Size: 100, Section: "3"},
		{Filename: "b.pdf", ContentType: "application/pdf", Size: 600, Section: "4"}, // over the cap
		{Filename: "c.pdf", ContentType: "application/pdf", Size: 300, Section: "5"},
	}}
	ev := &watcher.Event{Account: "a", Mailbox: "INBOX", UIDValidity: 9, UID: 5, Message: m}
	d := p.Match(ev)
	var chosen []string
	for _, a := range d.Inline() {
		chosen = append(chosen, a.Section)
	}
	if !slices.Equal(chosen, []string{"2", "5"}) {
		t.Errorf("inline choice %v, want [2 5]", chosen)
	}
	ev.Spooled = map[string]string{"2": "/spool/incoming/2"} // 5 did not fit under max_message_size
	jobs, err := d.Jobs(context.Background(), ev)
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 2 {
		t.Fatalf("%d jobs, want 2", len(jobs))
	}
	var pl struct {
		Attachments []struct {
			ContentBase64 string `json:"content_base64"`
		} `json:"attachments"`
		Truncated bool     `json:"truncated"`
		Defects   []string `json:"defects"`
	}
	if err := json.Unmarshal(jobs[0].Body, &pl); err != nil {
		t.Fatal(err)
	}
	if len(pl.Attachments) != 4 || pl.Attachments[0].ContentBase64 != "\x00spool:2\x00" || pl.Attachments[3].ContentBase64 != "" ||
		!pl.Truncated || !slices.Contains(pl.Defects, payload.DefectAttachmentsTruncated) || !payload.HasInline(jobs[0].Body) {
		t.Errorf("inline job body %s", jobs[0].Body)
	}
	if files := sp[jobs[0].ID]; len(files) != 1 || files["2"] != "/spool/incoming/2" {
		t.Errorf("spooled files of the inline job: %v", files)
	}
	if _, ok := sp[jobs[1].ID]; ok || payload.HasInline(jobs[1].Body) {
		t.Errorf("the metadata job shipped content: %s", jobs[1].Body)
	}
}

// A rule whose run-time pattern is over its cost bounds does not match, is logged once, and the
// message is still committed: the webhooks of the rules that matched carry the defect
// "rule_failed:NAME".
func TestRuleFailedDefect(t *testing.T) {
	var logs bytes.Buffer
	p := newPipeline(t, pipeline.Config{
		Rules: compile(t,
			rules.Spec{Name: "project", When: `re("^\\[" + header("X-Project") + "\\]", subject + repeat("x", 70000))`,
				Actions: []rules.Action{{Webhook: "hook"}}},
			rules.Spec{Name: "all", Actions: []rules.Action{{Webhook: "hook"}}}),
		Webhooks: []pipeline.Webhook{{Name: "hook", Body: payload.BodyText,
			Formatter: formatter(t, payload.FormatOptions{Format: payload.FormatJSON, Body: payload.BodyText})}},
		Accounts: []pipeline.Account{{Name: "work"}},
		Logger:   slog.New(slog.NewTextHandler(&logs, nil)),
	})
	ev := sampleEvent(t, "work")
	ev.Message.Headers = append(ev.Message.Headers, message.Header{Name: "X-Project", Value: strings.Repeat("x*", 200)})
	jobs, err := p.Handle(context.Background(), ev)
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 1 || jobs[0].Rule != "all" {
		t.Fatalf("jobs %+v; want the one of rule all", jobs)
	}
	var body struct{ Defects []string }
	if err := json.Unmarshal(jobs[0].Body, &body); err != nil || !slices.Contains(body.Defects, "rule_failed:project") {
		t.Errorf("payload defects %v (%v); want rule_failed:project", body.Defects, err)
	}
	if n := strings.Count(logs.String(), "rule evaluation failed"); n != 1 || !strings.Contains(logs.String(), "match cost") {
		t.Errorf("logged %d times, want once naming the bound:\n%s", n, logs.String())
	}
}

// Plan fetches report and calendar parts for the rules that read them (and for a rule on
// reply_text its part), and for webhooks that ship a body (their payloads carry bounce,
// complaint and calendar); a webhook with body: none and rules on headers fetch none.
func TestPlanReports(t *testing.T) {
	p := newPipeline(t, pipeline.Config{
		Rules: compile(t,
			rules.Spec{Name: "bounces", Mailbox: "Bounces", When: `bounce.kind == "hard"`, Actions: []rules.Action{{MarkSeen: true}}},
			rules.Spec{Name: "invites", Mailbox: "Invites", When: `calendar != nil`, Actions: []rules.Action{{MarkSeen: true}}},
			rules.Spec{Name: "bare", Mailbox: "Bare", When: `true`, Actions: []rules.Action{{Webhook: "bare"}}},
			rules.Spec{Name: "approvals", Mailbox: "Approvals", When: `reply_text startsWith "Approved"`, Actions: []rules.Action{{MarkSeen: true}}},
			rules.Spec{Name: "shipped", Mailbox: "INBOX", When: `true`, Actions: []rules.Action{{Webhook: "text"}}}),
		Webhooks: []pipeline.Webhook{{Name: "bare", Body: payload.BodyNone}, {Name: "text", Body: payload.BodyText}},
	})
	for mb, want := range map[string]watcher.Plan{
		"Bounces":   {Reports: true},
		"Invites":   {Calendar: true},
		"Bare":      {},
		"Approvals": {ReplyText: true},
		"INBOX":     {Text: true, Reports: true, Calendar: true},
	} {
		if got := p.Plan("a", mb); got != want {
			t.Errorf("%s: plan %+v, want %+v", mb, got, want)
		}
	}
}
