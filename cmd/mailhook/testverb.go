package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/mailhook/mailhook/config"
	"github.com/mailhook/mailhook/message"
	"github.com/mailhook/mailhook/pipeline"
	"github.com/mailhook/mailhook/rules"
	"github.com/mailhook/mailhook/spool"
	"github.com/mailhook/mailhook/watcher"
)

// testVerb is `mailhook test`. stdin is read for the file name "-".
func testVerb(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { printHelp(fs.Output(), fs) }
	path := configFlag(fs)
	account := fs.String("account", "", "the account the messages are tested in (and fetched from, with --last/--uid)")
	mailbox := fs.String("mailbox", "", "the mailbox (default: the account's first)")
	asJSON := fs.Bool("json", false, "print one JSON object per message")
	last := fs.Int("last", 0, "fetch and test the `N` most recent messages of the mailbox")
	uid := fs.Uint("uid", 0, "fetch and test the message with this `UID`")
	files, ok := parseInterspersed(fs, args)
	if !ok {
		return exitConfig
	}
	live := *last != 0 || *uid != 0
	switch {
	case *last < 0:
		fmt.Fprintln(stderr, "mailhook test: --last must be positive")
		return exitConfig
	case *last != 0 && *uid != 0:
		fmt.Fprintln(stderr, "mailhook test: --last and --uid exclude each other")
		return exitConfig
	case live && len(files) > 0:
		fmt.Fprintln(stderr, "mailhook test: give message files or --last/--uid, not both")
		return exitConfig
	case live && *account == "":
		fmt.Fprintln(stderr, "mailhook test: --last and --uid need --account")
		return exitConfig
	case !live && len(files) == 0:
		fmt.Fprintln(stderr, "mailhook test: no message given: name .eml files, - for standard input, or --last N / --uid N (mailhook test --help)")
		return exitConfig
	case *uid > 1<<32-1:
		fmt.Fprintln(stderr, "mailhook test: --uid is out of range")
		return exitConfig
	}
	l, code := load(*path, os.LookupEnv, stderr)
	if code != exitOK {
		return code
	}
	acct, mb, err := pickMailbox(l.cfg, *account, *mailbox)
	if err != nil {
		fmt.Fprintf(stderr, "mailhook test: %v\n", err)
		return exitConfig
	}
	p, err := pipeline.New(l.pipelineConfig(nil))
	if err != nil {
		fmt.Fprintf(stderr, "mailhook test: %v\n", err)
		return exitFail
	}
	t := &tester{l: l, p: p, account: acct, mailbox: mb, json: *asJSON, out: stdout}

	if !live {
		code := exitOK
		for _, name := range files {
			raw, err := readInput(name, stdin)
			if err != nil {
				fmt.Fprintf(stderr, "mailhook test: %v\n", err)
				t.failed(name, err)
				code = exitFail
				continue
			}
			m, err := message.Parse(bytes.NewReader(raw), message.Limits{})
			if err != nil { // only a read error; Parse tolerates any content
				fmt.Fprintf(stderr, "mailhook test: %s: %v\n", name, err)
				t.failed(name, err)
				code = exitFail
				continue
			}
			ev := &watcher.Event{Account: acct.Name, Mailbox: mb, Message: m}
			if err := t.explain(ctx, name, ev, p.Match(ev)); err != nil {
				fmt.Fprintf(stderr, "mailhook test: %s: %v\n", name, err)
				code = exitFail
			}
		}
		return code
	}

	sel := watcher.Selection{Last: *last}
	if *uid != 0 {
		sel = watcher.Selection{UIDMin: uint32(*uid), UIDMax: uint32(*uid)}
	}
	logger := newLogger(config.LogConfig{Level: "warn"}, stderr)
	n := 0
	err = fetchLive(ctx, l, acct, mb, sel, p, nil, logger, func(ctx context.Context, ev *watcher.Event, d watcher.Matched) error {
		n++
		return t.explain(ctx, fmt.Sprintf("%s/%s uid %d", ev.Account, ev.Mailbox, ev.UID), ev, d)
	})
	if err != nil {
		fmt.Fprintf(stderr, "mailhook test: %v\n", err)
		return exitFail
	}
	if n == 0 {
		fmt.Fprintf(stderr, "mailhook test: no message selected in %s/%s\n", acct.Name, mb)
		return exitFail
	}
	return exitOK
}

