package main

import (
	"context"
	"fmt"
	"time"

	"github.com/mailhook/mailhook/store"
	"github.com/mailhook/mailhook/store/sqlite"
)

// openStore opens the state store under the state directory dir: the one place that names a
// store backend. The daemon (tool false) owns the directory; a verb (tool true) opens it shared, so
// it works beside a running daemon. Either way the in-flight jobs whose claims are known to be
// abandoned are recovered at once (see recoverJobs), so a verb run after a crash shows the outbox
// as the next daemon will see it; a running daemon's live claims are never touched.
func openStore(ctx context.Context, dir string, tool bool) (store.Backend, error) {
	st, err := sqlite.Open(dir, store.Options{Shared: tool})
	if err != nil {
		return nil, err
	}
	if _, err := st.Recover(ctx, time.Now()); err != nil {
		st.Close()
		return nil, err
	}
	return st, nil
}

// recoverEvery is how often the daemon recovers expired claims (Recover): twice per claim TTL,
// so an abandoned claim waits at most one and a half TTLs.
const recoverEvery = store.DefaultClaimTTL / 2

// recoverJobs recovers the outbox's expired claims every recoverEvery until ctx is done,
// logging a failure once per streak and the jobs it settled.
func (a *app) recoverJobs(ctx context.Context) {
	t := time.NewTicker(recoverEvery)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, err := a.store.Recover(ctx, time.Now())
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			failing = true
			a.logger.Warn("could not recover abandoned outbox jobs", "err", err)
		case err == nil:
			failing = false
			if n > 0 {
				a.logger.Info("recovered abandoned outbox jobs", "jobs", n)
			}
		}
	}
}

// mailboxWriter returns the store's writer of (account, mailbox) for its watcher.
func mailboxWriter(st store.Backend, account, mailbox string) (store.MailboxWriter, error) {
	w, err := st.Mailbox(context.Background(), account, mailbox)
	if err != nil {
		return nil, fmt.Errorf("account %q mailbox %q: %w", account, mailbox, err)
	}
	return w, nil
}
