package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mailhook/mailhook/store"
)

// jobColumns are the columns scanJob reads, for a query over jobs aliased j. depends_on comes back
// as a JSON array in the caller's order.
const jobColumns = `j.id, j.kind, j.target, j.account, j.mailbox, j.uidvalidity, j.uid, j.rule,
	(SELECT json_group_array(dep_id) FROM (SELECT dep_id FROM job_deps d WHERE d.job_id = j.id ORDER BY d.pos)),
	j.state, j.next_at, j.attempts, j.last_error, j.created_at, j.updated_at, j.claim_owner, j.claim_expires`

// blocked is true for a job j that depends on a job that is not done (or does not exist).
const blocked = `EXISTS (SELECT 1 FROM job_deps d LEFT JOIN jobs p ON p.id = d.dep_id
	WHERE d.job_id = j.id AND p.state IS NOT 'done')`

// scanJob reads jobColumns (and, with body, a trailing body column).
func scanJob(sc interface{ Scan(...any) error }, body bool) (store.Job, error) {
	var (
		j                          store.Job
		v, uid, next, created, upd int64
		expires                    int64
		deps                       sql.NullString
		dest                       = []any{&j.ID, &j.Kind, &j.Target, &j.Account, &j.Mailbox, &v, &uid, &j.Rule, &deps, &j.State, &next, &j.Attempts, &j.LastError, &created, &upd, &j.ClaimOwner, &expires}
	)
	if body {
		dest = append(dest, &j.Body)
	}
	if err := sc.Scan(dest...); err != nil {
		return store.Job{}, err
	}
	j.UIDValidity, j.UID = uint32(v), uint32(uid)
	j.NextAt, j.CreatedAt, j.UpdatedAt, j.ClaimExpires = goTime(next), goTime(created), goTime(upd), goTime(expires)
	if deps.Valid && deps.String != "[]" {
		if err := json.Unmarshal([]byte(deps.String), &j.DependsOn); err != nil {
			return store.Job{}, fmt.Errorf("job %s: depends_on: %w", j.ID, err)
		}
	}
	return j, nil
}

// where returns the SQL conditions (ANDed, leading " AND ") and arguments of sel over jobs j.
func where(sel store.Selector) (string, []any) {
	var b strings.Builder
	var args []any
	add := func(col, val string) {
		if val != "" {
			b.WriteString(" AND j." + col + " = ?")
			args = append(args, val)
		}
	}
	add("kind", sel.Kind)
	add("target", sel.Target)
	add("account", sel.Account)
	add("mailbox", sel.Mailbox)
	return b.String(), args
}

// claimQuery selects the ids of up to ? (the last argument) claimable jobs due at ? (the first)
// that match the Selector conditions cond (see where), in due order.
func claimQuery(cond string) string {
	return `SELECT j.id FROM jobs j
WHERE j.state = 'pending' AND j.next_at <= ?` + cond + ` AND NOT ` + blocked + `
ORDER BY j.next_at, j.seq LIMIT ?`
}

// nextDueQuery selects the earliest next_at of the pending jobs matching cond that no dependency
// holds. MIN(next_at) would visit every pending job; walking the due index in order stops at the
// first one.
func nextDueQuery(cond string) string {
	return `SELECT j.next_at FROM jobs j
WHERE j.state = 'pending'` + cond + ` AND NOT ` + blocked + ` ORDER BY j.next_at LIMIT 1`
}

// Claim implements store.Outbox.
//
// Due order is the order of the jobs_due and jobs_due_any indexes (kind, [target,] next_at, and
// seq as the rowid), so a claim reads only the jobs it returns and those ahead of them that
// dependencies hold, however long the backlog; ordering by seq alone would sort every pending job.
func (s *Store) Claim(ctx context.Context, sel store.Selector, now time.Time, max int) ([]store.Job, error) {
	if max <= 0 {
		return nil, nil
	}
	cond, args := where(sel)
	stmts, err := s.preparedAll(ctx, claimQuery(cond),
		`UPDATE jobs SET state = 'in_flight', attempts = attempts + 1, updated_at = ?, claim_owner = ?, claim_expires = ?
WHERE id = ?`,
		`SELECT `+jobColumns+`, j.body FROM jobs j WHERE j.id = ?`)
	if err != nil {
		return nil, fmt.Errorf("claim jobs (kind %q, target %q): %w", sel.Kind, sel.Target, err)
	}
	var jobs []store.Job
	err = s.withTx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.StmtContext(ctx, stmts[0]).QueryContext(ctx, append(append([]any{dbTime(now)}, args...), max)...)
		if err != nil {
			return err
		}
		var ids []string
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return err
			}
			ids = append(ids, id)
		}
		if err := rows.Close(); err != nil {
			return err
		}
		if err := rows.Err(); err != nil {
			return err
		}
		update, read := tx.StmtContext(ctx, stmts[1]), tx.StmtContext(ctx, stmts[2])
		for _, id := range ids {
			if _, err := update.ExecContext(ctx, dbTime(now), s.owner, dbTime(now.Add(s.claimTTL)), id); err != nil {
				return err
			}
			j, err := scanJob(read.QueryRowContext(ctx, id), true)
			if err != nil {
				return err
			}
			jobs = append(jobs, j)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("claim jobs (kind %q, target %q): %w", sel.Kind, sel.Target, err)
	}
	return jobs, nil
}