// parseInterspersed parses flags that may come before, between or after the positional
// arguments, which it returns ("-" is a positional argument).
func parseInterspersed(fs *flag.FlagSet, args []string) (positional []string, ok bool) {
	fs.Usage = func() { printHelp(fs.Output(), fs) }
	for {
		if err := fs.Parse(args); err != nil {
			return nil, false
		}
		args = fs.Args()
		if len(args) == 0 {
			return positional, true
		}
		if args[0] == "--" {
			return append(positional, args[1:]...), true
		}
		positional = append(positional, args[0])
		args = args[1:]
	}
}

// pickMailbox resolves --account and --mailbox: the named account (default the first) and the
// named mailbox, which must be one it watches (default its first).
func pickMailbox(cfg *config.Config, account, mailbox string) (config.Account, string, error) {
	if len(cfg.Accounts) == 0 {
		return config.Account{}, "", errors.New("the configuration has no account")
	}
	acct := cfg.Accounts[0]
	if account != "" {
		found := false
		for _, a := range cfg.Accounts {
			if a.Name == account {
				acct, found = a, true
				break
			}
		}
		if !found {
			return config.Account{}, "", fmt.Errorf("--account %q: no such account in the configuration", account)
		}
	}
	if mailbox == "" {
		return acct, acct.IMAP.Mailboxes[0], nil
	}
	for _, mb := range acct.IMAP.Mailboxes {
		if config.SameMailbox(mb, mailbox) {
			return acct, mb, nil
		}
	}
	return config.Account{}, "", fmt.Errorf("--mailbox %q: account %q does not watch it (mailboxes: %s)",
		mailbox, acct.Name, strings.Join(acct.IMAP.Mailboxes, ", "))
}

// readInput reads a message file, or standard input for "-".
func readInput(name string, stdin io.Reader) ([]byte, error) {
	if name == "-" {
		b, err := io.ReadAll(stdin)
		if err != nil {
			return nil, fmt.Errorf("read standard input: %w", err)
		}
		return b, nil
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("read message: %w", err)
	}
	return b, nil
}

// fetchLive fetches the selected messages of (acct, mb) once, as the watcher would (same
// connection settings, p's fetch plan and match, attachment content spooled into sp when it is
// not nil), charging the account's download budget, which it loads from and writes back to the
// state directory (opened Shared, so a running daemon is no obstacle). fn runs for each message.
func fetchLive(ctx context.Context, l *loaded, acct config.Account, mb string, sel watcher.Selection, p *pipeline.Pipeline,
	sp *spool.Spool, logger *slog.Logger, fn func(ctx context.Context, ev *watcher.Event, d watcher.Matched) error) error {
	wc, err := watcherConfig(l, acct, mb, logger)
	if err != nil {
		return err
	}
	wc.Plan = p.Plan(acct.Name, mb)
	if sp != nil {
		wc.Incoming = sp.Incoming()
	}
	if wc.Budget == nil {
		st, err := openStore(ctx, l.cfg.StateDir, true)
		if err != nil {
			return fmt.Errorf("open state (for the download budget): %w", err)
		}
		defer st.Close()
		b, err := watcher.NewBudget(ctx, acct.Name, int64(acct.Limits.DownloadPerDay), st, watcher.BudgetOptions{Logger: logger})
		if err != nil {
			return err
		}
		wc.Budget = b
		defer func() {
			// Written even when the fetch failed or ctx ended: the bytes were read either way.
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := b.Flush(fctx); err != nil {
				logger.Warn("could not record the bytes downloaded in the budget", "err", err)
			}
		}()
	}
	if err := watcher.FetchMessages(ctx, wc, sel, p, fn); err != nil {
		return fmt.Errorf("fetch from %s/%s: %w", acct.Name, mb, err)
	}
	return nil
}

// tester explains messages against the loaded rules, as text or JSON lines.
type tester struct {
	l       *loaded
	p       *pipeline.Pipeline
	account config.Account
	mailbox string
	json    bool
	out     io.Writer
}

