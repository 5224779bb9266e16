package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/mailhook/mailhook/internal/ops"
	"github.com/mailhook/mailhook/store"
	"github.com/mailhook/mailhook/store/postgres"
)

// runLeased competes for the leases of the configured mailboxes until ctx is done and runs a
// watcher for each lease while it is held. It returns an error only when this replica must stop: a
// newer mailhook has migrated the database past it.
func (a *app) runLeased(ctx context.Context) error {
	want := make([]postgres.MailboxKey, 0, len(a.leased))
	for k := range a.leased {
		want = append(want, k)
	}
	err := a.leases.Run(ctx, want, func(ctx context.Context, h postgres.Held) {
		mw, err := mailboxWriter(a.store, h.Account, h.Mailbox)
		if err == nil {
			err = a.leased[h.MailboxKey].Run(ctx, mw)
		}
		if errors.Is(err, store.ErrLeaseLost) {
			a.leases.Lost(h) // the watcher stopped at once; give the lease up before its renewal
		} else if err != nil && !errors.Is(err, context.Canceled) {
			a.logger.Warn("watcher stopped", "account", h.Account, "mailbox", h.Mailbox, "err", err)
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
