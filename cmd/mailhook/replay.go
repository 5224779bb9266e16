package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/mailhook/mailhook/config"
	"github.com/mailhook/mailhook/oauth"
	"github.com/mailhook/mailhook/pipeline"
	"github.com/mailhook/mailhook/spool"
	"github.com/mailhook/mailhook/store"
	"github.com/mailhook/mailhook/watcher"
)

const replayUsage = `Usage:
  mailhook replay --config FILE --account A [--mailbox M] --since 72h | --uid 100:120
                  [--rule R] [--dry-run] [--replay-id ID]

Re-runs the rules on mail that mailhook already processed (after a rule was fixed, say) and queues
the jobs that result in the outbox, listing them; --dry-run only lists. The messages are fetched
from the server read-only with BODY.PEEK (charged to the download budget); only messages at or
below the mailbox's checkpoint count, since the daemon processes the others itself. --rule keeps
the jobs of that rule only.

Each job gets a new id, derived from the id the original job had and the replay id (default: the
time the replay started, printed first): receivers that deduplicate on webhook-id deliver it, and
running the same replay again with --replay-id ID queues nothing twice. It works while
"mailhook run" is running: the daemon delivers the queued jobs within 30 seconds.
`

// replayVerb is `mailhook replay`.
func replayVerb(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, replayUsage) }
	path := configFlag(fs)
	account := fs.String("account", "", "the account (required)")
	mailbox := fs.String("mailbox", "", "the mailbox (default: the account's first)")
	since := fs.Duration("since", 0, "replay mail that arrived within this `duration` (INTERNALDATE), e.g. 72h")
	uidRange := fs.String("uid", "", "replay this UID or `range` (100:120)")
	rule := fs.String("rule", "", "queue only the jobs of this rule")
	dryRun := fs.Bool("dry-run", false, "list what would be queued; queue nothing")
	replayID := fs.String("replay-id", "", "name of this replay, from which the new job ids derive (default: the start time)")
	if !parseFlags(fs, args, stderr) {
		return exitConfig
	}
	var sel watcher.Selection
	switch {
	case *account == "":
		fmt.Fprint(stderr, "mailhook replay: --account is required\n\n"+replayUsage)
		return exitConfig
	case (*since != 0) == (*uidRange != ""):
		fmt.Fprint(stderr, "mailhook replay: give exactly one of --since and --uid\n\n"+replayUsage)
		return exitConfig
	case *since < 0:
		fmt.Fprintln(stderr, "mailhook replay: --since must be positive")
		return exitConfig
	case *since > 0:
		sel.Since = time.Now().Add(-*since)
	default:
		lo, hi, err := parseUIDRange(*uidRange)
		if err != nil {
			fmt.Fprintf(stderr, "mailhook replay: --uid %q: %v\n", *uidRange, err)
			return exitConfig
		}
		sel.UIDMin, sel.UIDMax = lo, hi
	}
	l, code := load(*path, os.LookupEnv, stderr)
	if code != exitOK {
		return code
	}
	acct, mb, err := pickMailbox(l.cfg, *account, *mailbox)
	if err != nil {
		fmt.Fprintf(stderr, "mailhook replay: %v\n", err)
		return exitConfig
	}
	if *rule != "" {
		if _, ok := l.rules.Rule(*rule); !ok {
			fmt.Fprintf(stderr, "mailhook replay: --rule %q: no such rule in the configuration\n", *rule)
			return exitConfig
		}
	}
	tag := *replayID
	if tag == "" {
		tag = time.Now().UTC().Format("20060102T150405Z")
	}
	logger := newLogger(config.LogConfig{Level: "warn"}, stderr)
	r := &replayer{account: acct.Name, mailbox: mb, rule: *rule, dryRun: *dryRun, tag: tag, out: stdout, logger: logger}
	if err := r.run(ctx, l, acct, sel); err != nil {
		fmt.Fprintf(stderr, "mailhook replay: %v\n", err)
		return exitFail
	}
	return exitOK
}

// parseUIDRange parses "N" or "N:M" (RFC 3501 sequence syntax without "*").
func parseUIDRange(s string) (lo, hi uint32, err error) {
	a, b, isRange := strings.Cut(s, ":")
	parse := func(v string) (uint32, error) {
		n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
		if err != nil || n == 0 {
			return 0, fmt.Errorf("want a UID (1–4294967295) or a range N:M")
		}
		return uint32(n), nil
	}
	if lo, err = parse(a); err != nil {
		return 0, 0, err
	}
	hi = lo
	if isRange {
		if hi, err = parse(b); err != nil {
			return 0, 0, err
		}
	}
	return min(lo, hi), max(lo, hi), nil
}

