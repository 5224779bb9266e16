package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/mailhook/mailhook/store"
)

// pruneEvery is how often a commit prunes expired seen keys and done jobs, in its own transaction.
const pruneEvery = time.Hour

// Checkpoint implements store.Mailboxes.
func (s *Store) Checkpoint(ctx context.Context, account, mailbox string) (cp store.Checkpoint, ok bool, err error) {
	var v, uid, date int64
	err = s.pool.QueryRow(ctx,
		`SELECT uidvalidity, last_uid, last_internaldate FROM checkpoints WHERE account = $1 AND mailbox = $2`,
		account, mailbox).Scan(&v, &uid, &date)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Checkpoint{}, false, nil
	}
	if err != nil {
		return store.Checkpoint{}, false, fmt.Errorf("read checkpoint of %q/%q: %w", account, mailbox, err)
	}
	return store.Checkpoint{UIDValidity: uint32(v), LastUID: uint32(uid), LastInternalDate: goTime(date)}, true, nil
}

// Checkpoints implements store.Mailboxes.
func (s *Store) Checkpoints(ctx context.Context) ([]store.MailboxState, error) {
	rows, err := s.pool.Query(ctx, `
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
// deletes the fetch record and strikes of any other UIDVALIDITY, in one fenced transaction.
func (s *Store) resetCheckpoint(ctx context.Context, w *writer, cp store.Checkpoint) error {
	err := w.fenced(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `
INSERT INTO checkpoints (account, mailbox, uidvalidity, last_uid, last_internaldate, updated_at)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (account, mailbox) DO UPDATE SET
	uidvalidity = excluded.uidvalidity, last_uid = excluded.last_uid,
	last_internaldate = excluded.last_internaldate, updated_at = excluded.updated_at`,
			w.account, w.mailbox, int64(cp.UIDValidity), int64(cp.LastUID), dbTime(cp.LastInternalDate), dbTime(s.now())); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM fetch_records WHERE account = $1 AND mailbox = $2 AND uidvalidity <> $3`,
			w.account, w.mailbox, int64(cp.UIDValidity)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `DELETE FROM fetch_strikes WHERE account = $1 AND mailbox = $2 AND uidvalidity <> $3`,
			w.account, w.mailbox, int64(cp.UIDValidity))
		return err
	})
	if err != nil {
		return fmt.Errorf("reset checkpoint of %q/%q: %w", w.account, w.mailbox, err)
	}
	return nil
}

// commit implements MailboxWriter.Commit: the whole batch in one fenced transaction, the
// checkpoint advanced once per entry inside it.
func (s *Store) commit(ctx context.Context, w *writer, batch []store.Commit) error {
	if len(batch) == 0 {
		return nil
	}
	account, mailbox := w.account, w.mailbox
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
	err := w.fenced(ctx, func(tx pgx.Tx) error {
		batchIDs := make(map[string]bool)
		for _, c := range batch {
			if err := advance(ctx, tx, account, mailbox, c.Checkpoint, now); err != nil {
				return err
			}
			if c.Key != "" {
				if _, err := tx.Exec(ctx, `
INSERT INTO seen_keys (account, mailbox, key, seen_at) VALUES ($1, $2, $3, $4)
ON CONFLICT (account, mailbox, key) DO UPDATE SET seen_at = excluded.seen_at`,
					account, mailbox, c.Key, dbTime(now)); err != nil {
					return fmt.Errorf("record seen key: %w", err)
				}
			}
			if err := insertJobs(ctx, tx, c.Jobs, now, batchIDs); err != nil {
				return err
			}
		}
		if err := clearFetch(ctx, tx, account, mailbox); err != nil {
			return err
		}
		return notifyOutboxTx(ctx, tx)
	})
	if err != nil {
		return fmt.Errorf("commit %q/%q uid %d: %w", account, mailbox, last.LastUID, err)
	}
	s.broadcastLocal()

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
func advance(ctx context.Context, tx pgx.Tx, account, mailbox string, cp store.Checkpoint, now time.Time) error {
	var v, last int64
	err := tx.QueryRow(ctx,
		`SELECT uidvalidity, last_uid FROM checkpoints WHERE account = $1 AND mailbox = $2 FOR UPDATE`,
		account, mailbox).Scan(&v, &last)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		_, err = tx.Exec(ctx, `
INSERT INTO checkpoints (account, mailbox, uidvalidity, last_uid, last_internaldate, updated_at)
VALUES ($1, $2, $3, $4, $5, $6)`,
			account, mailbox, int64(cp.UIDValidity), int64(cp.LastUID), dbTime(cp.LastInternalDate), dbTime(now))
	case err != nil:
	case uint32(v) != cp.UIDValidity:
		return fmt.Errorf("checkpoint uidvalidity %d, commit %d: %w", v, cp.UIDValidity, store.ErrUIDValidity)
	case int64(cp.LastUID) < last:
		return nil // the checkpoint never decreases within one UIDVALIDITY
	default:
		_, err = tx.Exec(ctx, `
UPDATE checkpoints SET last_uid = $1, last_internaldate = $2, updated_at = $3
WHERE account = $4 AND mailbox = $5`,
			int64(cp.LastUID), dbTime(cp.LastInternalDate), dbTime(now), account, mailbox)
	}
	if err != nil {
		return fmt.Errorf("advance checkpoint: %w", err)
	}
	return nil
}

