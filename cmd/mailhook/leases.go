package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/mailhook/mailhook/internal/ops"
	"github.com/mailhook/mailhook/store"
	"github.com/mailhook/mailhook/store/postgres"
	"github.com/mailhook/mailhook/watcher"
)

// leasedMailbox is a mailbox of a replica sharing a PostgreSQL store: it has a watcher only while
// this replica holds the mailbox's lease.
type leasedMailbox struct {
	cfg     watcher.Config
	handler watcher.Handler
	slot    *watcher.Leased
}

// runLeased competes for the leases of the configured mailboxes until ctx is done and runs a
// watcher for each lease while it is held. It returns an error only when this replica must stop: a
// newer mailhook has migrated the database past it.
func (a *app) runLeased(ctx context.Context) error {
	want := make([]postgres.MailboxKey, 0, len(a.leased))
	for k := range a.leased {
		want = append(want, k)
	}
	err := a.leases.Run(ctx, want, func(ctx context.Context, h postgres.Held) {
		lm := a.leased[h.MailboxKey]
		if lm == nil {
			return
		}
		log := a.logger.With("account", h.Account, "mailbox", h.Mailbox)
		mw, err := mailboxWriter(a.store, h.Account, h.Mailbox)
		if err != nil {
			log.Warn("mailbox lease held but no writer", "err", err)
			return
		}
		wc := lm.cfg
		wc.PostActions = mw // mark_seen, flag, move, copy of this mailbox
		w, err := watcher.New(wc, mw, lm.handler)
		if err != nil {
			log.Error("cannot start the watcher", "err", err)
			return
		}
		if err := lm.slot.Run(ctx, w); errors.Is(err, store.ErrLeaseLost) {
			a.leases.Lost(h) // the watcher stopped at once; give the lease up before its renewal
		} else if err != nil && !errors.Is(err, context.Canceled) {
			log.Warn("watcher stopped", "err", err)
		}
	})
	if err != nil {
		return fmt.Errorf("mailbox leases: %w", err)
	}
	return nil
}

// leaseCounts reads the lease manager's counters for the metrics; nil without one.
func leaseCounts(l *postgres.Leases) func() ops.LeaseCounts {
	if l == nil {
		return nil
	}
	return func() ops.LeaseCounts { return ops.LeaseCounts(l.Stats()) }
}
