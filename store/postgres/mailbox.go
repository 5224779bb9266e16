package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/mailhook/mailhook/store"
)

// writer is the store.MailboxWriter of one (account, mailbox), carrying the epoch of the lease
// this replica held when it was made: every write is fenced on it (store.ErrLeaseLost once another
// replica has taken the mailbox over).
type writer struct {
	s                *Store
	account, mailbox string
	epoch            int64
}

var _ store.MailboxWriter = (*writer)(nil)

// Mailbox implements store.Mailboxes. The writer carries the lease this replica holds on the
// mailbox now (Leases.Run or Leases.Acquire); without one it fails with store.ErrLeaseLost.
func (s *Store) Mailbox(_ context.Context, account, mailbox string) (store.MailboxWriter, error) {
	if account == "" || mailbox == "" {
		return nil, fmt.Errorf("open mailbox writer: empty account or mailbox (%q, %q)", account, mailbox)
	}
	epoch, ok := s.leases.Epoch(account, mailbox)
	if !ok {
		return nil, fmt.Errorf("open mailbox writer of %q/%q: this replica holds no lease on it: %w", account, mailbox, store.ErrLeaseLost)
	}
	return &writer{s: s, account: account, mailbox: mailbox, epoch: epoch}, nil
}

// fenced runs fn in a transaction fenced on the writer's lease.
func (w *writer) fenced(ctx context.Context, fn func(pgx.Tx) error) error {
	return w.s.fenced(ctx, w.account, w.mailbox, w.epoch, fn)
}

func (w *writer) Checkpoint(ctx context.Context) (store.Checkpoint, bool, error) {
	return w.s.Checkpoint(ctx, w.account, w.mailbox)
}

func (w *writer) Seen(ctx context.Context, key string) (bool, error) {
	return w.s.seen(ctx, w.account, w.mailbox, key)
}

func (w *writer) ResetCheckpoint(ctx context.Context, cp store.Checkpoint) error {
	return w.s.resetCheckpoint(ctx, w, cp)
}

func (w *writer) Commit(ctx context.Context, batch []store.Commit) error {
	return w.s.commit(ctx, w, batch)
}

func (w *writer) BeginFetch(ctx context.Context, r store.FetchRange) error {
	return w.s.beginFetch(ctx, w, r)
}

func (w *writer) EndFetch(ctx context.Context) error { return w.s.endFetch(ctx, w) }

func (w *writer) UnfinishedFetch(ctx context.Context) (store.FetchRange, bool, error) {
	return w.s.unfinishedFetch(ctx, w.account, w.mailbox)
}

func (w *writer) StrikeFetch(ctx context.Context, uidvalidity, uid uint32, reason string) (int, error) {
	return w.s.strikeFetch(ctx, w, uidvalidity, uid, reason)
}

func (w *writer) FetchStrikes(ctx context.Context, uidvalidity, uid uint32) (int, error) {
	return w.s.fetchStrikes(ctx, w.account, w.mailbox, uidvalidity, uid)
}

func (w *writer) ReserveBudget(ctx context.Context, n int64, lim store.BudgetLimit, now time.Time) (store.BudgetGrant, error) {
	return w.s.reserveBudget(ctx, w, n, lim, now)
}

// Claim claims the mailbox's post-actions in a fenced transaction: only the lease holder runs them.
func (w *writer) Claim(ctx context.Context, sel store.Selector, now time.Time, max int) ([]store.Job, error) {
	sel, err := store.MailboxPostActions(sel, w.account, w.mailbox)
	if err != nil {
		return nil, err
	}
	if max <= 0 {
		return nil, nil
	}
	var jobs []store.Job
	err = w.fenced(ctx, func(tx pgx.Tx) error {
		var err error
		jobs, err = w.s.claim(ctx, tx, sel, now, max)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("claim post-actions of %q/%q: %w", w.account, w.mailbox, err)
	}
	return jobs, nil
}

func (w *writer) NextDue(ctx context.Context, sel store.Selector) (time.Time, bool, error) {
	sel, err := store.MailboxPostActions(sel, w.account, w.mailbox)
	if err != nil {
		return time.Time{}, false, err
	}
	return w.s.NextDue(ctx, sel)
}

// Finish settles one of the mailbox's post-actions in a fenced transaction.
func (w *writer) Finish(ctx context.Context, id, state string, nextAt time.Time, a store.Attempt) error {
	var woke bool
	err := w.fenced(ctx, func(tx pgx.Tx) error {
		var kind, account, mailbox string
		err := tx.QueryRow(ctx, `SELECT kind, account, mailbox FROM jobs WHERE id = $1`, id).Scan(&kind, &account, &mailbox)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return fmt.Errorf("finish job %s: %w", id, store.ErrNotFound)
		case err != nil:
			return fmt.Errorf("finish job %s: %w", id, err)
		case kind != store.KindPostAction || account != w.account || mailbox != w.mailbox:
			return fmt.Errorf("finish job %s: not a post-action of %q/%q: %w", id, w.account, w.mailbox, store.ErrState)
		}
		woke, err = w.s.finish(ctx, tx, id, state, nextAt, a)
		return err
	})
	if err != nil {
		return err
	}
	if woke {
		w.s.broadcastLocal()
	}
	return nil
}

func (w *writer) Wake() <-chan struct{} { return w.s.Wake() }

func (w *writer) Heartbeat(ctx context.Context, now time.Time) error { return w.s.Heartbeat(ctx, now) }
