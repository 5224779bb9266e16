package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/mailhook/mailhook/store"
)

// pruneEvery is how often a commit prunes expired seen keys and done jobs, in its own transaction.
const pruneEvery = time.Hour

// Checkpoint implements store.Mailboxes.
func (s *Store) Checkpoint(ctx context.Context, account, mailbox string) (cp store.Checkpoint, ok bool, err error) {
	var v, uid, date int64
	err = s.db.QueryRowContext(ctx,
		`SELECT uidvalidity, last_uid, last_internaldate FROM checkpoints WHERE account = ? AND mailbox = ?`,
		account, mailbox).Scan(&v, &uid, &date)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Checkpoint{}, false, nil
	}
	if err != nil {
		return store.Checkpoint{}, false, fmt.Errorf("read checkpoint of %q/%q: %w", account, mailbox, err)
	}
	return store.Checkpoint{UIDValidity: uint32(v), LastUID: uint32(uid), LastInternalDate: goTime(date)}, true, nil
}

// Checkpoints implements store.Mailboxes.
func (s *Store) Checkpoints(ctx context.Context) ([]store.MailboxState, error) {
	rows, err := s.db.QueryContext(ctx, `
SELECT account, mailbox, uidvalidity, last_uid, last_internaldate, updated_at
FROM checkpoints ORDER BY account, mailbox`)
	if err != nil {
		return nil, fmt.Errorf("list checkpoints: %w", err)
	}
	defer rows.Close()
	var out []store.MailboxState
	for rows.Next() {
		var m store.MailboxState
		var v, uid, date, updated int64
		if err := rows.Scan(&m.Account, &m.Mailbox, &v, &uid, &date, &updated); err != nil {
			return nil, fmt.Errorf("list checkpoints: %w", err)
		}
		m.Checkpoint = store.Checkpoint{UIDValidity: uint32(v), LastUID: uint32(uid), LastInternalDate: goTime(date)}
		m.UpdatedAt = goTime(updated)
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list checkpoints: %w", err)
	}
	return out, nil
}

// resetCheckpoint implements MailboxWriter.ResetCheckpoint: it replaces the checkpoint, and
// deletes the fetch record and strikes of any other UIDVALIDITY, in one transaction.
func (s *Store) resetCheckpoint(ctx context.Context, account, mailbox string, cp store.Checkpoint) error {
	err := s.withTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `
INSERT INTO checkpoints (account, mailbox, uidvalidity, last_uid, last_internaldate, updated_at)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (account, mailbox) DO UPDATE SET
	uidvalidity = excluded.uidvalidity, last_uid = excluded.last_uid,
	last_internaldate = excluded.last_internaldate, updated_at = excluded.updated_at`,
			account, mailbox, int64(cp.UIDValidity), int64(cp.LastUID), dbTime(cp.LastInternalDate), dbTime(s.now())); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM fetch_records WHERE account = ? AND mailbox = ? AND uidvalidity <> ?`,
			account, mailbox, int64(cp.UIDValidity)); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM fetch_strikes WHERE account = ? AND mailbox = ? AND uidvalidity <> ?`,
			account, mailbox, int64(cp.UIDValidity))
		return err
	})
	if err != nil {
		return fmt.Errorf("reset checkpoint of %q/%q: %w", account, mailbox, err)
	}
	return nil
}

// commit implements MailboxWriter.Commit: the whole batch in one BEGIN IMMEDIATE transaction
// (one fsync), the checkpoint advanced once per entry inside it.
func (s *Store) commit(ctx context.Context, account, mailbox string, batch []store.Commit) error {
	if len(batch) == 0 {
		return nil
	}
	last := batch[len(batch)-1].Checkpoint
	for _, c := range batch {
		if c.Checkpoint.UIDValidity != last.UIDValidity {
			return fmt.Errorf("commit %q/%q uid %d: batch mixes uidvalidity %d and %d: %w",
				account, mailbox, last.LastUID, c.Checkpoint.UIDValidity, last.UIDValidity, store.ErrUIDValidity)
		}
		for i := range c.Jobs {
			if err := store.CheckNew(&c.Jobs[i]); err != nil {
				return fmt.Errorf("commit %q/%q uid %d: %w", account, mailbox, c.Checkpoint.LastUID, err)
			}
		}
	}
	now := s.now()
	err := s.withWriteTx(ctx, func(w *writeTx) error {
		batchIDs := make(map[string]bool)
		var stored int64 // the stored checkpoint's last UID after the batch
		for _, c := range batch {
			var err error
			if stored, err = w.advance(account, mailbox, c.Checkpoint, now); err != nil {
				return err
			}
			if c.Key != "" {
				if _, err := w.stmt(qSeenKey).ExecContext(ctx, account, mailbox, c.Key, dbTime(now)); err != nil {
					return fmt.Errorf("record seen key: %w", err)
				}
			}
			if err := w.insertJobs(c.Jobs, now, batchIDs); err != nil {
				return err
			}
		}
		return w.clearFetch(account, mailbox, last.UIDValidity, stored)
	})
	if err != nil {
		return fmt.Errorf("commit %q/%q uid %d: %w", account, mailbox, last.LastUID, err)
	}
	s.broadcast()

	s.mu.Lock()
	due := now.Sub(s.lastPrune) >= pruneEvery
	if due {
		s.lastPrune = now
	}
	s.mu.Unlock()
	if due {
		// Best effort: a failed prune is retried at the next hour and loses nothing. The message
		// is committed either way, so its error must not be reported as a failed commit.
		_ = s.Prune(ctx, now)
	}
	return nil
}

