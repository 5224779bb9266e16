package sqlite

import (
	"context"
	"fmt"
	"time"

	"github.com/mailhook/mailhook/store"
)

// writer is the store.MailboxWriter of one (account, mailbox). The directory lock is the lease of
// every mailbox, so it never fences anything.
type writer struct {
	s                *Store
	account, mailbox string
}

var _ store.MailboxWriter = (*writer)(nil)

// Mailbox implements store.Mailboxes.
func (s *Store) Mailbox(_ context.Context, account, mailbox string) (store.MailboxWriter, error) {
	if account == "" || mailbox == "" {
		return nil, fmt.Errorf("open mailbox writer: empty account or mailbox (%q, %q)", account, mailbox)
	}
	return &writer{s: s, account: account, mailbox: mailbox}, nil
}

func (w *writer) Checkpoint(ctx context.Context) (store.Checkpoint, bool, error) {
	return w.s.Checkpoint(ctx, w.account, w.mailbox)
}

func (w *writer) Seen(ctx context.Context, key string) (bool, error) {
	return w.s.seen(ctx, w.account, w.mailbox, key)
}

func (w *writer) ResetCheckpoint(ctx context.Context, cp store.Checkpoint) error {
	return w.s.resetCheckpoint(ctx, w.account, w.mailbox, cp)
}

func (w *writer) Commit(ctx context.Context, batch []store.Commit) error {
	return w.s.commit(ctx, w.account, w.mailbox, batch)
}

func (w *writer) BeginFetch(ctx context.Context, r store.FetchRange) error {
	return w.s.beginFetch(ctx, w.account, w.mailbox, r)
}

func (w *writer) EndFetch(ctx context.Context) error {
	return w.s.endFetch(ctx, w.account, w.mailbox)
}

func (w *writer) UnfinishedFetch(ctx context.Context) (store.FetchRange, bool, error) {
	return w.s.unfinishedFetch(ctx, w.account, w.mailbox)
}

func (w *writer) StrikeFetch(ctx context.Context, uidvalidity, uid uint32, reason string) (int, error) {
	return w.s.strikeFetch(ctx, w.account, w.mailbox, uidvalidity, uid, reason)
}

func (w *writer) FetchStrikes(ctx context.Context, uidvalidity, uid uint32) (int, error) {
	return w.s.fetchStrikes(ctx, w.account, w.mailbox, uidvalidity, uid)
}

func (w *writer) ReserveBudget(ctx context.Context, n int64, lim store.BudgetLimit, now time.Time) (store.BudgetGrant, error) {
	return w.s.reserveBudget(ctx, w.account, n, lim, now)
}

func (w *writer) Claim(ctx context.Context, sel store.Selector, now time.Time, max int) ([]store.Job, error) {
	sel, err := store.MailboxPostActions(sel, w.account, w.mailbox)
	if err != nil {
		return nil, err
	}
	return w.s.Claim(ctx, sel, now, max)
}

func (w *writer) NextDue(ctx context.Context, sel store.Selector) (time.Time, bool, error) {
	sel, err := store.MailboxPostActions(sel, w.account, w.mailbox)
	if err != nil {
		return time.Time{}, false, err
	}
	return w.s.NextDue(ctx, sel)
}

// Finish settles one of the mailbox's post-actions. The check that the job is one reads it first;
// post-actions are few, so the extra lookup costs nothing that matters.
func (w *writer) Finish(ctx context.Context, id, state string, nextAt time.Time, a store.Attempt) error {
	var kind, account, mailbox string
	err := w.s.db.QueryRowContext(ctx, `SELECT kind, account, mailbox FROM jobs WHERE id = ?`, id).Scan(&kind, &account, &mailbox)
	switch {
	case err != nil:
		// Not found (or unreadable): Finish says which, with its usual wrapping.
	case kind != store.KindPostAction || account != w.account || mailbox != w.mailbox:
		return fmt.Errorf("finish job %s: not a post-action of %q/%q: %w", id, w.account, w.mailbox, store.ErrState)
	}
	return w.s.Finish(ctx, id, state, nextAt, a)
}

func (w *writer) Wake() <-chan struct{} { return w.s.Wake() }

func (w *writer) Heartbeat(ctx context.Context, now time.Time) error { return w.s.Heartbeat(ctx, now) }