// Finish implements store.Outbox. Concurrent Finishes share one transaction (group commit; see
// groupcommit.go): Finish returns once the transaction holding its change has committed, so a nil
// error still means durable. It may wait for a commit already under way, whatever ctx says.
func (s *Store) Finish(ctx context.Context, id, state string, nextAt time.Time, a store.Attempt) error {
	switch state {
	case store.StatePending, store.StateDone, store.StateDead, store.StateUnknown, store.StateHeld:
	default:
		return fmt.Errorf("finish job %s: invalid state %q", id, state)
	}
	now := s.now()
	at := a.At
	if at.IsZero() {
		at = now
	}
	if state == store.StatePending && nextAt.IsZero() {
		nextAt = now
	}
	var next any // NULL keeps next_at
	if !nextAt.IsZero() {
		next = dbTime(nextAt)
	}
	return s.finishGrouped(ctx, &finishOp{id: id, state: state, next: next, at: dbTime(at), now: dbTime(now), a: a})
}

// expectState fails with ErrNotFound or ErrState unless job id is in one of states.
func expectState(ctx context.Context, q querier, id string, states ...string) error {
	var cur string
	err := q.QueryRowContext(ctx, `SELECT state FROM jobs WHERE id = ?`, id).Scan(&cur)
	if errors.Is(err, sql.ErrNoRows) {
		return store.ErrNotFound
	}
	if err != nil {
		return err
	}
	for _, st := range states {
		if cur == st {
			return nil
		}
	}
	return fmt.Errorf("%w: %s, want %s", store.ErrState, cur, strings.Join(states, " or "))
}

// NextDue implements store.Outbox.
func (s *Store) NextDue(ctx context.Context, sel store.Selector) (time.Time, bool, error) {
	cond, args := where(sel)
	var next sql.NullInt64
	err := s.db.QueryRowContext(ctx, nextDueQuery(cond), args...).Scan(&next)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, fmt.Errorf("next due job (kind %q, target %q): %w", sel.Kind, sel.Target, err)
	}
	if !next.Valid {
		return time.Time{}, false, nil
	}
	return goTime(next.Int64), true, nil
}

// Jobs implements store.OutboxAdmin.
func (s *Store) Jobs(ctx context.Context, f store.Filter) ([]store.Job, error) {
	cond, args := where(f.Selector)
	if f.State != "" {
		cond += " AND j.state = ?"
		args = append(args, f.State)
	}
	q := `SELECT ` + jobColumns + ` FROM jobs j WHERE 1` + cond + ` ORDER BY j.seq`
	if f.Limit > 0 {
		q += " LIMIT ?"
		args = append(args, f.Limit)
	}
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	defer rows.Close()
	var jobs []store.Job
	for rows.Next() {
		j, err := scanJob(rows, false)
		if err != nil {
			return nil, fmt.Errorf("list jobs: %w", err)
		}
		jobs = append(jobs, j)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	return jobs, nil
}

// Job implements store.OutboxAdmin.
func (s *Store) Job(ctx context.Context, id string) (store.Job, []store.Attempt, error) {
	j, err := scanJob(s.db.QueryRowContext(ctx, `SELECT `+jobColumns+`, j.body FROM jobs j WHERE j.id = ?`, id), true)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Job{}, nil, fmt.Errorf("show job %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Job{}, nil, fmt.Errorf("show job %s: %w", id, err)
	}
	rows, err := s.db.QueryContext(ctx, `SELECT at, status, error FROM attempts WHERE job_id = ? ORDER BY seq`, id)
	if err != nil {
		return store.Job{}, nil, fmt.Errorf("show job %s: %w", id, err)
	}
	defer rows.Close()
	var as []store.Attempt
	for rows.Next() {
		a := store.Attempt{JobID: id}
		var at int64
		if err := rows.Scan(&at, &a.Status, &a.Error); err != nil {
			return store.Job{}, nil, fmt.Errorf("show job %s: %w", id, err)
		}
		a.At = goTime(at)
		as = append(as, a)
	}
	if err := rows.Err(); err != nil {
		return store.Job{}, nil, fmt.Errorf("show job %s: %w", id, err)
	}
	return j, as, nil
}

// Requeue implements store.OutboxAdmin.
func (s *Store) Requeue(ctx context.Context, id string, now time.Time) error {
	err := s.withTx(ctx, func(tx *sql.Tx) error {
		if err := expectState(ctx, tx, id, store.StateDead, store.StateUnknown, store.StateHeld); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `UPDATE jobs
SET state = 'pending', next_at = ?, attempts = 0, updated_at = ? WHERE id = ?`, dbTime(now), dbTime(now), id)
		return err
	})
	if err != nil {
		return fmt.Errorf("requeue job %s: %w", id, err)
	}
	s.broadcast()
	return nil
}