// testReport is the JSON object `mailhook test --json` prints per message.
type testReport struct {
	File       string         `json:"file"`
	Account    string         `json:"account,omitempty"`
	Mailbox    string         `json:"mailbox,omitempty"`
	UIDValid   uint32         `json:"uidvalidity,omitempty"`
	UID        uint32         `json:"uid,omitempty"`
	Message    *testMessage   `json:"message,omitempty"`
	Rules      []testRule     `json:"rules"`
	Deliveries []testDelivery `json:"deliveries"`
	Error      string         `json:"error,omitempty"`
}

// testMessage is the parsed message, under the names expressions use.
type testMessage struct {
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
	Attachments []message.Attachment `json:"attachments"`
	Automated   bool                 `json:"automated"`
	ListID      string               `json:"list_id"`
	Defects     []string             `json:"defects"`
	Auth        message.Auth         `json:"auth"`
	Truncated   bool                 `json:"truncated"`
	Headers     []testHeader         `json:"headers"`
}

type testHeader struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

type testRule struct {
	Name        string       `json:"name"`
	Matched     bool         `json:"matched"`
	Fires       bool         `json:"fires"`                // matched and not cut off by an earlier stop: true
	Skipped     string       `json:"skipped,omitempty"`    // "account filter" | "mailbox filter"
	StoppedBy   string       `json:"stopped_by,omitempty"` // the earlier rule with stop: true
	FalseClause string       `json:"false_clause,omitempty"`
	Clauses     []testClause `json:"clauses,omitempty"`
	Error       string       `json:"error,omitempty"`
	Actions     []string     `json:"actions,omitempty"` // of a firing rule
}

type testClause struct {
	Source string `json:"source"`
	Value  bool   `json:"value"`
	Error  string `json:"error,omitempty"`
}

