package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/mailhook/mailhook/store"
)

// Endpoints implements store.Endpoints.
func (s *Store) Endpoints(ctx context.Context) ([]store.EndpointState, error) {
	rows, err := s.db.QueryContext(ctx,
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
	err := s.scanRow(ctx, `SELECT disabled_at, reason, failing_since, updated_at FROM endpoints WHERE name = ?`,
		[]any{name}, &disabled, &e.Reason, &failing, &updated)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return e, nil
	case err != nil:
		return e, fmt.Errorf("read endpoint %q: %w", name, err)
	}
	e.DisabledAt, e.FailingSince, e.UpdatedAt = goTime(disabled), goTime(failing), goTime(updated)
	return e, nil
}

// SetEndpointFailing implements store.Endpoints.
func (s *Store) SetEndpointFailing(ctx context.Context, name string, since time.Time) error {
	_, err := s.db.ExecContext(ctx, `
INSERT INTO endpoints (name, disabled_at, reason, failing_since, updated_at) VALUES (?, 0, '', ?, ?)
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
	err := s.withTx(ctx, func(tx *sql.Tx) error {
		now := dbTime(s.now())
		if _, err := tx.ExecContext(ctx, `
INSERT INTO endpoints (name, disabled_at, reason, failing_since, updated_at) VALUES (?, ?, ?, 0, ?)
ON CONFLICT (name) DO UPDATE SET
	disabled_at = CASE WHEN disabled_at = 0 THEN excluded.disabled_at ELSE disabled_at END,
	reason      = CASE WHEN disabled_at = 0 THEN excluded.reason ELSE reason END,
	updated_at  = excluded.updated_at`,
			name, dbTime(at), reason, now); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `UPDATE jobs SET state = 'held', updated_at = ?
WHERE kind = 'webhook' AND target = ? AND state = 'pending'`, now, name)
		if err != nil {
			return err
		}
		held, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("disable endpoint %q: %w", name, err)
	}
	return int(held), nil
}

// EnableEndpoint implements store.Endpoints.
func (s *Store) EnableEndpoint(ctx context.Context, name string, now time.Time) (int, error) {
	var released int64
	err := s.withTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE endpoints
SET disabled_at = 0, reason = '', failing_since = 0, updated_at = ? WHERE name = ?`, dbTime(s.now()), name); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `UPDATE jobs SET state = 'pending', next_at = ?, updated_at = ?
WHERE kind = 'webhook' AND target = ? AND state = 'held'`, dbTime(now), dbTime(now), name)
		if err != nil {
			return err
		}
		released, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("enable endpoint %q: %w", name, err)
	}
	if released > 0 {
		s.broadcast()
	}
	return int(released), nil
}

// TargetCounts implements store.OutboxAdmin.
func (s *Store) TargetCounts(ctx context.Context, kind string) (map[string]map[string]int, error) {
	rows, err := s.db.QueryContext(ctx,
		`SELECT target, state, COUNT(*) FROM jobs WHERE kind = ? GROUP BY target, state`, kind)
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
