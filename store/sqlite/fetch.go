package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/mailhook/mailhook/store"
)

// Fetch records and strikes (migration 7): one fetch record per mailbox, written once per fetch
// batch and cleared by the commit that passes its end; one strike row per message that failed to
// fetch, cleared by the commit that passes it.

func (s *Store) beginFetch(ctx context.Context, account, mailbox string, r store.FetchRange) error {
	if r.Lo > r.Hi {
		return fmt.Errorf("record fetch of %q/%q: empty range %d–%d", account, mailbox, r.Lo, r.Hi)
	}
	begun := r.Begun
	if begun.IsZero() {
		begun = s.now()
	}
	_, err := s.db.ExecContext(ctx, `
INSERT INTO fetch_records (account, mailbox, uidvalidity, lo, hi, begun_at) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (account, mailbox) DO UPDATE SET uidvalidity = excluded.uidvalidity, lo = excluded.lo,
	hi = excluded.hi, begun_at = excluded.begun_at`,
		account, mailbox, int64(r.UIDValidity), int64(r.Lo), int64(r.Hi), dbTime(begun))
	if err != nil {
		return fmt.Errorf("record fetch of %q/%q: %w", account, mailbox, err)
	}
	return nil
}

func (s *Store) endFetch(ctx context.Context, account, mailbox string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM fetch_records WHERE account = ? AND mailbox = ?`, account, mailbox); err != nil {
		return fmt.Errorf("clear fetch record of %q/%q: %w", account, mailbox, err)
	}
	return nil
}

func (s *Store) unfinishedFetch(ctx context.Context, account, mailbox string) (store.FetchRange, bool, error) {
	var v, lo, hi, begun int64
	err := s.db.QueryRowContext(ctx,
		`SELECT uidvalidity, lo, hi, begun_at FROM fetch_records WHERE account = ? AND mailbox = ?`,
		account, mailbox).Scan(&v, &lo, &hi, &begun)
	if errors.Is(err, sql.ErrNoRows) {
		return store.FetchRange{}, false, nil
	}
	if err != nil {
		return store.FetchRange{}, false, fmt.Errorf("read fetch record of %q/%q: %w", account, mailbox, err)
	}
	return store.FetchRange{UIDValidity: uint32(v), Lo: uint32(lo), Hi: uint32(hi), Begun: goTime(begun)}, true, nil
}

func (s *Store) strikeFetch(ctx context.Context, account, mailbox string, uidvalidity, uid uint32, reason string) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `
INSERT INTO fetch_strikes (account, mailbox, uidvalidity, uid, strikes, last_error, updated_at)
VALUES (?, ?, ?, ?, 1, ?, ?)
ON CONFLICT (account, mailbox, uidvalidity, uid) DO UPDATE SET strikes = strikes + 1,
	last_error = excluded.last_error, updated_at = excluded.updated_at
RETURNING strikes`,
		account, mailbox, int64(uidvalidity), int64(uid), reason, dbTime(s.now())).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("record fetch failure of %q/%q uid %d: %w", account, mailbox, uid, err)
	}
	return n, nil
}

func (s *Store) fetchStrikes(ctx context.Context, account, mailbox string, uidvalidity, uid uint32) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx,
		`SELECT strikes FROM fetch_strikes WHERE account = ? AND mailbox = ? AND uidvalidity = ? AND uid = ?`,
		account, mailbox, int64(uidvalidity), int64(uid)).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read fetch failures of %q/%q uid %d: %w", account, mailbox, uid, err)
	}
	return n, nil
}

// clearFetch, inside a commit's transaction, deletes the mailbox's fetch record once the stored
// checkpoint (uidvalidity, last) reaches its end, and the strikes of the messages it passed.
func (w *writeTx) clearFetch(account, mailbox string, uidvalidity uint32, last int64) error {
	if _, err := w.stmt(qFetchClear).ExecContext(w.ctx, account, mailbox, int64(uidvalidity), last); err != nil {
		return fmt.Errorf("clear fetch record: %w", err)
	}
	if _, err := w.stmt(qStrikesClear).ExecContext(w.ctx, account, mailbox, int64(uidvalidity), last); err != nil {
		return fmt.Errorf("clear fetch strikes: %w", err)
	}
	return nil
}
