package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/mailhook/mailhook/config"
	"github.com/mailhook/mailhook/store"
	"github.com/mailhook/mailhook/store/postgres"
	"github.com/mailhook/mailhook/store/sqlite"
)

// sqliteFile is the SQLite backend's database in the state directory: a daemon starting on an
// empty PostgreSQL store while it exists refuses, so an install is not moved by accident.
const sqliteFile = "mailhook.db"

// postgresOpenTimeout bounds connecting to PostgreSQL and migrating at start.
const postgresOpenTimeout = 30 * time.Second

// openPostgres opens the PostgreSQL store of cfg. The daemon refuses an empty store while the state
// directory holds an SQLite database: starting there would skip the mail that arrived meanwhile
// (start: new) and leave the pending jobs behind.
func openPostgres(ctx context.Context, cfg *config.Config, tool bool) (*postgres.Store, error) {
	octx, cancel := context.WithTimeout(ctx, postgresOpenTimeout)
	defer cancel()
	st, err := postgres.Open(octx, cfg.Store.DSN, store.Options{Shared: tool},
		postgres.Options{Lease: postgres.LeaseOptions{TTL: cfg.Store.LeaseTTL}})
	if err != nil {
		return nil, err
	}
	if tool {
		return st, nil
	}
	if _, err := os.Stat(filepath.Join(cfg.StateDir, sqliteFile)); err == nil {
		empty, err := st.Empty(octx)
		if err == nil && empty {
			err = errors.New("the PostgreSQL store is empty but " + filepath.Join(cfg.StateDir, sqliteFile) +
				" holds an SQLite state: move it first with `mailhook store copy --config FILE` (or remove the file to start afresh)")
		}
		if err != nil {
			st.Close()
			return nil, err
		}
	}
	return st, nil
}

// openConfiguredStore opens the state store the configuration selects (see openStore):
// SQLite under the state directory, or PostgreSQL shared by every replica, where a verb (tool true)
// migrates nothing.
func openConfiguredStore(ctx context.Context, cfg *config.Config, tool bool) (store.Backend, error) {
	if cfg.Store.Driver != config.DriverPostgres {
		return openStore(ctx, cfg.StateDir, tool)
	}
	st, err := openPostgres(ctx, cfg, tool)
	if err != nil {
		return nil, err
	}
	return recoverAtOpen(ctx, st)
}

// openStore opens the SQLite state store under the state directory dir: with openPostgres, the
// only places that name a store backend. The daemon (tool false) owns the directory; a verb (tool
// true) opens it shared, so it works beside a running daemon. Either way the in-flight jobs whose
// claims are known to be abandoned are recovered at once (see recoverJobs), so a verb run after a
// crash shows the outbox as the next daemon will see it; a running daemon's live claims are never
// touched.
func openStore(ctx context.Context, dir string, tool bool) (store.Backend, error) {
	st, err := sqlite.Open(dir, store.Options{Shared: tool})
	if err != nil {
		return nil, err
	}
	return recoverAtOpen(ctx, st)
}

// recoverAtOpen recovers the abandoned in-flight jobs of a store just opened (closing it on error).
func recoverAtOpen(ctx context.Context, st store.Backend) (store.Backend, error) {
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

// blobsOf is where a store shared by replicas keeps inline attachments; nil: the state directory.
func blobsOf(st store.Backend) store.Blobs { b, _ := st.(store.Blobs); return b }
