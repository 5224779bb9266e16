package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// The budget ledger: the bytes each account downloaded over IMAP, in time buckets (one row per
// account and bucket start, e.g. per minute, not one per fetch), and the account's last throttle
// decision, so that a restart neither resets the rolling 24-hour download budget nor forgets why
// the account was paused. The watcher keeps the window in memory and writes deltas behind.

// BudgetBucket is the number of bytes read from an account's IMAP server during the bucket that
// starts at Start. Its width is the caller's (the watcher uses one minute).
type BudgetBucket struct {
	Start time.Time
	Bytes int64
}

// BudgetThrottle is an account's last throttle decision: the account may fetch again at Until
// (zero when it is not throttled), for Reason.
type BudgetThrottle struct {
	Until     time.Time
	Reason    string
	UpdatedAt time.Time
}

// BudgetBuckets returns the buckets of account starting at or after since, oldest first.
func (s *Store) BudgetBuckets(ctx context.Context, account string, since time.Time) ([]BudgetBucket, error) {
	rows, err := s.db.QueryContext(ctx,
		`SELECT start, bytes FROM budget_buckets WHERE account = ? AND start >= ? ORDER BY start`,
		account, since.UnixNano())
	if err != nil {
		return nil, fmt.Errorf("read download budget of %q: %w", account, err)
	}
	defer rows.Close()
	var out []BudgetBucket
	for rows.Next() {
		var start, n int64
		if err := rows.Scan(&start, &n); err != nil {
			return nil, fmt.Errorf("read download budget of %q: %w", account, err)
		}
		out = append(out, BudgetBucket{Start: time.Unix(0, start).UTC(), Bytes: n})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read download budget of %q: %w", account, err)
	}
	return out, nil
}

// AddBudget records, in one transaction, the bytes of add on top of what the buckets of account
// already hold (add carries deltas since the last call, so concurrent writers never lose each
// other's bytes), sets the account's throttle decision to th, and deletes the account's buckets
// that start before pruneBefore (outside any window the caller still needs).
func (s *Store) AddBudget(ctx context.Context, account string, add []BudgetBucket, th BudgetThrottle, pruneBefore time.Time) error {
	now := s.now()
	err := s.withTx(ctx, func(tx *sql.Tx) error {
		for _, b := range add {
			if b.Bytes < 0 {
				return fmt.Errorf("negative byte count %d", b.Bytes)
			}
			if b.Bytes == 0 {
				continue
			}
			if _, err := tx.ExecContext(ctx, `
INSERT INTO budget_buckets (account, start, bytes) VALUES (?, ?, ?)
ON CONFLICT (account, start) DO UPDATE SET bytes = bytes + excluded.bytes`,
				account, b.Start.UnixNano(), b.Bytes); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `
INSERT INTO budget_state (account, throttled_until, reason, updated_at) VALUES (?, ?, ?, ?)
ON CONFLICT (account) DO UPDATE SET throttled_until = excluded.throttled_until,
	reason = excluded.reason, updated_at = excluded.updated_at`,
			account, dbTime(th.Until), th.Reason, dbTime(now)); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM budget_buckets WHERE account = ? AND start < ?`,
			account, pruneBefore.UnixNano())
		return err
	})
	if err != nil {
		return fmt.Errorf("record download budget of %q: %w", account, err)
	}
	return nil
}

// BudgetThrottleOf returns the last throttle decision recorded for account; ok is false when none
// was ever recorded.
func (s *Store) BudgetThrottleOf(ctx context.Context, account string) (th BudgetThrottle, ok bool, err error) {
	var until, updated int64
	err = s.db.QueryRowContext(ctx,
		`SELECT throttled_until, reason, updated_at FROM budget_state WHERE account = ?`, account).
		Scan(&until, &th.Reason, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return BudgetThrottle{}, false, nil
	}
	if err != nil {
		return BudgetThrottle{}, false, fmt.Errorf("read throttle state of %q: %w", account, err)
	}
	th.Until, th.UpdatedAt = goTime(until), goTime(updated)
	return th, true, nil
}

// MailboxState is what the status verb shows of one (account, mailbox) from the store.
type MailboxState struct {
	Account, Mailbox string
	Checkpoint       Checkpoint
	// UpdatedAt is when the checkpoint last moved: the last message processed (or the first run).
	UpdatedAt time.Time
}

// Mailboxes lists every (account, mailbox) that has a checkpoint, ordered by account and mailbox.
func (s *Store) Mailboxes(ctx context.Context) ([]MailboxState, error) {
	rows, err := s.db.QueryContext(ctx, `
SELECT account, mailbox, uidvalidity, last_uid, last_internaldate, updated_at
FROM checkpoints ORDER BY account, mailbox`)
	if err != nil {
		return nil, fmt.Errorf("list checkpoints: %w", err)
	}
	defer rows.Close()
	var out []MailboxState
	for rows.Next() {
		var m MailboxState
		var v, uid, date, updated int64
		if err := rows.Scan(&m.Account, &m.Mailbox, &v, &uid, &date, &updated); err != nil {
			return nil, fmt.Errorf("list checkpoints: %w", err)
		}
		m.Checkpoint = Checkpoint{UIDValidity: uint32(v), LastUID: uint32(uid), LastInternalDate: goTime(date)}
		m.UpdatedAt = goTime(updated)
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list checkpoints: %w", err)
	}
	return out, nil
}

// MailboxCounts returns, for (account, mailbox), how many outbox jobs are in each state.
func (s *Store) MailboxCounts(ctx context.Context, account, mailbox string) (map[string]int, error) {
	rows, err := s.db.QueryContext(ctx,
		`SELECT state, COUNT(*) FROM jobs WHERE account = ? AND mailbox = ? GROUP BY state`, account, mailbox)
	if err != nil {
		return nil, fmt.Errorf("count jobs of %q/%q: %w", account, mailbox, err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var state string
		var n int
		if err := rows.Scan(&state, &n); err != nil {
			return nil, fmt.Errorf("count jobs of %q/%q: %w", account, mailbox, err)
		}
		out[state] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("count jobs of %q/%q: %w", account, mailbox, err)
	}
	return out, nil
}
