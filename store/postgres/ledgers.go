package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/mailhook/mailhook/store"
)

// Scopes of serial_locks rows.
const (
	lockReplies = "replies" // an account's reply ledger, daily cap and pause
	lockBudget  = "budget"  // an account's download budget reservations
)

// lockRow takes, inside tx, the row lock of (scope, key) until tx ends: the check-then-act that
// follows cannot interleave with another replica's under READ COMMITTED.
func lockRow(ctx context.Context, tx pgx.Tx, scope, key string) error {
	if _, err := tx.Exec(ctx, `INSERT INTO serial_locks (scope, key) VALUES ($1, $2)
ON CONFLICT (scope, key) DO UPDATE SET key = excluded.key`, scope, key); err != nil {
		return fmt.Errorf("lock %s of %q: %w", scope, key, err)
	}
	return nil
}

// BudgetBuckets implements store.Budget.
func (s *Store) BudgetBuckets(ctx context.Context, account string, since time.Time) ([]store.BudgetBucket, error) {
	rows, err := s.pool.Query(ctx,
		`SELECT start, bytes FROM budget_buckets WHERE account = $1 AND start >= $2 ORDER BY start`,
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

// ChargeBudget implements store.Budget. It is not fenced: the bytes were downloaded.
func (s *Store) ChargeBudget(ctx context.Context, account string, add []store.BudgetBucket, th store.BudgetThrottle, pruneBefore time.Time) error {
	now := s.now()
	err := s.withTx(ctx, func(tx pgx.Tx) error {
		for _, b := range add {
			if b.Bytes < 0 {
				return fmt.Errorf("negative byte count %d", b.Bytes)
			}
			if b.Bytes == 0 {
				continue
			}
			if _, err := tx.Exec(ctx, `
INSERT INTO budget_buckets (account, start, bytes) VALUES ($1, $2, $3)
ON CONFLICT (account, start) DO UPDATE SET bytes = budget_buckets.bytes + excluded.bytes`,
				account, b.Start.UnixNano(), b.Bytes); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, `
INSERT INTO budget_state (account, throttled_until, reason, updated_at) VALUES ($1, $2, $3, $4)
ON CONFLICT (account) DO UPDATE SET throttled_until = excluded.throttled_until,
	reason = excluded.reason, updated_at = excluded.updated_at`,
			account, dbTime(th.Until), th.Reason, dbTime(now)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `DELETE FROM budget_buckets WHERE account = $1 AND start < $2`,
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
	err = s.pool.QueryRow(ctx,
		`SELECT throttled_until, reason, updated_at FROM budget_state WHERE account = $1`, account).
		Scan(&until, &th.Reason, &updated)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.BudgetThrottle{}, false, nil
	}
	if err != nil {
		return store.BudgetThrottle{}, false, fmt.Errorf("read throttle state of %q: %w", account, err)
	}
	th.Until, th.UpdatedAt = goTime(until), goTime(updated)
	return th, true, nil
}

// reserveBudget implements MailboxWriter.ReserveBudget in w's fenced transaction.
func (s *Store) reserveBudget(ctx context.Context, w *writer, n int64, lim store.BudgetLimit, now time.Time) (store.BudgetGrant, error) {
	var g store.BudgetGrant
	err := w.fenced(ctx, func(tx pgx.Tx) error {
		var err error
		g, err = reserveIn(ctx, tx, w.account, n, lim, now)
		return err
	})
	if err != nil {
		return store.BudgetGrant{}, fmt.Errorf("reserve download budget of %q: %w", w.account, err)
	}
	return g, nil
}

// ReserveBudget implements store.Budget: the reservation of a process that holds no lease.
func (s *Store) ReserveBudget(ctx context.Context, account string, n int64, lim store.BudgetLimit, now time.Time) (store.BudgetGrant, error) {
	var g store.BudgetGrant
	err := s.withTx(ctx, func(tx pgx.Tx) error {
		var err error
		g, err = reserveIn(ctx, tx, account, n, lim, now)
		return err
	})
	if err != nil {
		return store.BudgetGrant{}, fmt.Errorf("reserve download budget of %q: %w", account, err)
	}
	return g, nil
}

// reserveIn decides and records a reservation of n bytes of account's budget in tx, serialised
// with every other reservation of the account by a row lock.
func reserveIn(ctx context.Context, tx pgx.Tx, account string, n int64, lim store.BudgetLimit, now time.Time) (store.BudgetGrant, error) {
	hold, err := store.BudgetHold(account, n, lim)
	if err != nil {
		return store.BudgetGrant{}, err
	}
	if err := lockRow(ctx, tx, lockBudget, account); err != nil {
		return store.BudgetGrant{}, err
	}
	at := dbTime(now)
	if _, err := tx.Exec(ctx, `DELETE FROM budget_holds WHERE account = $1 AND expires_at <= $2`, account, at); err != nil {
		return store.BudgetGrant{}, err
	}
	span := int64(lim.Bucket + lim.Window)
	rows, err := tx.Query(ctx, `SELECT start + $1, bytes FROM budget_buckets WHERE account = $2 AND start + $1 > $3
UNION ALL SELECT expires_at, bytes FROM budget_holds WHERE account = $2`, span, account, at)
	if err != nil {
		return store.BudgetGrant{}, err
	}
	uses, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.BudgetUse, error) {
		var ends, bytes int64
		err := r.Scan(&ends, &bytes)
		return store.BudgetUse{Ends: goTime(ends), Bytes: bytes}, err
	})
	if err != nil {
		return store.BudgetGrant{}, err
	}
	g := store.DecideBudget(uses, n, lim)
	if !g.Granted {
		return g, nil
	}
	g.ID = newHoldID()
	_, err = tx.Exec(ctx, `INSERT INTO budget_holds (id, account, bytes, expires_at) VALUES ($1, $2, $3, $4)`,
		g.ID, account, n, dbTime(now.Add(hold)))
	return g, err
}

// ReleaseBudget implements store.Budget.
func (s *Store) ReleaseBudget(ctx context.Context, account, id string) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM budget_holds WHERE account = $1 AND id = $2`, account, id); err != nil {
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

// ReserveReply implements store.Replies, holding the account's reply lock for the whole decision:
// two replicas never both reserve a reply for one sender, nor both take the last one of the cap.
func (s *Store) ReserveReply(ctx context.Context, k store.ReplyKey, messageID string, oncePer time.Duration, perDay int, now time.Time) (store.Reservation, error) {
	k, err := store.CheckReplyRequest(k, messageID, oncePer)
	if err != nil {
		return store.Reservation{}, err
	}
	var res store.Reservation
	err = s.withTx(ctx, func(tx pgx.Tx) error {
		res = store.Reservation{}
		if err := lockRow(ctx, tx, lockReplies, k.Account); err != nil {
			return err
		}
		n := dbTime(now)
		if _, err := tx.Exec(ctx, `DELETE FROM reply_ledger WHERE expires_at <= $1`, n); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM reply_sends WHERE sent_at < $1`, dbTime(now.Add(-store.OwnReplyTTL))); err != nil {
			return err
		}
		var one int
		err := tx.QueryRow(ctx, `SELECT 1 FROM reply_ledger WHERE account = $1 AND sender = $2 AND reply = $3`,
			k.Account, k.Sender, k.Reply).Scan(&one)
		switch {
		case err == nil:
			res.Status = store.ReplyDuplicate
			return nil
		case !errors.Is(err, pgx.ErrNoRows):
			return err
		}
		var until int64
		err = tx.QueryRow(ctx, `SELECT until FROM reply_pauses WHERE account = $1 AND until > $2`, k.Account, n).Scan(&until)
		switch {
		case err == nil:
			res.Status, res.Until = store.ReplyPaused, goTime(until)
			return nil
		case !errors.Is(err, pgx.ErrNoRows):
			return err
		}
		var oldest int64
		if err := tx.QueryRow(ctx, `SELECT count(*), coalesce(min(sent_at), 0) FROM reply_sends WHERE account = $1 AND sent_at > $2`,
			k.Account, dbTime(now.Add(-store.ReplyWindow))).Scan(&res.Sent, &oldest); err != nil {
			return err
		}
		if capped, over := store.ReplyCapped(res.Sent, perDay, goTime(oldest)); over {
			res = capped
			return nil
		}
		if _, err := tx.Exec(ctx, `INSERT INTO reply_ledger (account, sender, reply, sent_at, expires_at, message_id)
VALUES ($1, $2, $3, $4, $5, $6)`, k.Account, k.Sender, k.Reply, n, dbTime(now.Add(oncePer)), messageID); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO reply_sends (message_id, account, sent_at) VALUES ($1, $2, $3)
ON CONFLICT (message_id) DO UPDATE SET account = excluded.account, sent_at = excluded.sent_at`,
			messageID, k.Account, n); err != nil {
			return err
		}
		res.Status = store.ReplyReserved
		return nil
	})
	if err != nil {
		return store.Reservation{}, fmt.Errorf("reserve reply %q of account %q: %w", k.Reply, k.Account, err)
	}
	return res, nil
}

// ReleaseReply implements store.Replies.
func (s *Store) ReleaseReply(ctx context.Context, k store.ReplyKey, messageID string) error {
	k.Sender = strings.ToLower(k.Sender)
	err := s.withTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM reply_ledger WHERE account = $1 AND sender = $2 AND reply = $3 AND message_id = $4`,
			k.Account, k.Sender, k.Reply, messageID); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `DELETE FROM reply_sends WHERE message_id = $1`, messageID)
		return err
	})
	if err != nil {
		return fmt.Errorf("release reply %q of account %q: %w", k.Reply, k.Account, err)
	}
	return nil
}

