package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Checkpoint returns the stored checkpoint of (account, mailbox); ok is false when there is none
// yet (first start).
func (s *Store) Checkpoint(ctx context.Context, account, mailbox string) (cp Checkpoint, ok bool, err error) {
	var v, uid, date int64
	err = s.db.QueryRowContext(ctx,
		`SELECT uidvalidity, last_uid, last_internaldate FROM checkpoints WHERE account = ? AND mailbox = ?`,
		account, mailbox).Scan(&v, &uid, &date)
	if errors.Is(err, sql.ErrNoRows) {
		return Checkpoint{}, false, nil
	}
	if err != nil {
		return Checkpoint{}, false, fmt.Errorf("read checkpoint of %q/%q: %w", account, mailbox, err)
	}
	return Checkpoint{UIDValidity: uint32(v), LastUID: uint32(uid), LastInternalDate: goTime(date)}, true, nil
}

// ResetCheckpoint replaces the checkpoint of (account, mailbox) with cp unconditionally. The
// watcher calls it on first start (cp.LastUID = UIDNEXT-1, or 0 to backfill) and when the mailbox's
// UIDVALIDITY changed (RFC 3501 §2.3.1.1: every stored UID is void), where it may lower LastUID.
// Seen keys are kept: they are what bridges the change. Jobs already in the outbox are kept too;
// post-actions carry their own uidvalidity, which the watcher checks before running them.
func (s *Store) ResetCheckpoint(ctx context.Context, account, mailbox string, cp Checkpoint) error {
	_, err := s.db.ExecContext(ctx, `
INSERT INTO checkpoints (account, mailbox, uidvalidity, last_uid, last_internaldate, updated_at)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (account, mailbox) DO UPDATE SET
	uidvalidity = excluded.uidvalidity, last_uid = excluded.last_uid,
	last_internaldate = excluded.last_internaldate, updated_at = excluded.updated_at`,
		account, mailbox, int64(cp.UIDValidity), int64(cp.LastUID), dbTime(cp.LastInternalDate), dbTime(s.now()))
	if err != nil {
		return fmt.Errorf("reset checkpoint of %q/%q: %w", account, mailbox, err)
	}
	return nil
}