type testDelivery struct {
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

// explain reports one message: every rule's explanation and the jobs the pipeline would queue,
// made by the pipeline's own match d of ev, so the bodies are the very bytes the daemon would send.
func (t *tester) explain(ctx context.Context, name string, ev *watcher.Event, d watcher.Matched) error {
	env := rules.NewEnv(ev.Account, ev.Mailbox, ev.UID, ev.Message, t.account.IMAP.TrustedAuthservID)
	rep := testReport{File: name, Account: ev.Account, Mailbox: ev.Mailbox, UIDValid: ev.UIDValidity, UID: ev.UID,
		Message: newTestMessage(ev.Message, env.Auth), Rules: []testRule{}, Deliveries: []testDelivery{}}
	for _, e := range t.l.rules.Explain(env) {
		tr := testRule{Name: e.Rule.Name, Matched: e.Matched, Fires: e.Fires, Skipped: e.Skipped,
			StoppedBy: e.StoppedBy, FalseClause: e.FalseClause}
		if e.Err != nil {
			tr.Error = e.Err.Error()
		}
		for _, c := range e.Clauses {
			tc := testClause{Source: c.Source, Value: c.Value}
			if c.Err != nil {
				tc.Error = c.Err.Error()
			}
			tr.Clauses = append(tr.Clauses, tc)
		}
		if e.Fires {
			for _, a := range e.Rule.Actions {
				tr.Actions = append(tr.Actions, describeAction(a))
			}
		}
		rep.Rules = append(rep.Rules, tr)
	}
	jobs, err := d.Jobs(ctx, ev)
	if err != nil {
		return err
	}
	for _, j := range jobs {
		d := testDelivery{ID: j.ID, Kind: j.Kind, Target: j.Target, Rule: j.Rule, DependsOn: j.DependsOn}
		if json.Valid(j.Body) {
			d.Body = j.Body
		} else if len(j.Body) > 0 {
			d.BodyText = strings.ToValidUTF8(string(j.Body), "\uFFFD")
		}
		rep.Deliveries = append(rep.Deliveries, d)
	}
	if t.json {
		return t.encode(rep)
	}
	t.printText(rep)
	return nil
}

// failed reports a message that could not be read.
func (t *tester) failed(name string, err error) {
	if t.json {
		_ = t.encode(testReport{File: name, Rules: []testRule{}, Deliveries: []testDelivery{}, Error: err.Error()})
	}
}

// encode writes rep as one line of JSON. HTML escaping is off, so a webhook body (a RawMessage)
// is printed byte for byte as it would be sent.
func (t *tester) encode(rep testReport) error {
	enc := json.NewEncoder(t.out)
	enc.SetEscapeHTML(false)
	return enc.Encode(rep)
}

func newTestMessage(m *message.Message, auth message.Auth) *testMessage {
	tm := &testMessage{
		MessageID: m.MessageID, Subject: m.Subject, From: m.From, Sender: m.Sender, To: orEmpty(m.To),
		Cc: orEmpty(m.Cc), ReplyTo: orEmpty(m.ReplyTo), Size: m.Size, Flags: orEmpty(m.Flags), Text: m.Text,
		HTML: m.HTML, Attachments: orEmpty(m.Attachments), Automated: m.Automated, ListID: m.ListID,
		Defects: orEmpty(m.Defects), Auth: auth, Truncated: m.Truncated, Headers: []testHeader{},
	}
	if !m.Date.IsZero() {
		tm.Date = &m.Date
	}
	for _, h := range m.Headers {
		tm.Headers = append(tm.Headers, testHeader(h))
	}
	return tm
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

// printText writes the human-readable report of one message.
func (t *tester) printText(rep testReport) {
	w := t.out
	m := rep.Message
	fmt.Fprintf(w, "== %s (as %s/%s)\n", rep.File, rep.Account, rep.Mailbox)
	fmt.Fprintf(w, "   from %s, subject %q", formatAddress(m.From), m.Subject)
	if m.Date != nil {
		fmt.Fprintf(w, ", date %s", m.Date.Format(time.RFC3339))
	}
	fmt.Fprintf(w, ", %d bytes, %d attachments\n", m.Size, len(m.Attachments))
	fmt.Fprintf(w, "   auth spf=%s dkim=%s dmarc=%s", orNone(m.Auth.SPF), orNone(m.Auth.DKIM), orNone(m.Auth.DMARC))
	if t.account.IMAP.TrustedAuthservID == "" {
		fmt.Fprintf(w, " (account %q has no trusted_authserv_id: no Authentication-Results header is believed, so auth.* is never \"pass\")", t.account.Name)
	}
	if len(m.Defects) > 0 {
		fmt.Fprintf(w, ", defects %s", strings.Join(m.Defects, " "))
	}
	fmt.Fprintln(w)
	for _, r := range rep.Rules {
		switch {
		case r.Skipped != "":
			fmt.Fprintf(w, "   rule %q: skipped (%s)\n", r.Name, r.Skipped)
		case r.Error != "":
			fmt.Fprintf(w, "   rule %q: no match: evaluation failed: %s\n", r.Name, firstLine(r.Error))
		case r.Fires:
			fmt.Fprintf(w, "   rule %q: MATCH → %s\n", r.Name, strings.Join(r.Actions, ", "))
		case r.Matched:
			fmt.Fprintf(w, "   rule %q: matched, but not run: rule %q before it has stop: true\n", r.Name, r.StoppedBy)
		default:
			fmt.Fprintf(w, "   rule %q: no match: false: %s\n", r.Name, r.FalseClause)
		}
	}
	if len(rep.Deliveries) == 0 {
		fmt.Fprintln(w, "   nothing would be sent")
	}
	for _, d := range rep.Deliveries {
		fmt.Fprintf(w, "   %s %q (rule %q), id %s", d.Kind, d.Target, d.Rule, d.ID)
		if len(d.DependsOn) > 0 {
			fmt.Fprintf(w, ", after %s", strings.Join(d.DependsOn, " "))
		}
		fmt.Fprintln(w, ", body:")
		if d.Body != nil {
			// Indented like the demo prints it; --json gives the exact bytes.
			var pretty bytes.Buffer
			if err := json.Indent(&pretty, d.Body, "     ", "  "); err != nil {
				pretty.Reset()
				pretty.Write(d.Body)
			}
			fmt.Fprintf(w, "     %s\n", pretty.Bytes())
		} else {
			fmt.Fprintln(w, d.BodyText)
		}
	}
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

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