// Replied implements store.Replies.
func (s *Store) Replied(ctx context.Context, k store.ReplyKey, now time.Time) (bool, error) {
	var one int
	err := s.pool.QueryRow(ctx, `SELECT 1 FROM reply_ledger WHERE account = $1 AND sender = $2 AND reply = $3 AND expires_at > $4`,
		k.Account, strings.ToLower(k.Sender), k.Reply, dbTime(now)).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("look up reply ledger of account %q: %w", k.Account, err)
	}
	return true, nil
}

// PauseReplies implements store.Replies.
func (s *Store) PauseReplies(ctx context.Context, account string, now time.Time, reason string) (time.Time, error) {
	var until int64
	err := s.withTx(ctx, func(tx pgx.Tx) error {
		var oldest *int64
		if err := tx.QueryRow(ctx, `SELECT min(sent_at) FROM reply_sends WHERE account = $1 AND sent_at > $2`,
			account, dbTime(now.Add(-store.ReplyWindow))).Scan(&oldest); err != nil {
			return err
		}
		end := now.Add(store.ReplyWindow)
		if oldest != nil {
			end = goTime(*oldest).Add(store.ReplyWindow)
		}
		if least := now.Add(store.ReplyPauseMin); end.Before(least) {
			end = least
		}
		return tx.QueryRow(ctx, `INSERT INTO reply_pauses (account, until, reason) VALUES ($1, $2, $3)
ON CONFLICT (account) DO UPDATE SET until = greatest(reply_pauses.until, excluded.until), reason = excluded.reason
RETURNING until`, account, dbTime(end), reason).Scan(&until)
	})
	if err != nil {
		return time.Time{}, fmt.Errorf("pause replies of account %q: %w", account, err)
	}
	return goTime(until), nil
}

