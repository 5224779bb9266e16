package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/mailhook/mailhook/store"
)

// dbtx is what pgx.Tx and *pgxpool.Pool share.
type dbtx interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// jobColumns are the columns scanJob reads, for a query over jobs aliased j. depends_on comes back
// as an array in the caller's order.
const jobColumns = `j.id, j.kind, j.target, j.account, j.mailbox, j.uidvalidity, j.uid, j.rule,
	coalesce((SELECT array_agg(d.dep_id ORDER BY d.pos) FROM job_deps d WHERE d.job_id = j.id), '{}'),
	j.state, j.next_at, j.attempts, j.last_error, j.created_at, j.updated_at, j.claim_owner, j.claim_expires`

// blocked is true for a job j that depends on a job that is not done (or does not exist).
const blocked = `EXISTS (SELECT 1 FROM job_deps d LEFT JOIN jobs p ON p.id = d.dep_id
	WHERE d.job_id = j.id AND p.state IS DISTINCT FROM 'done')`

// scanJob reads jobColumns (and, with body, a trailing body column), after the extra leading
// destinations pre.
func scanJob(sc pgx.Row, body bool, pre ...any) (store.Job, error) {
	var (
		j                          store.Job
		v, uid, next, created, upd int64
		expires                    int64
		deps                       []string
	)
	dest := append(pre, &j.ID, &j.Kind, &j.Target, &j.Account, &j.Mailbox, &v, &uid, &j.Rule, &deps, &j.State, &next, &j.Attempts, &j.LastError, &created, &upd, &j.ClaimOwner, &expires)
	if body {
		dest = append(dest, &j.Body)
	}
	if err := sc.Scan(dest...); err != nil {
		return store.Job{}, err
	}
	j.UIDValidity, j.UID = uint32(v), uint32(uid)
	j.NextAt, j.CreatedAt, j.UpdatedAt, j.ClaimExpires = goTime(next), goTime(created), goTime(upd), goTime(expires)
	if len(deps) > 0 {
		j.DependsOn = deps
	}
	return j, nil
}

// args collects query arguments and names their placeholders.
type args []any

func (a *args) add(v any) string {
	*a = append(*a, v)
	return "$" + strconv.Itoa(len(*a))
}

// where returns the SQL conditions (ANDed, leading " AND ") of sel over jobs j, adding their
// arguments to a.
func where(sel store.Selector, a *args) string {
	var b strings.Builder
	add := func(col, val string) {
		if val != "" {
			b.WriteString(" AND j." + col + " = " + a.add(val))
		}
	}
	add("kind", sel.Kind)
	add("target", sel.Target)
	add("account", sel.Account)
	add("mailbox", sel.Mailbox)
	return b.String()
}

// Claim implements store.Outbox. Concurrent claimers (any replica) skip the rows another claim
// has locked (FOR UPDATE SKIP LOCKED), so none blocks and none gets a job twice.
func (s *Store) Claim(ctx context.Context, sel store.Selector, now time.Time, max int) ([]store.Job, error) {
	if max <= 0 {
		return nil, nil
	}
	jobs, err := s.claim(ctx, s.pool, sel, now, max)
	if err != nil {
		return nil, fmt.Errorf("claim jobs (kind %q, target %q): %w", sel.Kind, sel.Target, err)
	}
	return jobs, nil
}

