package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/mailhook/mailhook/config"
	"github.com/mailhook/mailhook/internal/ops"
	"github.com/mailhook/mailhook/store/postgres"
	"github.com/mailhook/mailhook/watcher"
)

// leasedMailbox is a mailbox of a replica sharing a PostgreSQL store: it has a watcher only while
// this replica holds the mailbox's lease, made anew for each lease (its writer carries the lease's
// epoch).
type leasedMailbox struct {
	account config.Account
	mailbox string
	cfg     watcher.Config
	handler watcher.Handler

	mu    sync.Mutex
	cur   *watcher.Watcher // nil while another replica holds the lease
	since time.Time        // when cur last changed
}

// status is the current watcher's status, or standby.
func (m *leasedMailbox) status() watcher.Status {
	m.mu.Lock()
	w, since := m.cur, m.since
	m.mu.Unlock()
	if w == nil {
		return watcher.Status{State: ops.StateStandby, Since: since}
	}
	return w.Status()
}

func (m *leasedMailbox) set(w *watcher.Watcher) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cur, m.since = w, time.Now()
}

// runLeased competes for the leases of the configured mailboxes until ctx is done and runs a
// watcher for each lease while it is held. It returns an error only when this replica must stop: a
// newer mailhook has migrated the database past it.
func (a *app) runLeased(ctx context.Context) error {
	byKey := make(map[postgres.MailboxKey]*leasedMailbox, len(a.leased))
	want := make([]postgres.MailboxKey, 0, len(a.leased))
	for _, lm := range a.leased {
		k := postgres.MailboxKey{Account: lm.account.Name, Mailbox: lm.mailbox}
		byKey[k] = lm
		want = append(want, k)
	}
	err := a.leases.Run(ctx, want, func(ctx context.Context, h postgres.Held) {
		lm := byKey[h.MailboxKey]
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
		lm.set(w)
		defer lm.set(nil)
		if err := w.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
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