// insertJobs inserts jobs in order inside tx (see Commit). batch holds the ids inserted earlier in
// the same transaction (it gains jobs' ids); nil means none.
func insertJobs(ctx context.Context, tx pgx.Tx, jobs []store.Job, now time.Time, batch map[string]bool) error {
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
		tag, err := tx.Exec(ctx, `
INSERT INTO jobs (id, kind, target, account, mailbox, uidvalidity, uid, rule, state, next_at,
	last_error, body, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
ON CONFLICT (id) DO NOTHING`,
			j.ID, j.Kind, j.Target, j.Account, j.Mailbox, int64(j.UIDValidity), int64(j.UID), j.Rule,
			state, dbTime(next), j.LastError, j.Body, dbTime(now), dbTime(now))
		if err != nil {
			return fmt.Errorf("insert job %s: %w", j.ID, err)
		}
		if tag.RowsAffected() == 1 && len(j.DependsOn) > 0 {
			for _, d := range j.DependsOn {
				if batch[d] {
					continue
				}
				var one int
				err := tx.QueryRow(ctx, `SELECT 1 FROM jobs WHERE id = $1`, d).Scan(&one)
				if errors.Is(err, pgx.ErrNoRows) {
					return fmt.Errorf("job %s depends on %s, which is neither stored nor earlier in the commit", j.ID, d)
				}
				if err != nil {
					return fmt.Errorf("insert job %s: %w", j.ID, err)
				}
			}
			pos := make([]int32, len(j.DependsOn))
			for i := range pos {
				pos[i] = int32(i)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO job_deps (job_id, dep_id, pos)
SELECT $1, dep, pos FROM unnest($2::text[], $3::int[]) AS d (dep, pos)`, j.ID, j.DependsOn, pos); err != nil {
				return fmt.Errorf("insert job %s dependencies: %w", j.ID, err)
			}
		}
		batch[j.ID] = true
	}
	return nil
}

// seen implements MailboxWriter.Seen.
func (s *Store) seen(ctx context.Context, account, mailbox, key string) (bool, error) {
	var at, last int64
	err := s.pool.QueryRow(ctx, `SELECT s.seen_at, COALESCE(c.last_internaldate, 0) FROM seen_keys s
LEFT JOIN checkpoints c ON c.account = s.account AND c.mailbox = s.mailbox
WHERE s.account = $1 AND s.mailbox = $2 AND s.key = $3`,
		account, mailbox, key).Scan(&at, &last)
	if errors.Is(err, pgx.ErrNoRows) {
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
SELECT id FROM jobs p WHERE p.state = 'done' AND p.updated_at < $1
AND NOT EXISTS (SELECT 1 FROM job_deps d JOIN jobs c ON c.id = d.job_id
                WHERE d.dep_id = p.id AND c.state <> 'done')`
	err := s.withTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM seen_keys WHERE seen_at < $1 AND NOT EXISTS (
SELECT 1 FROM checkpoints c WHERE c.account = seen_keys.account AND c.mailbox = seen_keys.mailbox
AND c.last_internaldate <> 0 AND seen_keys.seen_at >= c.last_internaldate - $2)`, seenBefore, int64(store.RescanKeep)); err != nil {
			return err
		}
		// Edges from done dependents to the jobs about to go, then the jobs (their own edges and
		// attempts go by ON DELETE CASCADE).
		if _, err := tx.Exec(ctx, `DELETE FROM job_deps WHERE dep_id IN (`+prunable+`)`, doneBefore); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `DELETE FROM jobs WHERE id IN (`+prunable+`)`, doneBefore)
		return err
	})
	if err != nil {
		return fmt.Errorf("prune state: %w", err)
	}
	return nil
}

// Fetch records and strikes: one fetch record per mailbox, written once per fetch batch and
// cleared by the commit that passes its end; one strike row per message that failed to fetch,
// cleared by the commit that passes it.

func (s *Store) beginFetch(ctx context.Context, w *writer, r store.FetchRange) error {
	if r.Lo > r.Hi {
		return fmt.Errorf("record fetch of %q/%q: empty range %d–%d", w.account, w.mailbox, r.Lo, r.Hi)
	}
	begun := r.Begun
	if begun.IsZero() {
		begun = s.now()
	}
	err := w.fenced(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `
INSERT INTO fetch_records (account, mailbox, uidvalidity, lo, hi, begun_at) VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (account, mailbox) DO UPDATE SET uidvalidity = excluded.uidvalidity, lo = excluded.lo,
	hi = excluded.hi, begun_at = excluded.begun_at`,
			w.account, w.mailbox, int64(r.UIDValidity), int64(r.Lo), int64(r.Hi), dbTime(begun))
		return err
	})
	if err != nil {
		return fmt.Errorf("record fetch of %q/%q: %w", w.account, w.mailbox, err)
	}
	return nil
}

func (s *Store) endFetch(ctx context.Context, w *writer) error {
	err := w.fenced(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `DELETE FROM fetch_records WHERE account = $1 AND mailbox = $2`, w.account, w.mailbox)
		return err
	})
	if err != nil {
		return fmt.Errorf("clear fetch record of %q/%q: %w", w.account, w.mailbox, err)
	}
	return nil
}

func (s *Store) unfinishedFetch(ctx context.Context, account, mailbox string) (store.FetchRange, bool, error) {
	var v, lo, hi, begun int64
	err := s.pool.QueryRow(ctx,
		`SELECT uidvalidity, lo, hi, begun_at FROM fetch_records WHERE account = $1 AND mailbox = $2`,
		account, mailbox).Scan(&v, &lo, &hi, &begun)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.FetchRange{}, false, nil
	}
	if err != nil {
		return store.FetchRange{}, false, fmt.Errorf("read fetch record of %q/%q: %w", account, mailbox, err)
	}
	return store.FetchRange{UIDValidity: uint32(v), Lo: uint32(lo), Hi: uint32(hi), Begun: goTime(begun)}, true, nil
}

func (s *Store) strikeFetch(ctx context.Context, w *writer, uidvalidity, uid uint32, reason string) (int, error) {
	var n int
	err := w.fenced(ctx, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `
INSERT INTO fetch_strikes (account, mailbox, uidvalidity, uid, strikes, last_error, updated_at)
VALUES ($1, $2, $3, $4, 1, $5, $6)
ON CONFLICT (account, mailbox, uidvalidity, uid) DO UPDATE SET strikes = fetch_strikes.strikes + 1,
	last_error = excluded.last_error, updated_at = excluded.updated_at
RETURNING strikes`,
			w.account, w.mailbox, int64(uidvalidity), int64(uid), reason, dbTime(s.now())).Scan(&n)
	})
	if err != nil {
		return 0, fmt.Errorf("record fetch failure of %q/%q uid %d: %w", w.account, w.mailbox, uid, err)
	}
	return n, nil
}

func (s *Store) fetchStrikes(ctx context.Context, account, mailbox string, uidvalidity, uid uint32) (int, error) {
	var n int
	err := s.pool.QueryRow(ctx,
		`SELECT strikes FROM fetch_strikes WHERE account = $1 AND mailbox = $2 AND uidvalidity = $3 AND uid = $4`,
		account, mailbox, int64(uidvalidity), int64(uid)).Scan(&n)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read fetch failures of %q/%q uid %d: %w", account, mailbox, uid, err)
	}
	return n, nil
}

// clearFetch, inside a commit's transaction, deletes the mailbox's fetch record once the stored
// checkpoint reaches its end, and the strikes of the messages the checkpoint passed.
func clearFetch(ctx context.Context, tx pgx.Tx, account, mailbox string) error {
	if _, err := tx.Exec(ctx, `
DELETE FROM fetch_records f USING checkpoints c
WHERE f.account = $1 AND f.mailbox = $2 AND c.account = f.account AND c.mailbox = f.mailbox
	AND c.uidvalidity = f.uidvalidity AND c.last_uid >= f.hi`, account, mailbox); err != nil {
		return fmt.Errorf("clear fetch record: %w", err)
	}
	if _, err := tx.Exec(ctx, `
DELETE FROM fetch_strikes f USING checkpoints c
WHERE f.account = $1 AND f.mailbox = $2 AND c.account = f.account AND c.mailbox = f.mailbox
	AND c.uidvalidity = f.uidvalidity AND c.last_uid >= f.uid`, account, mailbox); err != nil {
		return fmt.Errorf("clear fetch strikes: %w", err)
	}
	return nil
}