// claim claims up to max jobs matching sel with one statement on q (the pool or a transaction).
func (s *Store) claim(ctx context.Context, q dbtx, sel store.Selector, now time.Time, max int) ([]store.Job, error) {
	var a args
	at := a.add(dbTime(now))
	cond := where(sel, &a)
	limit := a.add(max)
	owner := a.add(s.replica)
	expires := a.add(dbTime(now.Add(s.claimTTL)))
	rows, err := q.Query(ctx, `WITH c AS (
	SELECT j.id FROM jobs j
	WHERE j.state = 'pending' AND j.next_at <= `+at+cond+` AND NOT `+blocked+`
	ORDER BY j.next_at, j.seq LIMIT `+limit+`
	FOR UPDATE OF j SKIP LOCKED
)
UPDATE jobs j SET state = 'in_flight', attempts = j.attempts + 1, updated_at = `+at+`,
	claim_owner = `+owner+`, claim_expires = `+expires+`
FROM c WHERE j.id = c.id
RETURNING j.seq, `+jobColumns+`, j.body`, a...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	type claimed struct {
		seq int64
		job store.Job
	}
	var cs []claimed
	for rows.Next() {
		var c claimed
		if c.job, err = scanJob(rows, true, &c.seq); err != nil {
			return nil, err
		}
		cs = append(cs, c)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	// RETURNING has no order: give the jobs in due order.
	slices.SortFunc(cs, func(x, y claimed) int {
		return cmp.Or(x.job.NextAt.Compare(y.job.NextAt), cmp.Compare(x.seq, y.seq))
	})
	jobs := make([]store.Job, len(cs))
	for i, c := range cs {
		jobs[i] = c.job
	}
	return jobs, nil
}

// Finish implements store.Outbox: one statement (the update, the attempt and the wake-up of the
// other replicas) in the common case.
func (s *Store) Finish(ctx context.Context, id, state string, nextAt time.Time, a store.Attempt) error {
	woke, err := s.finish(ctx, s.pool, id, state, nextAt, a)
	if err != nil {
		return err
	}
	if woke {
		s.broadcastLocal()
	}
	return nil
}

// finish settles in-flight job id on q (the pool, or a fenced transaction) and reports whether
// Wake should fire (see Finish).
func (s *Store) finish(ctx context.Context, q dbtx, id, state string, nextAt time.Time, a store.Attempt) (bool, error) {
	switch state {
	case store.StatePending, store.StateDone, store.StateDead, store.StateUnknown, store.StateHeld:
	default:
		return false, fmt.Errorf("finish job %s: invalid state %q", id, state)
	}
	now := s.now()
	at := a.At
	if at.IsZero() {
		at = now
	}
	if state == store.StatePending && nextAt.IsZero() {
		nextAt = now
	}
	var next *int64 // NULL keeps next_at
	if !nextAt.IsZero() {
		n := dbTime(nextAt)
		next = &n
	}
	wake := state == store.StateDone || state == store.StatePending
	// The other replicas are woken (NOTIFY, which serialises the commits that send it) only when a
	// job became claimable: a retry due now, or a dependent of a job done.
	wakeNow := state == store.StatePending && !nextAt.After(now)
	wakeDeps := state == store.StateDone
	var updated int
	err := q.QueryRow(ctx, `WITH u AS (
	UPDATE jobs
	SET state = $1, next_at = coalesce($2, next_at), last_error = $3, updated_at = $4, claim_owner = '', claim_expires = 0
	WHERE id = $5 AND state = 'in_flight'
	RETURNING id
), a AS (
	INSERT INTO attempts (job_id, at, status, error) SELECT id, $6, $7, $3 FROM u
	RETURNING 1
), n AS (
	SELECT pg_notify($8, '') FROM u WHERE $9 OR ($10 AND EXISTS (SELECT 1 FROM job_deps d WHERE d.dep_id = u.id))
)
SELECT (SELECT count(*) FROM u) + 0 * ((SELECT count(*) FROM a) + (SELECT count(*) FROM n))`,
		state, next, a.Error, dbTime(now), id, dbTime(at), a.Status, notifyOutbox, wakeNow, wakeDeps).Scan(&updated)
	if err != nil {
		return false, fmt.Errorf("finish job %s: %w", id, err)
	}
	if updated == 0 {
		err := expectState(ctx, q, id, store.StateInFlight)
		if err == nil {
			err = fmt.Errorf("%w: job changed during finish", store.ErrState)
		}
		return false, fmt.Errorf("finish job %s: %w", id, err)
	}
	return wake, nil
}

// expectState fails with ErrNotFound or ErrState unless job id is in one of states.
func expectState(ctx context.Context, q dbtx, id string, states ...string) error {
	var cur string
	err := q.QueryRow(ctx, `SELECT state FROM jobs WHERE id = $1`, id).Scan(&cur)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.ErrNotFound
	}
	if err != nil {
		return err
	}
	if slices.Contains(states, cur) {
		return nil
	}
	return fmt.Errorf("%w: %s, want %s", store.ErrState, cur, strings.Join(states, " or "))
}

// NextDue implements store.Outbox.
func (s *Store) NextDue(ctx context.Context, sel store.Selector) (time.Time, bool, error) {
	var a args
	cond := where(sel, &a)
	var next int64
	err := s.pool.QueryRow(ctx, `SELECT j.next_at FROM jobs j
WHERE j.state = 'pending'`+cond+` AND NOT `+blocked+` ORDER BY j.next_at LIMIT 1`, a...).Scan(&next)
	if errors.Is(err, pgx.ErrNoRows) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, fmt.Errorf("next due job (kind %q, target %q): %w", sel.Kind, sel.Target, err)
	}
	return goTime(next), true, nil
}

