package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/mailhook/mailhook/config"
	"github.com/mailhook/mailhook/dispatch"
	"github.com/mailhook/mailhook/internal/demo"
	"github.com/mailhook/mailhook/message"
	"github.com/mailhook/mailhook/pipeline"
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
	// Attachments a webhook ships inline are spooled, as the daemon spools them, into a spool of
	// our own, and the bodies printed are streamed from it as the dispatcher sends them.
	tmp, err := os.MkdirTemp("", "mailhook-test-")
	var sp *spool.Spool
	if err == nil {
		defer os.RemoveAll(tmp)
		sp, err = spool.Open(tmp, spool.Options{})
	}
	pc := l.pipelineConfig(nil)
	pc.Spool = sp
	p, perr := pipeline.New(pc)
	if err = errors.Join(err, perr); err != nil {
		fmt.Fprintf(stderr, "mailhook test: %v\n", err)
		return exitFail
	}
	t := &tester{p: p, sp: sp, json: *asJSON, out: stdout}
	logger := newLogger(config.LogConfig{Level: "warn"}, stderr)

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
			if err := t.file(ctx, acct, name, raw, ev, logger); err != nil {
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
	n := 0
	err = fetchLive(ctx, l, acct, mb, sel, p, sp, logger, func(ctx context.Context, ev *watcher.Event, d watcher.Matched) error {
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
// not nil), charging the account's download budget, which it shares through the state with a
// daemon running beside it (opened Shared, so a running daemon is no obstacle): reservations are
// made in the store, and the bytes read are written as they are read. fn runs for each message.
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
		st, err := openConfiguredStore(ctx, l.cfg, true)
		if err != nil {
			return fmt.Errorf("open state (for the download budget): %w", err)
		}
		defer st.Close()
		b, err := watcher.NewBudget(ctx, acct.Name, int64(acct.Limits.DownloadPerDay), st, watcher.BudgetOptions{Logger: logger})
		if err != nil {
			return err
		}
		wc.Budget = b
		// The bytes are written as they are read (every 5 s, and once more at the end, also when
		// the fetch failed or ctx ended), so that a daemon beside this tool sees them.
		runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
		done := make(chan struct{})
		go func() { defer close(done); _ = b.Run(runCtx) }()
		defer func() { stop(); <-done }()
	}
	if err := watcher.FetchMessages(ctx, wc, sel, p, fn); err != nil {
		return fmt.Errorf("fetch from %s/%s: %w", acct.Name, mb, err)
	}
	return nil
}

// tester explains messages against the loaded rules, as text or JSON lines.
type tester struct {
	p    *pipeline.Pipeline
	sp   *spool.Spool // where attachments shipped inline are spooled
	json bool
	out  io.Writer
}

// file explains ev, the message parsed from the file name (raw). When a webhook ships some of its
// attachments inline, the message is served by an in-process IMAP server and fetched from it by
// the watcher's own code, which spools their content as the daemon's watcher would.
func (t *tester) file(ctx context.Context, acct config.Account, name string, raw []byte, ev *watcher.Event, logger *slog.Logger) error {
	if d := t.p.Match(ev); len(d.Inline()) == 0 {
		return t.explain(ctx, name, ev, d)
	}
	srv, err := demo.NewIMAPServer(demo.IMAPOptions{Mailboxes: []string{ev.Mailbox}})
	if err != nil {
		return err
	}
	defer srv.Close()
	uid, err := srv.Append(ev.Mailbox, raw)
	if err != nil {
		return err
	}
	wc := watcher.Config{Account: acct.Name, Mailbox: ev.Mailbox, Addr: srv.Addr(), Security: watcher.SecurityPlain,
		Username: srv.User(), Password: srv.Password(), Logger: logger, MaxMessageSize: int64(acct.Limits.MaxMessageSize),
		Plan: t.p.Plan(acct.Name, ev.Mailbox), Incoming: t.sp.Incoming()}
	return watcher.FetchMessages(ctx, wc, watcher.Selection{UIDMin: uid, UIDMax: uid}, t.p, func(ctx context.Context, got *watcher.Event, _ watcher.Matched) error {
		ev.Spooled = got.Spooled // the message as parsed from the file, with the content spooled
		return t.explain(ctx, name, ev, t.p.Match(ev))
	})
}

// explain reports one message, d being the pipeline's own match of ev. Webhook bodies are those
// the dispatcher sends: attachments shipped inline are streamed from the spool into them.
func (t *tester) explain(ctx context.Context, name string, ev *watcher.Event, d watcher.Matched) error {
	e, err := t.p.Explain(ctx, name, ev, d)
	if err != nil {
		return err
	}
	for i, del := range e.Deliveries {
		if e.Deliveries[i].Body, err = dispatch.ExpandInline(ctx, t.sp, del.ID, del.Body); err != nil {
			return err
		}
	}
	if t.json {
		return e.WriteJSON(t.out)
	}
	return e.WriteText(t.out)
}

// failed reports a message that could not be read.
func (t *tester) failed(name string, err error) {
	if t.json {
		_ = pipeline.Unreadable(name, err).WriteJSON(t.out)
	}
}
