package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"

	"github.com/mailhook/mailhook/config"
	"github.com/mailhook/mailhook/dispatch"
	"github.com/mailhook/mailhook/internal/ops"
	"github.com/mailhook/mailhook/oauth"
	"github.com/mailhook/mailhook/outbox"
	"github.com/mailhook/mailhook/payload"
	"github.com/mailhook/mailhook/pipeline"
	"github.com/mailhook/mailhook/reply"
	"github.com/mailhook/mailhook/rules"
	"github.com/mailhook/mailhook/spool"
	"github.com/mailhook/mailhook/store"
	"github.com/mailhook/mailhook/store/postgres"
	"github.com/mailhook/mailhook/watcher"
)

// configFlag registers --config and its short form -c on fs.
func configFlag(fs *flag.FlagSet) *string {
	p := new(string)
	fs.StringVar(p, "config", configDefault(), "configuration `file` (YAML)")
	fs.StringVar(p, "c", configDefault(), "short for --config")
	return p
}

// parseFlags parses args for a verb that needs --config; it prints usage errors itself.
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer) (ok bool) {
	fs.SetOutput(stderr)
	fs.Usage = func() { printHelp(fs.Output(), fs) }
	if err := fs.Parse(args); err != nil {
		return false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "mailhook %s: unexpected argument %q%s\n", fs.Name(), fs.Arg(0), configHint(fs))
		return false
	}
	return true
}

// loaded is a configuration that passed validation, with its rules compiled.
type loaded struct {
	cfg   *config.Config
	rules *rules.Set
	oauth *oauthSources // token sources of oauth2 accounts, created on first use (oauth2.go)
	// rotation keeps rotated refresh tokens in a store shared by replicas; nil: state_dir only.
	rotation oauth.Rotation
	// replies are the parsed templates of the replies: section, by name (replies.go).
	replies map[string]*reply.Template
	// inline holds the attachments_when filters of webhooks with attachments: inline
	// (attachments.go).
	inline map[string]*rules.AttachmentFilter
	// formats render each webhook's body, by webhook name (formats.go).
	formats map[string]*payload.Formatter
}

// load reads, validates and compiles a configuration. Every problem is printed to stderr; the
// returned status is exitOK or exitConfig.
func load(path string, getenv func(string) (string, bool), stderr io.Writer) (*loaded, int) {
	return loadWith(path, config.Options{Getenv: getenv}, stderr)
}

// loadWith is load with the config package's options: the operator verbs set NoSecrets.
func loadWith(path string, opts config.Options, stderr io.Writer) (*loaded, int) {
	if path == "" {
		fmt.Fprintln(stderr, "mailhook: --config FILE is required (or set MAILHOOK_CONFIG)")
		return nil, exitConfig
	}
	cfg, warnings, err := config.Load(path, opts)
	if err != nil {
		fmt.Fprintf(stderr, "mailhook: config %s:\n%s\n", path, indent(err.Error()))
		return nil, exitConfig
	}
	for _, w := range warnings {
		fmt.Fprintf(stderr, "mailhook: warning: %s\n", w)
	}
	replies, err := compileReplies(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "mailhook: config %s:\n%s\n", path, indent(err.Error()))
		return nil, exitConfig
	}
	set, err := rules.Compile(ruleSpecs(cfg))
	if err != nil {
		fmt.Fprintf(stderr, "mailhook: config %s:\n%s\n", path, indent(err.Error()))
		return nil, exitConfig
	}
	inline, err := compileInline(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "mailhook: config %s:\n%s\n", path, indent(err.Error()))
		return nil, exitConfig
	}
	formats, err := compileFormats(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "mailhook: config %s:\n%s\n", path, indent(err.Error()))
		return nil, exitConfig
	}
	return &loaded{cfg: cfg, rules: set, replies: replies, inline: inline, formats: formats}, exitOK
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(s, "\n", "\n  ")
}

func runVerb(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	path := configFlag(fs)
	if !parseFlags(fs, args, stderr) {
		return exitConfig
	}
	l, code := load(*path, os.LookupEnv, stderr)
	if code != exitOK {
		return code
	}
	logger := newLogger(l.cfg.Log, stderr)
	if err := serve(ctx, l, logger); err != nil {
		logger.Error("mailhook stopped", "err", err)
		return exitFail
	}
	return exitOK
}