// Commit records one processed message in ONE durable transaction (REQUIREMENTS A7): the checkpoint
// advance, the message's stable key (if key != "") and its outbox jobs. When it returns nil, all of
// it survives a crash or power loss (synchronous=FULL); when it returns an error, none of it exists.
//
// Checkpoint: with no stored checkpoint, cp is stored. A cp.UIDValidity other than the stored one
// is an error wrapping [ErrUIDValidity] (ResetCheckpoint must come first). The checkpoint never
// decreases within one UIDVALIDITY (REQUIREMENTS A4): a cp.LastUID below the stored one leaves the
// stored checkpoint as it is (no error: replaying an older message is harmless, its jobs are
// deduplicated); otherwise LastUID and LastInternalDate are stored.
//
// Jobs: each job is inserted unless a job with its ID exists, in which case it is left exactly as it
// is (state, attempts, body): replaying a message after a crash never creates a second job with the
// same id, nor revives a done one. ID, Kind, Target, Account, Mailbox, UIDValidity, UID, Rule,
// DependsOn, Body and LastError are taken from the job; State may be "" (pending), pending, held or
// dead; a zero NextAt means due now; Attempts, CreatedAt and UpdatedAt are ignored. Every id in
// DependsOn must name a job earlier in jobs or already stored, which also rules out cycles.
//
// After the transaction commits, Wake's channel fires. Once an hour Commit also prunes expired
// seen keys and old done jobs (see Prune), after the commit and never failing it.
func (s *Store) Commit(ctx context.Context, account, mailbox string, cp Checkpoint, key string, jobs []Job) error {
	for i := range jobs {
		if err := checkNew(&jobs[i]); err != nil {
			return fmt.Errorf("commit %q/%q uid %d: %w", account, mailbox, cp.LastUID, err)
		}
	}
	now := s.now()
	err := s.withTx(ctx, func(tx *sql.Tx) error {
		if err := advance(ctx, tx, account, mailbox, cp, now); err != nil {
			return err
		}
		if key != "" {
			if _, err := tx.ExecContext(ctx, `
INSERT INTO seen_keys (account, mailbox, key, seen_at) VALUES (?, ?, ?, ?)
ON CONFLICT (account, mailbox, key) DO UPDATE SET seen_at = excluded.seen_at`,
				account, mailbox, key, dbTime(now)); err != nil {
				return fmt.Errorf("record seen key: %w", err)
			}
		}
		return insertJobs(ctx, tx, jobs, now)
	})
	if err != nil {
		return fmt.Errorf("commit %q/%q uid %d: %w", account, mailbox, cp.LastUID, err)
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

// advance moves the checkpoint of (account, mailbox) forward to cp inside tx (see Commit).
func advance(ctx context.Context, tx *sql.Tx, account, mailbox string, cp Checkpoint, now time.Time) error {
	var v, last int64
	err := tx.QueryRowContext(ctx,
		`SELECT uidvalidity, last_uid FROM checkpoints WHERE account = ? AND mailbox = ?`,
		account, mailbox).Scan(&v, &last)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		_, err = tx.ExecContext(ctx, `
INSERT INTO checkpoints (account, mailbox, uidvalidity, last_uid, last_internaldate, updated_at)
VALUES (?, ?, ?, ?, ?, ?)`,
			account, mailbox, int64(cp.UIDValidity), int64(cp.LastUID), dbTime(cp.LastInternalDate), dbTime(now))
	case err != nil:
	case uint32(v) != cp.UIDValidity:
		return fmt.Errorf("checkpoint uidvalidity %d, commit %d: %w", v, cp.UIDValidity, ErrUIDValidity)
	case int64(cp.LastUID) < last:
		return nil // never decrease (A4)
	default:
		_, err = tx.ExecContext(ctx, `
UPDATE checkpoints SET last_uid = ?, last_internaldate = ?, updated_at = ?
WHERE account = ? AND mailbox = ?`,
			int64(cp.LastUID), dbTime(cp.LastInternalDate), dbTime(now), account, mailbox)
	}
	if err != nil {
		return fmt.Errorf("advance checkpoint: %w", err)
	}
	return nil
}

// checkNew validates the caller-supplied fields of a job about to be inserted.
func checkNew(j *Job) error {
	if j.ID == "" {
		return errors.New("job with empty id")
	}
	switch j.Kind {
	case KindWebhook, KindReply, KindPostAction:
	default:
		return fmt.Errorf("job %s: unknown kind %q", j.ID, j.Kind)
	}
	switch j.State {
	case "", StatePending, StateHeld, StateDead:
	default:
		return fmt.Errorf("job %s: cannot be created in state %q", j.ID, j.State)
	}
	seen := make(map[string]bool, len(j.DependsOn))
	for _, d := range j.DependsOn {
		if d == j.ID {
			return fmt.Errorf("job %s depends on itself", j.ID)
		}
		if d == "" || seen[d] {
			return fmt.Errorf("job %s: empty or repeated dependency %q", j.ID, d)
		}
		seen[d] = true
	}
	return nil
}

// insertJobs inserts jobs in order inside tx (see Commit).
func insertJobs(ctx context.Context, tx *sql.Tx, jobs []Job, now time.Time) error {
	batch := make(map[string]bool, len(jobs))
	for _, j := range jobs {
		state := j.State
		if state == "" {
			state = StatePending
		}
		next := j.NextAt
		if next.IsZero() {
			next = now
		}
		res, err := tx.ExecContext(ctx, `
INSERT INTO jobs (id, kind, target, account, mailbox, uidvalidity, uid, rule, state, next_at,
	last_error, body, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO NOTHING`,
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
					err := tx.QueryRowContext(ctx, `SELECT 1 FROM jobs WHERE id = ?`, d).Scan(&one)
					if errors.Is(err, sql.ErrNoRows) {
						return fmt.Errorf("job %s depends on %s, which is neither stored nor earlier in the commit", j.ID, d)
					}
					if err != nil {
						return fmt.Errorf("insert job %s: %w", j.ID, err)
					}
				}
				if _, err := tx.ExecContext(ctx,
					`INSERT INTO job_deps (job_id, dep_id, pos) VALUES (?, ?, ?)`, j.ID, d, pos); err != nil {
					return fmt.Errorf("insert job %s dependency %s: %w", j.ID, d, err)
				}
			}
		}
		batch[j.ID] = true
	}
	return nil
}

// Seen reports whether key was recorded by a Commit of (account, mailbox) within the seen-key TTL
// (Options.SeenTTL, 30 days) before the store's clock.
func (s *Store) Seen(ctx context.Context, account, mailbox, key string) (bool, error) {
	var at int64
	err := s.db.QueryRowContext(ctx,
		`SELECT seen_at FROM seen_keys WHERE account = ? AND mailbox = ? AND key = ?`,
		account, mailbox, key).Scan(&at)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("look up seen key in %q/%q: %w", account, mailbox, err)
	}
	return at >= dbTime(s.now().Add(-s.seenTTL)), nil
}

// Prune deletes, in one transaction, seen keys older than the seen-key TTL and done jobs (with
// their attempts) not updated for Options.DoneRetention, as of now. A done job that a job not yet
// done depends on is kept, or that job would be held forever. Dead, unknown and held jobs are dead
// letters and are kept until an operator acts. Commit calls Prune once an hour.
func (s *Store) Prune(ctx context.Context, now time.Time) error {
	seenBefore := dbTime(now.Add(-s.seenTTL))
	doneBefore := dbTime(now.Add(-s.doneRetention))
	const prunable = `
SELECT id FROM jobs p WHERE p.state = 'done' AND p.updated_at < ?
AND NOT EXISTS (SELECT 1 FROM job_deps d JOIN jobs c ON c.id = d.job_id
                WHERE d.dep_id = p.id AND c.state <> 'done')`
	err := s.withTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM seen_keys WHERE seen_at < ?`, seenBefore); err != nil {
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