// advance moves the checkpoint of (account, mailbox) forward to cp inside w (see Commit) and
// returns the stored checkpoint's last UID after it.
func (w *writeTx) advance(account, mailbox string, cp store.Checkpoint, now time.Time) (int64, error) {
	ctx := w.ctx
	var v, last int64
	err := w.stmt(qCheckpointRead).QueryRowContext(ctx, account, mailbox).Scan(&v, &last)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		_, err = w.stmt(qCheckpointInsert).ExecContext(ctx,
			account, mailbox, int64(cp.UIDValidity), int64(cp.LastUID), dbTime(cp.LastInternalDate), dbTime(now))
	case err != nil:
	case uint32(v) != cp.UIDValidity:
		return 0, fmt.Errorf("checkpoint uidvalidity %d, commit %d: %w", v, cp.UIDValidity, store.ErrUIDValidity)
	case int64(cp.LastUID) < last:
		return last, nil // the checkpoint never decreases within one UIDVALIDITY
	default:
		_, err = w.stmt(qCheckpointUpdate).ExecContext(ctx,
			int64(cp.LastUID), dbTime(cp.LastInternalDate), dbTime(now), account, mailbox)
	}
	if err != nil {
		return 0, fmt.Errorf("advance checkpoint: %w", err)
	}
	return int64(cp.LastUID), nil
}

// insertJobs inserts jobs in order inside w (see Commit). batch holds the ids inserted earlier in
// the same transaction (it gains jobs' ids); nil means none.
func (w *writeTx) insertJobs(jobs []store.Job, now time.Time, batch map[string]bool) error {
	ctx := w.ctx
	if batch == nil {
		batch = make(map[string]bool, len(jobs))
	}
	for _, j := range jobs {
		state := j.State
		if state == "" {
			state = store.StatePending
		}
		next := j.NextAt
		if next.IsZero() {
			next = now
		}
		res, err := w.stmt(qJobInsert).ExecContext(ctx,
			j.ID, j.Kind, j.Target, j.Account, j.Mailbox, int64(j.UIDValidity), int64(j.UID), j.Rule,
			state, dbTime(next), j.LastError, j.Body, dbTime(now), dbTime(now))
		if err != nil {
			return fmt.Errorf("insert job %s: %w", j.ID, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("insert job %s: %w", j.ID, err)
		}
		if n == 1 {
			for pos, d := range j.DependsOn {
				if !batch[d] {
					var one int
					err := w.stmt(qJobExists).QueryRowContext(ctx, d).Scan(&one)
					if errors.Is(err, sql.ErrNoRows) {
						return fmt.Errorf("job %s depends on %s, which is neither stored nor earlier in the commit", j.ID, d)
					}
					if err != nil {
						return fmt.Errorf("insert job %s: %w", j.ID, err)
					}
				}
				if _, err := w.stmt(qJobDep).ExecContext(ctx, j.ID, d, pos); err != nil {
					return fmt.Errorf("insert job %s dependency %s: %w", j.ID, d, err)
				}
			}
		}
		batch[j.ID] = true
	}
	return nil
}

// seen implements MailboxWriter.Seen.
func (s *Store) seen(ctx context.Context, account, mailbox, key string) (bool, error) {
	var at, last int64
	err := s.scanRow(ctx, `SELECT s.seen_at, COALESCE(c.last_internaldate, 0) FROM seen_keys s
LEFT JOIN checkpoints c ON c.account = s.account AND c.mailbox = s.mailbox
WHERE s.account = ? AND s.mailbox = ? AND s.key = ?`,
		[]any{account, mailbox, key}, &at, &last)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("look up seen key in %q/%q: %w", account, mailbox, err)
	}
	return store.SeenCounts(at, last, dbTime(s.now().Add(-s.seenTTL))), nil
}

// Prune implements store.Backend. A commit calls it once an hour (pruneEvery).
func (s *Store) Prune(ctx context.Context, now time.Time) error {
	seenBefore := dbTime(now.Add(-s.seenTTL))
	doneBefore := dbTime(now.Add(-s.doneRetention))
	const prunable = `
SELECT id FROM jobs p WHERE p.state = 'done' AND p.updated_at < ?
AND NOT EXISTS (SELECT 1 FROM job_deps d JOIN jobs c ON c.id = d.job_id
                WHERE d.dep_id = p.id AND c.state <> 'done')`
	err := s.withTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM seen_keys WHERE seen_at < ? AND NOT EXISTS (
SELECT 1 FROM checkpoints c WHERE c.account = seen_keys.account AND c.mailbox = seen_keys.mailbox
AND c.last_internaldate <> 0 AND seen_keys.seen_at >= c.last_internaldate - ?)`, seenBefore, int64(store.RescanKeep)); err != nil {
			return err
		}
		// Edges from done dependents to the jobs about to go, then the jobs (their own edges and
		// attempts go by ON DELETE CASCADE).
		if _, err := tx.ExecContext(ctx, `DELETE FROM job_deps WHERE dep_id IN (`+prunable+`)`, doneBefore); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM jobs WHERE id IN (`+prunable+`)`, doneBefore)
		return err
	})
	if err != nil {
		return fmt.Errorf("prune state: %w", err)
	}
	return nil
}