// newLogger builds the process logger from the log: section.
func newLogger(c config.LogConfig, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level)) // validated at load time
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// app is a running mailhook: the state store, the outbox consumers (webhook deliveries, replies)
// and one watcher per mailbox.
type app struct {
	store    store.Backend
	dispatch *outbox.Consumer // webhook deliveries: the dispatcher's lanes
	watchers []*watcher.Watcher
	budgets  []*watcher.ByteBudget // one per account, shared by its mailboxes' watchers (status.go)
	logger   *slog.Logger
	cfg      *config.Config
	ops      *ops.Ops         // health checks, metrics and the http.listen listener
	replies  *outbox.Consumer // reply workers of the accounts with smtp (replies.go)
	spool    *spool.Spool     // inline attachments of queued webhooks (attachments.go)
	// leases, on a store shared by replicas (PostgreSQL), decides which mailboxes this replica
	// watches: leased holds them all, and their watchers are made per lease (leases.go).
	leases *postgres.Leases
	leased map[postgres.MailboxKey]*watcher.Leased
}

// newApp takes the state directory lock and builds every component; it opens no IMAP connection,
// so a second instance on the same directory fails here, before touching any server.
func newApp(ctx context.Context, l *loaded, logger *slog.Logger) (_ *app, err error) {
	st, err := openConfiguredStore(ctx, l.cfg, false)
	if err != nil {
		return nil, fmt.Errorf("open state: %w", err)
	}
	var leases *postgres.Leases
	var gates func(string, int) outbox.Gate // webhook concurrency held cluster-wide on a shared store
	if pst, ok := st.(*postgres.Store); ok {
		leases = pst.Leases()
		gates = func(name string, n int) outbox.Gate { return pst.Slots("webhook:"+name, n) }
		l.rotation = pst
	}
	defer func() {
		if err != nil {
			st.Close() // releases the state directory lock
		}
	}()
	// mailhook_webhook_disabled reports the disabled endpoints, whose jobs the pipeline commits held.
	a := &app{store: st, logger: logger, cfg: l.cfg, ops: ops.New(ops.Options{Version: version(), Logger: logger,
		Outbox: st, Replies: st, Endpoints: st, Webhooks: webhookNames(l.cfg), Leases: leaseCounts(leases)}),
		leases: leases, leased: map[postgres.MailboxKey]*watcher.Leased{}}
	// The daemon holds the state directory's lock, so its spool empties the daemon's incoming
	// directory (spooled for messages whose commit never happened: they are fetched again).
	a.spool, err = spool.Open(l.cfg.StateDir, spool.Options{Logger: logger, Blobs: blobsOf(st)})
	if err != nil {
		return nil, fmt.Errorf("open state: %w", err)
	}
	eps, err := l.cfg.Endpoints()
	if err != nil {
		return nil, fmt.Errorf("dispatch: %w", err)
	}
	d, err := dispatch.New(eps, dispatch.Options{Logger: logger, Version: version(),
		Observe: spoolObserver(a.spool, a.ops.Delivered), Spool: a.spool, States: st, Gates: gates})
	if err != nil {
		return nil, fmt.Errorf("dispatch: %w", err)
	}
	a.dispatch = outbox.New(st, d.Lanes(), outbox.Options{Name: "dispatcher", Logger: logger,
		Stopped: d.CloseIdleConnections})
	a.ops.AddLoop("dispatch", a.dispatch)
	senders, err := replyAccounts(l, logger)
	if err != nil {
		return nil, fmt.Errorf("replies: %w", err)
	}
	rw, err := reply.New(st, senders, reply.Options{Logger: logger, OnOutcome: a.ops.ReplyOutcome})
	if err != nil {
		return nil, fmt.Errorf("replies: %w", err)
	}
	a.replies = outbox.New(st, rw.Lanes(), outbox.Options{Name: "reply dispatcher", Logger: logger})
	a.ops.AddLoop("replies", a.replies)
	pc := l.pipelineConfig(logger)
	pc.Ledger, pc.Endpoints, pc.Spool, pc.OnSkip = st, st, a.spool, a.ops.ReplySkipped
	if pc.OwnKey, err = st.InstallationKey(ctx); err != nil { // signs our replies, recognises them back
		return nil, fmt.Errorf("open state: %w", err)
	}
	pl, err := pipeline.New(pc)
	if err != nil {
		return nil, err
	}
	h := a.ops.Counting(pl)
	for _, acct := range l.cfg.Accounts {
		budget, err := newBudget(ctx, st, acct, logger)
		if err != nil {
			return nil, err
		}
		a.budgets = append(a.budgets, budget)
		for _, mb := range acct.IMAP.Mailboxes {
			wc, err := watcherConfig(l, acct, mb, logger)
			if err != nil {
				return nil, fmt.Errorf("account %q mailbox %q: %w", acct.Name, mb, err)
			}
			wc.Plan, wc.Incoming = pl.Plan(acct.Name, mb), a.spool.Incoming()
			wc.Budget = budget
			if leases != nil {
				// The watcher is made when this replica wins the mailbox's lease (leases.go).
				lm := watcher.NewLeased(wc, h)
				a.leased[postgres.MailboxKey{Account: acct.Name, Mailbox: mb}] = lm
				a.ops.Watch(ops.Mailbox{Account: acct.Name, Mailbox: mb, IdleRefresh: acct.IMAP.IdleRefresh,
					PollInterval: acct.IMAP.PollInterval, CommandTimeout: acct.IMAP.CommandTimeout, Status: lm.Status})
				continue
			}
			mw, err := mailboxWriter(st, acct.Name, mb)
			if err != nil {
				return nil, err
			}
			wc.PostActions = mw // mark_seen, flag, move, copy of this mailbox
			w, err := watcher.New(wc, mw, h)
			if err != nil {
				return nil, fmt.Errorf("account %q mailbox %q: %w", acct.Name, mb, err)
			}
			a.watchers = append(a.watchers, w)
			a.ops.Watch(ops.Mailbox{Account: acct.Name, Mailbox: mb, IdleRefresh: acct.IMAP.IdleRefresh,
				PollInterval: acct.IMAP.PollInterval, CommandTimeout: acct.IMAP.CommandTimeout, Status: w.Status})
		}
	}
	if err := a.ops.Listen(l.cfg.HTTP.Listen); err != nil {
		return nil, err
	}
	return a, nil
}