// Release implements store.OutboxAdmin.
func (s *Store) Release(ctx context.Context, sel store.Selector, now time.Time) (int, error) {
	cond, args := where(sel)
	res, err := s.db.ExecContext(ctx, `UPDATE jobs AS j
SET state = 'pending', next_at = ?, updated_at = ? WHERE j.state = 'held'`+cond,
		append([]any{dbTime(now), dbTime(now)}, args...)...)
	if err != nil {
		return 0, fmt.Errorf("release held jobs: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("release held jobs: %w", err)
	}
	if n > 0 {
		s.broadcast()
	}
	return int(n), nil
}

// Drop implements store.OutboxAdmin.
func (s *Store) Drop(ctx context.Context, id string) error {
	err := s.withTx(ctx, func(tx *sql.Tx) error {
		if err := expectState(ctx, tx, id, store.StatePending, store.StateDone, store.StateDead, store.StateUnknown, store.StateHeld); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `SELECT d.job_id FROM job_deps d JOIN jobs c ON c.id = d.job_id
WHERE d.dep_id = ? AND c.state <> 'done' ORDER BY c.seq`, id)
		if err != nil {
			return err
		}
		var deps []string
		for rows.Next() {
			var d string
			if err := rows.Scan(&d); err != nil {
				rows.Close()
				return err
			}
			deps = append(deps, d)
		}
		if err := rows.Close(); err != nil {
			return err
		}
		if len(deps) > 0 {
			return fmt.Errorf("%w: %s", store.ErrDependents, strings.Join(deps, ", "))
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM job_deps WHERE dep_id = ?`, id); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM jobs WHERE id = ?`, id)
		return err
	})
	if err != nil {
		return fmt.Errorf("drop job %s: %w", id, err)
	}
	return nil
}

// Counts implements store.OutboxAdmin.
func (s *Store) Counts(ctx context.Context) (map[string]int, error) {
	counts := map[string]int{
		store.StatePending: 0, store.StateInFlight: 0, store.StateDone: 0, store.StateDead: 0, store.StateUnknown: 0, store.StateHeld: 0,
	}
	rows, err := s.db.QueryContext(ctx, `SELECT state, COUNT(*) FROM jobs GROUP BY state`)
	if err != nil {
		return nil, fmt.Errorf("count jobs: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var st string
		var n int
		if err := rows.Scan(&st, &n); err != nil {
			return nil, fmt.Errorf("count jobs: %w", err)
		}
		counts[st] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("count jobs: %w", err)
	}
	return counts, nil
}

// Heartbeat implements store.Outbox.
func (s *Store) Heartbeat(ctx context.Context, now time.Time) error {
	if _, err := s.db.ExecContext(ctx, `UPDATE jobs SET claim_expires = ?
WHERE state = 'in_flight' AND claim_owner = ?`, dbTime(now.Add(s.claimTTL)), s.owner); err != nil {
		return fmt.Errorf("renew job claims: %w", err)
	}
	return nil
}

// Recover implements store.OutboxAdmin. A handle that holds the directory lock knows that no other
// process is working on any job, so it also settles the claims of every other owner (a previous
// process), expired or not; a Shared handle beside a daemon settles expired claims only.
func (s *Store) Recover(ctx context.Context, now time.Time) (int, error) {
	at := dbTime(now)
	// Claims of this handle's owner are never taken while unexpired; with the lock, neither is
	// anyone else working, so every other owner's claim is abandoned.
	cond := `state = 'in_flight' AND (claim_expires <= ?`
	args := []any{at}
	if s.exclusive {
		cond += ` OR claim_owner <> ?`
		args = append(args, s.owner)
	}
	cond += `)`
	var n int64
	err := s.withTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO attempts (job_id, at, status, error)
SELECT id, ?, 'interrupted', 'process stopped while the job was in flight' FROM jobs
WHERE `+cond+` ORDER BY seq`, append([]any{at}, args...)...); err != nil {
			return err
		}
		// A reply may have been accepted by the SMTP server before the crash: at most once means
		// unknown, never resent. Webhooks (at least once) and post-actions go again.
		res, err := tx.ExecContext(ctx, `UPDATE jobs SET
	state = CASE kind WHEN 'reply' THEN 'unknown' ELSE 'pending' END,
	last_error = CASE kind WHEN 'reply' THEN 'interrupted: outcome unknown' ELSE last_error END,
	claim_owner = '', claim_expires = 0,
	updated_at = ?
WHERE `+cond, append([]any{at}, args...)...)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("recover in-flight jobs: %w", err)
	}
	if n > 0 {
		s.broadcast()
	}
	return int(n), nil
}