// Jobs implements store.OutboxAdmin.
func (s *Store) Jobs(ctx context.Context, f store.Filter) ([]store.Job, error) {
	var a args
	cond := where(f.Selector, &a)
	if f.State != "" {
		cond += " AND j.state = " + a.add(f.State)
	}
	q := `SELECT ` + jobColumns + ` FROM jobs j WHERE true` + cond + ` ORDER BY j.seq`
	if f.Limit > 0 {
		q += " LIMIT " + a.add(f.Limit)
	}
	rows, err := s.pool.Query(ctx, q, a...)
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
	j, err := scanJob(s.pool.QueryRow(ctx, `SELECT `+jobColumns+`, j.body FROM jobs j WHERE j.id = $1`, id), true)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Job{}, nil, fmt.Errorf("show job %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Job{}, nil, fmt.Errorf("show job %s: %w", id, err)
	}
	rows, err := s.pool.Query(ctx, `SELECT at, status, error FROM attempts WHERE job_id = $1 ORDER BY seq`, id)
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
	err := s.withTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT 1 FROM jobs WHERE id = $1 FOR UPDATE`, id); err != nil {
			return err
		}
		if err := expectState(ctx, tx, id, store.StateDead, store.StateUnknown, store.StateHeld); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE jobs
SET state = 'pending', next_at = $1, attempts = 0, updated_at = $1 WHERE id = $2`, dbTime(now), id); err != nil {
			return err
		}
		return notifyOutboxTx(ctx, tx)
	})
	if err != nil {
		return fmt.Errorf("requeue job %s: %w", id, err)
	}
	s.broadcastLocal()
	return nil
}

// Release implements store.OutboxAdmin.
func (s *Store) Release(ctx context.Context, sel store.Selector, now time.Time) (int, error) {
	var n int64
	err := s.withTx(ctx, func(tx pgx.Tx) error {
		var a args
		at := a.add(dbTime(now))
		cond := where(sel, &a)
		tag, err := tx.Exec(ctx, `UPDATE jobs AS j
SET state = 'pending', next_at = `+at+`, updated_at = `+at+` WHERE j.state = 'held'`+cond, a...)
		if err != nil {
			return err
		}
		n = tag.RowsAffected()
		if n > 0 {
			return notifyOutboxTx(ctx, tx)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("release held jobs: %w", err)
	}
	if n > 0 {
		s.broadcastLocal()
	}
	return int(n), nil
}

// Drop implements store.OutboxAdmin.
func (s *Store) Drop(ctx context.Context, id string) error {
	err := s.withTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT 1 FROM jobs WHERE id = $1 FOR UPDATE`, id); err != nil {
			return err
		}
		if err := expectState(ctx, tx, id, store.StatePending, store.StateDone, store.StateDead, store.StateUnknown, store.StateHeld); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT d.job_id FROM job_deps d JOIN jobs c ON c.id = d.job_id
WHERE d.dep_id = $1 AND c.state <> 'done' ORDER BY c.seq`, id)
		if err != nil {
			return err
		}
		deps, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		if len(deps) > 0 {
			return fmt.Errorf("%w: %s", store.ErrDependents, strings.Join(deps, ", "))
		}
		if _, err := tx.Exec(ctx, `DELETE FROM job_deps WHERE dep_id = $1`, id); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `DELETE FROM jobs WHERE id = $1`, id)
		return err
	})
	if err != nil {
		return fmt.Errorf("drop job %s: %w", id, err)
	}
	return nil
}

// Enqueue implements store.OutboxAdmin.
func (s *Store) Enqueue(ctx context.Context, jobs []store.Job) (inserted []string, err error) {
	for i := range jobs {
		if err := store.CheckNew(&jobs[i]); err != nil {
			return nil, fmt.Errorf("enqueue: %w", err)
		}
	}
	if len(jobs) == 0 {
		return nil, nil
	}
	now := s.now()
	err = s.withTx(ctx, func(tx pgx.Tx) error {
		inserted = inserted[:0]
		exists := make(map[string]bool, len(jobs))
		for _, j := range jobs {
			var one int
			err := tx.QueryRow(ctx, `SELECT 1 FROM jobs WHERE id = $1`, j.ID).Scan(&one)
			switch {
			case errors.Is(err, pgx.ErrNoRows):
				if !exists[j.ID] {
					inserted = append(inserted, j.ID)
				}
			case err != nil:
				return fmt.Errorf("look up job %s: %w", j.ID, err)
			}
			exists[j.ID] = true
		}
		if err := insertJobs(ctx, tx, jobs, now, nil); err != nil {
			return err
		}
		return notifyOutboxTx(ctx, tx)
	})
	if err != nil {
		return nil, fmt.Errorf("enqueue: %w", err)
	}
	s.broadcastLocal()
	return inserted, nil
}