// RepliesPaused implements store.Replies.
func (s *Store) RepliesPaused(ctx context.Context, account string, now time.Time) (until time.Time, ok bool, err error) {
	var u int64
	err = s.pool.QueryRow(ctx, `SELECT until FROM reply_pauses WHERE account = $1 AND until > $2`, account, dbTime(now)).Scan(&u)
	if errors.Is(err, pgx.ErrNoRows) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, fmt.Errorf("read reply pause of account %q: %w", account, err)
	}
	return goTime(u), true, nil
}

// RepliesSent implements store.Replies.
func (s *Store) RepliesSent(ctx context.Context, account string, now time.Time) (int, error) {
	var n int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM reply_sends WHERE account = $1 AND sent_at > $2`,
		account, dbTime(now.Add(-store.ReplyWindow))).Scan(&n); err != nil {
		return 0, fmt.Errorf("count replies of account %q: %w", account, err)
	}
	return n, nil
}

// OwnReply implements store.Replies.
func (s *Store) OwnReply(ctx context.Context, messageID string) (bool, error) {
	if messageID == "" {
		return false, nil
	}
	var one int
	err := s.pool.QueryRow(ctx, `SELECT 1 FROM reply_sends WHERE message_id = $1`, messageID).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("look up own reply ids: %w", err)
	}
	return true, nil
}

// Endpoints implements store.Endpoints.
func (s *Store) Endpoints(ctx context.Context) ([]store.EndpointState, error) {
	rows, err := s.pool.Query(ctx,
		`SELECT name, disabled_at, reason, failing_since, updated_at FROM endpoints ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list endpoints: %w", err)
	}
	defer rows.Close()
	var out []store.EndpointState
	for rows.Next() {
		var e store.EndpointState
		var disabled, failing, updated int64
		if err := rows.Scan(&e.Name, &disabled, &e.Reason, &failing, &updated); err != nil {
			return nil, fmt.Errorf("list endpoints: %w", err)
		}
		e.DisabledAt, e.FailingSince, e.UpdatedAt = goTime(disabled), goTime(failing), goTime(updated)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list endpoints: %w", err)
	}
	return out, nil
}

