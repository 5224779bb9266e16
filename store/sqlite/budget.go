package sqlite

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/mailhook/mailhook/store"
)

// BudgetBuckets implements store.Budget.
func (s *Store) BudgetBuckets(ctx context.Context, account string, since time.Time) ([]store.BudgetBucket, error) {
	rows, err := s.db.QueryContext(ctx,
		`SELECT start, bytes FROM budget_buckets WHERE account = ? AND start >= ? ORDER BY start`,
		account, since.UnixNano())
	if err != nil {
		return nil, fmt.Errorf("read download budget of %q: %w", account, err)
	}
	defer rows.Close()
	var out []store.BudgetBucket
	for rows.Next() {
		var start, n int64
		if err := rows.Scan(&start, &n); err != nil {
			return nil, fmt.Errorf("read download budget of %q: %w", account, err)
		}
		out = append(out, store.BudgetBucket{Start: time.Unix(0, start).UTC(), Bytes: n})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read download budget of %q: %w", account, err)
	}
	return out, nil
}

// ChargeBudget implements store.Budget.
func (s *Store) ChargeBudget(ctx context.Context, account string, add []store.BudgetBucket, th store.BudgetThrottle, pruneBefore time.Time) error {
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

// BudgetThrottleOf implements store.Budget.
func (s *Store) BudgetThrottleOf(ctx context.Context, account string) (th store.BudgetThrottle, ok bool, err error) {
	var until, updated int64
	err = s.db.QueryRowContext(ctx,
		`SELECT throttled_until, reason, updated_at FROM budget_state WHERE account = ?`, account).
		Scan(&until, &th.Reason, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return store.BudgetThrottle{}, false, nil
	}
	if err != nil {
		return store.BudgetThrottle{}, false, fmt.Errorf("read throttle state of %q: %w", account, err)
	}
	th.Until, th.UpdatedAt = goTime(until), goTime(updated)
	return th, true, nil
}

// MailboxCounts implements store.OutboxAdmin.
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

// reserveBudget implements MailboxWriter.ReserveBudget in one transaction (BEGIN IMMEDIATE: no
// other writer between the sum and the insert).
func (s *Store) reserveBudget(ctx context.Context, account string, n int64, lim store.BudgetLimit, now time.Time) (store.BudgetGrant, error) {
	hold, err := store.BudgetHold(account, n, lim)
	if err != nil {
		return store.BudgetGrant{}, err
	}
	var g store.BudgetGrant
	err = s.withTx(ctx, func(tx *sql.Tx) error {
		at := dbTime(now)
		if _, err := tx.ExecContext(ctx, `DELETE FROM budget_holds WHERE account = ? AND expires_at <= ?`, account, at); err != nil {
			return err
		}
		var uses []store.BudgetUse
		span := int64(lim.Bucket + lim.Window)
		rows, err := tx.QueryContext(ctx, `SELECT start + ?, bytes FROM budget_buckets WHERE account = ? AND start + ? > ?
UNION ALL SELECT expires_at, bytes FROM budget_holds WHERE account = ?`, span, account, span, at, account)
		if err != nil {
			return err
		}
		for rows.Next() {
			var ends, bytes int64
			if err := rows.Scan(&ends, &bytes); err != nil {
				rows.Close()
				return err
			}
			uses = append(uses, store.BudgetUse{Ends: goTime(ends), Bytes: bytes})
		}
		if err := rows.Close(); err != nil {
			return err
		}
		if g = store.DecideBudget(uses, n, lim); !g.Granted {
			return nil
		}
		g.ID = newHoldID()
		_, err = tx.ExecContext(ctx, `INSERT INTO budget_holds (id, account, bytes, expires_at) VALUES (?, ?, ?, ?)`,
			g.ID, account, n, dbTime(now.Add(hold)))
		return err
	})
	if err != nil {
		return store.BudgetGrant{}, fmt.Errorf("reserve download budget of %q: %w", account, err)
	}
	return g, nil
}

// ReserveBudget implements store.Budget (SQLite has no leases: the same as a writer's).
func (s *Store) ReserveBudget(ctx context.Context, account string, n int64, lim store.BudgetLimit, now time.Time) (store.BudgetGrant, error) {
	return s.reserveBudget(ctx, account, n, lim, now)
}

// ReleaseBudget implements store.Budget.
func (s *Store) ReleaseBudget(ctx context.Context, account, id string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM budget_holds WHERE account = ? AND id = ?`, account, id); err != nil {
		return fmt.Errorf("release download budget of %q: %w", account, err)
	}
	return nil
}

// newHoldID returns a fresh budget reservation id.
func newHoldID() string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return "hold_" + hex.EncodeToString(b[:])
}
