package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/mailhook/mailhook/config"
	"github.com/mailhook/mailhook/store"
	"github.com/mailhook/mailhook/store/postgres"
	"github.com/mailhook/mailhook/watcher"
)

// newBudget returns the download budget of account a (limits.download_per_day over a rolling
// 24 hours), loaded from the store's ledger; the app writes it behind while it runs.
func newBudget(ctx context.Context, st watcher.BudgetLedger, a config.Account, logger *slog.Logger) (*watcher.ByteBudget, error) {
	b, err := watcher.NewBudget(ctx, a.Name, int64(a.Limits.DownloadPerDay), st,
		watcher.BudgetOptions{Logger: logger})
	if err != nil {
		return nil, fmt.Errorf("account %q download budget: %w", a.Name, err)
	}
	return b, nil
}

// statusVerb prints, per account and mailbox, what the state directory says: the download budget
// used and remaining in the rolling window and whether the account is throttled (and why), then
// per mailbox the checkpoint, the last activity, the outbox depth and the dead letters. It opens
// the store shared, so it works beside a running `mailhook run`; the daemon writes its byte
// counts behind every few seconds, so the budget figures may lag by that much.
// Exit 0, 1 when the state cannot be read, 2 on a configuration error.
func statusVerb(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	path := configFlag(fs)
	if !parseFlags(fs, args, stderr) {
		return exitConfig
	}
	l, st, code := openTool("status", *path, stderr)
	if code != exitOK {
		return code
	}
	defer st.Close()
	if err := printStatus(ctx, l.cfg, st, time.Now(), stdout); err != nil {
		fmt.Fprintf(stderr, "mailhook status: %v\n", err)
		return exitFail
	}
	return exitOK
}

// printStatus writes the status report of cfg's accounts from st as of now.
func printStatus(ctx context.Context, cfg *config.Config, st store.Backend, now time.Time, w io.Writer) error {
	boxes, err := st.Checkpoints(ctx)
	if err != nil {
		return err
	}
	byName := map[string]store.MailboxState{}
	for _, b := range boxes {
		byName[b.Account+"\x00"+b.Mailbox] = b
	}
	var leases map[postgres.MailboxKey]string // who watches each mailbox, on a store shared by replicas
	if pst, ok := st.(*postgres.Store); ok {
		if leases, err = pst.DescribeLeases(ctx, now); err != nil {
			return err
		}
	}
	for _, a := range cfg.Accounts {
		b, err := watcher.NewBudget(ctx, a.Name, int64(a.Limits.DownloadPerDay), st,
			watcher.BudgetOptions{Now: func() time.Time { return now }})
		if err != nil {
			return err
		}
		u := b.Usage()
		fmt.Fprintf(w, "account %s: download budget %s used of %s in the last 24h, %s remaining\n",
			a.Name, fmtSize(u.Used), fmtSize(u.Limit), fmtSize(max(0, u.Limit-u.Used)))
		if u.ThrottledUntil.IsZero() {
			fmt.Fprintf(w, "  not throttled\n")
		} else {
			fmt.Fprintf(w, "  throttled until %s (in %s): %s\n", u.ThrottledUntil.Local().Format(time.RFC3339),
				u.ThrottledUntil.Sub(now).Round(time.Second), u.Reason)
		}
		for _, mb := range a.IMAP.Mailboxes {
			s, ok := byName[a.Name+"\x00"+mb]
			lease := leases[postgres.MailboxKey{Account: a.Name, Mailbox: mb}]
			if !ok {
				fmt.Fprintf(w, "  %s: no checkpoint yet (never connected)\n", mb)
				if lease != "" {
					fmt.Fprintf(w, "    %s\n", lease)
				}
				continue
			}
			counts, err := st.MailboxCounts(ctx, a.Name, mb)
			if err != nil {
				return err
			}
			depth := counts[store.StatePending] + counts[store.StateInFlight]
			dead := counts[store.StateDead] + counts[store.StateUnknown] + counts[store.StateHeld]
			fmt.Fprintf(w, "  %s: uidvalidity %d, last uid %d, last activity %s (%s ago); outbox %d (%d in flight), dead letters %d (dead %d, unknown %d, held %d)\n",
				mb, s.Checkpoint.UIDValidity, s.Checkpoint.LastUID, s.UpdatedAt.Local().Format(time.RFC3339),
				now.Sub(s.UpdatedAt).Round(time.Second), depth, counts[store.StateInFlight],
				dead, counts[store.StateDead], counts[store.StateUnknown], counts[store.StateHeld])
			if lease != "" {
				fmt.Fprintf(w, "    %s\n", lease)
			}
		}
	}
	return nil
}

// fmtSize renders n in the config's decimal units.
func fmtSize(n int64) string {
	switch {
	case n >= 1_000_000:
		return fmt.Sprintf("%.1fMB", float64(n)/1e6)
	case n >= 1_000:
		return fmt.Sprintf("%.1fkB", float64(n)/1e3)
	}
	return fmt.Sprintf("%dB", n)
}