// Endpoint implements store.Endpoints.
func (s *Store) Endpoint(ctx context.Context, name string) (store.EndpointState, error) {
	e := store.EndpointState{Name: name}
	var disabled, failing, updated int64
	err := s.pool.QueryRow(ctx,
		`SELECT disabled_at, reason, failing_since, updated_at FROM endpoints WHERE name = $1`, name).
		Scan(&disabled, &e.Reason, &failing, &updated)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return e, nil
	case err != nil:
		return e, fmt.Errorf("read endpoint %q: %w", name, err)
	}
	e.DisabledAt, e.FailingSince, e.UpdatedAt = goTime(disabled), goTime(failing), goTime(updated)
	return e, nil
}

// SetEndpointFailing implements store.Endpoints.
func (s *Store) SetEndpointFailing(ctx context.Context, name string, since time.Time) error {
	_, err := s.pool.Exec(ctx, `
INSERT INTO endpoints (name, disabled_at, reason, failing_since, updated_at) VALUES ($1, 0, '', $2, $3)
ON CONFLICT (name) DO UPDATE SET failing_since = excluded.failing_since, updated_at = excluded.updated_at`,
		name, dbTime(since), dbTime(s.now()))
	if err != nil {
		return fmt.Errorf("record endpoint %q failing: %w", name, err)
	}
	return nil
}

// DisableEndpoint implements store.Endpoints.
func (s *Store) DisableEndpoint(ctx context.Context, name, reason string, at time.Time) (int, error) {
	var held int64
	err := s.withTx(ctx, func(tx pgx.Tx) error {
		now := dbTime(s.now())
		if _, err := tx.Exec(ctx, `
INSERT INTO endpoints (name, disabled_at, reason, failing_since, updated_at) VALUES ($1, $2, $3, 0, $4)
ON CONFLICT (name) DO UPDATE SET
	disabled_at = CASE WHEN endpoints.disabled_at = 0 THEN excluded.disabled_at ELSE endpoints.disabled_at END,
	reason      = CASE WHEN endpoints.disabled_at = 0 THEN excluded.reason ELSE endpoints.reason END,
	updated_at  = excluded.updated_at`,
			name, dbTime(at), reason, now); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `UPDATE jobs SET state = 'held', updated_at = $1
WHERE kind = 'webhook' AND target = $2 AND state = 'pending'`, now, name)
		if err != nil {
			return err
		}
		held = tag.RowsAffected()
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("disable endpoint %q: %w", name, err)
	}
	return int(held), nil
}

// EnableEndpoint implements store.Endpoints.
func (s *Store) EnableEndpoint(ctx context.Context, name string, now time.Time) (int, error) {
	var released int64
	err := s.withTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE endpoints
SET disabled_at = 0, reason = '', failing_since = 0, updated_at = $1 WHERE name = $2`, dbTime(s.now()), name); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `UPDATE jobs SET state = 'pending', next_at = $1, updated_at = $1
WHERE kind = 'webhook' AND target = $2 AND state = 'held'`, dbTime(now), name)
		if err != nil {
			return err
		}
		released = tag.RowsAffected()
		if released > 0 {
			return notifyOutboxTx(ctx, tx)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("enable endpoint %q: %w", name, err)
	}
	if released > 0 {
		s.broadcastLocal()
	}
	return int(released), nil
}