// Run runs the watchers and the outbox consumers until ctx is cancelled, then closes the store.
func (a *app) Run(ctx context.Context) error {
	defer a.store.Close()
	stopOps := a.ops.Serve(ctx)
	defer stopOps()
	a.logger.Info("mailhook started", "version", version(), "mailboxes", len(a.watchers)+len(a.leased),
		"webhooks", len(a.cfg.Webhooks), "rules", len(a.cfg.Rules))
	// A replica on a shared store stops as a whole when it must (a newer mailhook migrated the
	// database past it): the lease manager's error ends the run.
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	errc := make(chan error, len(a.watchers)+2)
	wg.Go(func() {
		if err := a.dispatch.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			errc <- fmt.Errorf("dispatch: %w", err)
		}
	})
	wg.Go(func() { _ = a.replies.Run(ctx) }) // returns nil once ctx is done
	wg.Go(func() { _ = a.spool.Run(ctx, a.store) })
	wg.Go(func() { a.recoverJobs(ctx) })

	var budgets sync.WaitGroup // written behind until the watchers stop, then flushed once more
	budgetCtx, stopBudgets := context.WithCancel(context.WithoutCancel(ctx))
	for _, b := range a.budgets {
		budgets.Go(func() { b.Run(budgetCtx) })
	}
	defer func() { stopBudgets(); budgets.Wait() }() // before the store closes
	for _, w := range a.watchers {
		wg.Go(func() {
			if err := w.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
				errc <- err
			}
		})
	}
	if a.leases != nil {
		wg.Go(func() {
			if err := a.runLeased(ctx); err != nil {
				errc <- err
				stop()
			}
		})
	}
	wg.Wait()
	close(errc)
	a.logger.Info("mailhook stopped")
	return errors.Join(collect(errc)...)
}

// serve builds the app and runs it until ctx is cancelled.
func serve(ctx context.Context, l *loaded, logger *slog.Logger) error {
	a, err := newApp(ctx, l, logger)
	if err != nil {
		return err
	}
	return a.Run(ctx)
}

func collect(c <-chan error) []error {
	var errs []error
	for err := range c {
		errs = append(errs, err)
	}
	return errs
}
