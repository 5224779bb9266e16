package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Reply bookkeeping (DESIGN "Delivery semantics": auto-replies are at most once per (account,
// sender, reply) per period). Three tables back it, all surviving restarts:
//
//   - reply_ledger: one row per (account, lower-cased sender, reply) that was answered, kept until
//     its once_per period has passed (REQUIREMENTS C52–C53). There is no size cap: the table holds
//     as many entries as there are distinct senders within the period.
//   - reply_sends: one row per reply handed to SMTP, with its Message-ID. Rows of the last
//     [ReplyWindow] make the rolling daily count (C60); rows are kept [OwnReplyTTL] so a reply of
//     ours that shows up in a watched mailbox is recognised (C61).
//   - reply_pauses: per account, a time before which nothing is sent (after a `550 5.4.5` daily
//     sending limit answer, C65).
//
// A reply worker calls [Store.ReserveReply] right before it sends: in one transaction it checks the
// ledger, the pause and the rolling count, and records the send. It calls [Store.ReleaseReply] when
// the server refused the message for certain (nothing was sent), and nothing at all when the
// outcome is unknown: the reservation then stands, and the reply is never sent twice.

// Reply bookkeeping periods.
const (
	// ReplyWindow is the rolling window of the daily reply cap.
	ReplyWindow = 24 * time.Hour
	// OwnReplyTTL is how long the Message-ID of a sent reply is remembered as ours.
	OwnReplyTTL = 30 * 24 * time.Hour
	// ReplyPauseMin is the shortest pause after a daily-limit refusal (see PauseReplies).
	ReplyPauseMin = time.Hour
)

// ReplyKey names one entry of the reply ledger. Sender is compared lower-cased.
type ReplyKey struct {
	Account string
	Sender  string
	Reply   string
}

// Outcomes of [Store.ReserveReply].
const (
	ReplyReserved  = "reserved"  // recorded; send it now
	ReplyDuplicate = "duplicate" // the sender got this reply within once_per: do not send
	ReplyOverCap   = "over_cap"  // the account's rolling daily cap is reached: try again at Until
	ReplyPaused    = "paused"    // the account's sending is paused: try again at Until
)

// Reservation is the answer of [Store.ReserveReply].
type Reservation struct {
	Status string    // one of ReplyReserved, ReplyDuplicate, ReplyOverCap, ReplyPaused
	Until  time.Time // ReplyOverCap, ReplyPaused: when sending may resume
	Sent   int       // replies of the account within ReplyWindow before this one
}

// ReserveReply decides, in one transaction, whether the reply identified by k may be sent at
// now, and if so records it: a ledger entry for k expiring at now+oncePer, and a send of
// messageID counted against the account's rolling cap perDay (≤ 0: no cap). It answers
// ReplyDuplicate when a ledger entry for k has not expired yet, ReplyPaused when the account is
// paused (see PauseReplies), ReplyOverCap when perDay replies were recorded in the last
// ReplyWindow (Until is when the oldest of them leaves the window). Expired ledger entries and
// sends older than OwnReplyTTL are deleted on the way.
func (s *Store) ReserveReply(ctx context.Context, k ReplyKey, messageID string, oncePer time.Duration, perDay int, now time.Time) (Reservation, error) {
	k.Sender = strings.ToLower(k.Sender)
	if k.Account == "" || k.Sender == "" || k.Reply == "" || messageID == "" || oncePer <= 0 {
		return Reservation{}, fmt.Errorf("reserve reply: incomplete key %+v or message id", k)
	}
	var res Reservation
	err := s.withTx(ctx, func(tx *sql.Tx) error {
		n := dbTime(now)
		if _, err := tx.ExecContext(ctx, `DELETE FROM reply_ledger WHERE expires_at <= ?`, n); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM reply_sends WHERE sent_at < ?`, dbTime(now.Add(-OwnReplyTTL))); err != nil {
			return err
		}
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM reply_ledger WHERE account = ? AND sender = ? AND reply = ?`,
			k.Account, k.Sender, k.Reply).Scan(&one)
		switch {
		case err == nil:
			res.Status = ReplyDuplicate
			return nil
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		var until int64
		err = tx.QueryRowContext(ctx, `SELECT until FROM reply_pauses WHERE account = ? AND until > ?`, k.Account, n).Scan(&until)
		switch {
		case err == nil:
			res.Status, res.Until = ReplyPaused, goTime(until)
			return nil
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		var oldest sql.NullInt64
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*), MIN(sent_at) FROM reply_sends WHERE account = ? AND sent_at > ?`,
			k.Account, dbTime(now.Add(-ReplyWindow))).Scan(&res.Sent, &oldest); err != nil {
			return err
		}
		if perDay > 0 && res.Sent >= perDay {
			res.Status, res.Until = ReplyOverCap, goTime(oldest.Int64).Add(ReplyWindow)
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
		res.Status = ReplyReserved
		return nil
	})
	if err != nil {
		return Reservation{}, fmt.Errorf("reserve reply %q of account %q: %w", k.Reply, k.Account, err)
	}
	return res, nil
}

// ReleaseReply undoes the reservation of messageID for k: the server refused the reply for
// certain, so neither the ledger nor the daily count should hold it. A ledger entry for k made by
// another reservation (another Message-ID) is left alone. Releasing twice is harmless.
func (s *Store) ReleaseReply(ctx context.Context, k ReplyKey, messageID string) error {
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

// Replied reports whether the ledger holds an unexpired entry for k at now: a cheap pre-check
// for callers that want to avoid queueing a reply ReserveReply would refuse.
func (s *Store) Replied(ctx context.Context, k ReplyKey, now time.Time) (bool, error) {
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

// PauseReplies stops every reply of account after the server refused one for its daily sending
// limit (`550 5.4.5`), until the rolling window allows: when the oldest reply recorded in the
// ReplyWindow before now leaves the window, or at now+ReplyWindow when none is recorded (the quota
// went to other clients of the account); never sooner than ReplyPauseMin after now. A later pause
// never shortens an earlier one. It returns when the pause ends. reason is kept for status output
// and must not hold secrets.
func (s *Store) PauseReplies(ctx context.Context, account string, now time.Time, reason string) (time.Time, error) {
	var until int64
	err := s.withTx(ctx, func(tx *sql.Tx) error {
		var oldest sql.NullInt64
		if err := tx.QueryRowContext(ctx, `SELECT MIN(sent_at) FROM reply_sends WHERE account = ? AND sent_at > ?`,
			account, dbTime(now.Add(-ReplyWindow))).Scan(&oldest); err != nil {
			return err
		}
		end := now.Add(ReplyWindow)
		if oldest.Valid {
			end = goTime(oldest.Int64).Add(ReplyWindow)
		}
		if min := now.Add(ReplyPauseMin); end.Before(min) {
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

// RepliesPaused returns when the reply pause of account ends, or ok=false when it is not paused
// at now.
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

// RepliesSent returns how many replies of account were recorded in the ReplyWindow before now
// (the rolling daily count; REQUIREMENTS E93).
func (s *Store) RepliesSent(ctx context.Context, account string, now time.Time) (int, error) {
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM reply_sends WHERE account = ? AND sent_at > ?`,
		account, dbTime(now.Add(-ReplyWindow))).Scan(&n); err != nil {
		return 0, fmt.Errorf("count replies of account %q: %w", account, err)
	}
	return n, nil
}

// OwnReply reports whether messageID (with angle brackets, as in the header) is the Message-ID of
// a reply this state recorded within OwnReplyTTL (REQUIREMENTS C61).
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
