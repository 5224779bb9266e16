package sqlite

// The reply ledger (migration 2): reply_ledger holds one row per (account, lower-cased sender,
// reply) answered, until its once_per period has passed; reply_sends one row per reply handed to
// SMTP, with its Message-ID (the rolling daily count, and recognising our own replies);
// reply_pauses per account a time before which nothing is sent.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mailhook/mailhook/store"
)

// ReserveReply implements store.Replies.
func (s *Store) ReserveReply(ctx context.Context, k store.ReplyKey, messageID string, oncePer time.Duration, perDay int, now time.Time) (store.Reservation, error) {
	k, err := store.CheckReplyRequest(k, messageID, oncePer)
	if err != nil {
		return store.Reservation{}, err
	}
	var res store.Reservation
	err = s.withTx(ctx, func(tx *sql.Tx) error {
		n := dbTime(now)
		if _, err := tx.ExecContext(ctx, `DELETE FROM reply_ledger WHERE expires_at <= ?`, n); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM reply_sends WHERE sent_at < ?`, dbTime(now.Add(-store.OwnReplyTTL))); err != nil {
			return err
		}
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM reply_ledger WHERE account = ? AND sender = ? AND reply = ?`,
			k.Account, k.Sender, k.Reply).Scan(&one)
		switch {
		case err == nil:
			res.Status = store.ReplyDuplicate
			return nil
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		var until int64
		err = tx.QueryRowContext(ctx, `SELECT until FROM reply_pauses WHERE account = ? AND until > ?`, k.Account, n).Scan(&until)
		switch {
		case err == nil:
			res.Status, res.Until = store.ReplyPaused, goTime(until)
			return nil
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		var oldest sql.NullInt64
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*), MIN(sent_at) FROM reply_sends WHERE account = ? AND sent_at > ?`,
			k.Account, dbTime(now.Add(-store.ReplyWindow))).Scan(&res.Sent, &oldest); err != nil {
			return err
		}
		if capped, over := store.ReplyCapped(res.Sent, perDay, goTime(oldest.Int64)); over {
			res = capped
			return nil
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO reply_ledger (account, sender, reply, sent_at, expires_at, message_id)
VALUES (?, ?, ?, ?, ?, ?)`, k.Account, k.Sender, k.Reply, n, dbTime(now.Add(oncePer)), messageID); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO reply_sends (message_id, account, sent_at) VALUES (?, ?, ?)
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
	err := s.withTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM reply_ledger WHERE account = ? AND sender = ? AND reply = ? AND message_id = ?`,
			k.Account, k.Sender, k.Reply, messageID); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM reply_sends WHERE message_id = ?`, messageID)
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
	err := s.db.QueryRowContext(ctx, `SELECT 1 FROM reply_ledger WHERE account = ? AND sender = ? AND reply = ? AND expires_at > ?`,
		k.Account, strings.ToLower(k.Sender), k.Reply, dbTime(now)).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
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
	err := s.withTx(ctx, func(tx *sql.Tx) error {
		var oldest sql.NullInt64
		if err := tx.QueryRowContext(ctx, `SELECT MIN(sent_at) FROM reply_sends WHERE account = ? AND sent_at > ?`,
			account, dbTime(now.Add(-store.ReplyWindow))).Scan(&oldest); err != nil {
			return err
		}
		end := now.Add(store.ReplyWindow)
		if oldest.Valid {
			end = goTime(oldest.Int64).Add(store.ReplyWindow)
		}
		if min := now.Add(store.ReplyPauseMin); end.Before(min) {
			end = min
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO reply_pauses (account, until, reason) VALUES (?, ?, ?)
ON CONFLICT (account) DO UPDATE SET until = MAX(until, excluded.until), reason = excluded.reason`,
			account, dbTime(end), reason); err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, `SELECT until FROM reply_pauses WHERE account = ?`, account).Scan(&until)
	})
	if err != nil {
		return time.Time{}, fmt.Errorf("pause replies of account %q: %w", account, err)
	}
	return goTime(until), nil
}

// RepliesPaused implements store.Replies.
func (s *Store) RepliesPaused(ctx context.Context, account string, now time.Time) (until time.Time, ok bool, err error) {
	var u int64
	err = s.db.QueryRowContext(ctx, `SELECT until FROM reply_pauses WHERE account = ? AND until > ?`, account, dbTime(now)).Scan(&u)
	if errors.Is(err, sql.ErrNoRows) {
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
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM reply_sends WHERE account = ? AND sent_at > ?`,
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
	err := s.db.QueryRowContext(ctx, `SELECT 1 FROM reply_sends WHERE message_id = ?`, messageID).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("look up own reply ids: %w", err)
	}
	return true, nil
}