// replayer runs one replay.
type replayer struct {
	account, mailbox string
	rule             string // "" = every rule
	dryRun           bool
	tag              string
	out              io.Writer
	logger           *slog.Logger
}

func (r *replayer) run(ctx context.Context, l *loaded, acct config.Account, sel watcher.Selection) error {
	st, err := openConfiguredStore(ctx, l.cfg, true)
	if err != nil {
		return fmt.Errorf("open state: %w", err)
	}
	defer st.Close()
	l.rotation, _ = st.(oauth.Rotation) // a shared store: refresh under the replicas' lock
	cp, ok, err := st.Checkpoint(ctx, r.account, r.mailbox)
	if err != nil {
		return fmt.Errorf("read checkpoint: %w", err)
	}
	if !ok {
		return fmt.Errorf("%s/%s has no checkpoint: mailhook has processed nothing there yet", r.account, r.mailbox)
	}
	// Messages above the checkpoint are the daemon's to process; no point fetching them.
	if sel.UIDMax == 0 || sel.UIDMax > cp.LastUID {
		sel.UIDMax = cp.LastUID
	}
	mode := "queue"
	if r.dryRun {
		mode = "dry run"
	}
	fmt.Fprintf(r.out, "replay %s (%s): %s/%s, uidvalidity %d, processed up to uid %d\n",
		r.tag, mode, r.account, r.mailbox, cp.UIDValidity, cp.LastUID)
	if cp.LastUID == 0 || sel.UIDMin > sel.UIDMax {
		fmt.Fprintln(r.out, "nothing selected at or below the checkpoint")
		return nil
	}

	pc := l.pipelineConfig(r.logger)
	if pc.OwnKey, err = st.InstallationKey(ctx); err != nil { // replies it sends are signed as the daemon's
		return fmt.Errorf("open state: %w", err)
	}
	pc.JobID = func(account, mailbox string, uidvalidity, uid uint32, rule string, action int) string {
		return store.ReplayJobID(r.tag, store.JobID(account, mailbox, uidvalidity, uid, rule, action))
	}
	var sp *spool.Spool
	if !r.dryRun {
		// Attachments shipped inline are spooled like the daemon's, in an incoming directory of
		// this tool's own, which Close removes (the daemon's sweep does, an hour later, if the
		// tool dies first).
		sp, err = spool.Open(l.cfg.StateDir, spool.Options{Logger: r.logger, Shared: true, Blobs: blobsOf(st)})
		if err != nil {
			return fmt.Errorf("open state: %w", err)
		}
		defer func() { _ = sp.Close() }()
		pc.Spool = sp
	}
	p, err := pipeline.New(pc)
	if err != nil {
		return err
	}
	var messages, queued, existing, skipped int
	err = fetchLive(ctx, l, acct, r.mailbox, sel, p, sp, r.logger, func(ctx context.Context, ev *watcher.Event, d watcher.Matched) error {
		if ev.UIDValidity != cp.UIDValidity {
			// The mailbox was re-created since the checkpoint: its UIDs are not the processed ones.
			skipped++
			return nil
		}
		messages++
		jobs, err := d.Jobs(ctx, ev)
		if err != nil {
			return fmt.Errorf("uid %d: %w", ev.UID, err)
		}
		if r.rule != "" {
			kept := jobs[:0]
			for _, j := range jobs {
				if j.Rule == r.rule {
					kept = append(kept, j)
				}
			}
			jobs = kept
		}
		if len(jobs) == 0 {
			return nil
		}
		inserted := map[string]bool{}
		if !r.dryRun {
			ids, err := st.Enqueue(ctx, jobs)
			if err != nil {
				return fmt.Errorf("uid %d: %w", ev.UID, err)
			}
			for _, id := range ids {
				inserted[id] = true
			}
		}
		for _, j := range jobs {
			verb := "would queue"
			switch {
			case r.dryRun:
			case inserted[j.ID]:
				verb = "queued"
				queued++
			default:
				verb = "already queued"
				existing++
			}
			fmt.Fprintf(r.out, "%s %s %s %q rule %q uid %d subject %q\n",
				verb, j.ID, j.Kind, j.Target, j.Rule, j.UID, ev.Message.Subject)
		}
		if r.dryRun {
			queued += len(jobs)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if skipped > 0 {
		fmt.Fprintf(r.out, "%d messages skipped: the mailbox's UIDVALIDITY is no longer %d (the daemon rescans it)\n", skipped, cp.UIDValidity)
	}
	what := "queued"
	if r.dryRun {
		what = "would be queued"
	}
	fmt.Fprintf(r.out, "%d messages replayed; %d jobs %s", messages, queued, what)
	if existing > 0 {
		fmt.Fprintf(r.out, ", %d already queued by replay %s", existing, r.tag)
	}
	fmt.Fprintln(r.out)
	return nil
}