// Counts implements store.OutboxAdmin.
func (s *Store) Counts(ctx context.Context) (map[string]int, error) {
	counts := map[string]int{
		store.StatePending: 0, store.StateInFlight: 0, store.StateDone: 0, store.StateDead: 0, store.StateUnknown: 0, store.StateHeld: 0,
	}
	if err := s.countInto(ctx, counts, `SELECT state, count(*) FROM jobs GROUP BY state`); err != nil {
		return nil, fmt.Errorf("count jobs: %w", err)
	}
	return counts, nil
}

// MailboxCounts implements store.OutboxAdmin.
func (s *Store) MailboxCounts(ctx context.Context, account, mailbox string) (map[string]int, error) {
	out := map[string]int{}
	if err := s.countInto(ctx, out, `SELECT state, count(*) FROM jobs WHERE account = $1 AND mailbox = $2 GROUP BY state`,
		account, mailbox); err != nil {
		return nil, fmt.Errorf("count jobs of %q/%q: %w", account, mailbox, err)
	}
	return out, nil
}

func (s *Store) countInto(ctx context.Context, out map[string]int, q string, a ...any) error {
	rows, err := s.pool.Query(ctx, q, a...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var st string
		var n int
		if err := rows.Scan(&st, &n); err != nil {
			return err
		}
		out[st] = n
	}
	return rows.Err()
}

// TargetCounts implements store.OutboxAdmin.
func (s *Store) TargetCounts(ctx context.Context, kind string) (map[string]map[string]int, error) {
	rows, err := s.pool.Query(ctx, `SELECT target, state, count(*) FROM jobs WHERE kind = $1 GROUP BY target, state`, kind)
	if err != nil {
		return nil, fmt.Errorf("count jobs by target: %w", err)
	}
	defer rows.Close()
	out := map[string]map[string]int{}
	for rows.Next() {
		var target, state string
		var n int
		if err := rows.Scan(&target, &state, &n); err != nil {
			return nil, fmt.Errorf("count jobs by target: %w", err)
		}
		if out[target] == nil {
			out[target] = map[string]int{}
		}
		out[target][state] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("count jobs by target: %w", err)
	}
	return out, nil
}

// Heartbeat implements store.Outbox.
func (s *Store) Heartbeat(ctx context.Context, now time.Time) error {
	if _, err := s.pool.Exec(ctx, `UPDATE jobs SET claim_expires = $1
WHERE state = 'in_flight' AND claim_owner = $2`, dbTime(now.Add(s.claimTTL)), s.replica); err != nil {
		return fmt.Errorf("renew job claims: %w", err)
	}
	return nil
}

// Recover implements store.OutboxAdmin. Replicas share the outbox, so only expired claims are
// settled: a live replica renews its own (Heartbeat), and a replica that starts never takes a live
// peer's jobs.
func (s *Store) Recover(ctx context.Context, now time.Time) (int, error) {
	at := dbTime(now)
	var n int64
	err := s.withTx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id FROM jobs WHERE state = 'in_flight' AND claim_expires <= $1
ORDER BY seq FOR UPDATE SKIP LOCKED`, at)
		if err != nil {
			return err
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil || len(ids) == 0 {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO attempts (job_id, at, status, error)
SELECT id, $1, 'interrupted', 'process stopped while the job was in flight' FROM unnest($2::text[]) WITH ORDINALITY AS r (id, n)
ORDER BY n`, at, ids); err != nil {
			return err
		}
		// A reply may have been accepted by the SMTP server before the crash: at most once means
		// unknown, never resent. Webhooks (at least once) and post-actions go again.
		tag, err := tx.Exec(ctx, `UPDATE jobs SET
	state = CASE kind WHEN 'reply' THEN 'unknown' ELSE 'pending' END,
	last_error = CASE kind WHEN 'reply' THEN 'interrupted: outcome unknown' ELSE last_error END,
	claim_owner = '', claim_expires = 0,
	updated_at = $1
WHERE id = ANY ($2)`, at, ids)
		if err != nil {
			return err
		}
		n = tag.RowsAffected()
		return notifyOutboxTx(ctx, tx)
	})
	if err != nil {
		return 0, fmt.Errorf("recover in-flight jobs: %w", err)
	}
	if n > 0 {
		s.broadcastLocal()
	}
	return int(n), nil
}
