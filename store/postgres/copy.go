package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// CopyTable is one table a copy from another backend fills: its name and the columns, as both
// backends name them (the PostgreSQL schema keeps the SQLite backend's tables and columns).
type CopyTable struct {
	Name    string
	Columns []string
}

// CopyTables lists the tables of mailhook's state that move to PostgreSQL when an install leaves
// SQLite, in an order that satisfies the foreign keys (jobs before their dependencies and attempts).
// Leases and replicas are not copied: they belong to the running replicas.
func CopyTables() []CopyTable {
	return []CopyTable{
		{"checkpoints", []string{"account", "mailbox", "uidvalidity", "last_uid", "last_internaldate", "updated_at"}},
		{"seen_keys", []string{"account", "mailbox", "key", "seen_at"}},
		{"fetch_records", []string{"account", "mailbox", "uidvalidity", "lo", "hi", "begun_at"}},
		{"fetch_strikes", []string{"account", "mailbox", "uidvalidity", "uid", "strikes", "last_error", "updated_at"}},
		{"jobs", []string{"seq", "id", "kind", "target", "account", "mailbox", "uidvalidity", "uid", "rule", "state",
			"next_at", "attempts", "last_error", "body", "created_at", "updated_at", "claim_owner", "claim_expires"}},
		{"job_deps", []string{"job_id", "dep_id", "pos"}},
		{"attempts", []string{"seq", "job_id", "at", "status", "error"}},
		{"reply_ledger", []string{"account", "sender", "reply", "sent_at", "expires_at", "message_id"}},
		{"reply_sends", []string{"message_id", "account", "sent_at"}},
		{"reply_pauses", []string{"account", "until", "reason"}},
		{"budget_buckets", []string{"account", "start", "bytes"}},
		{"budget_state", []string{"account", "throttled_until", "reason", "updated_at"}},
		{"budget_holds", []string{"id", "account", "bytes", "expires_at"}},
		{"endpoints", []string{"name", "disabled_at", "reason", "failing_since", "updated_at"}},
		// The key of our replies' HMAC: replies sent before the move stay recognised.
		{"installation", []string{"name", "value"}},
	}
}

// CopySource yields the rows of one table of another backend's state, in the columns given, each
// value an int64, a string, a []byte or nil. It calls row for every row and stops at the first
// error row returns.
type CopySource func(ctx context.Context, t CopyTable, row func(values []any) error) error

// ErrNotEmpty: a copy into a store that already holds state was refused.
var ErrNotEmpty = errors.New("the PostgreSQL store is not empty")

// Empty reports whether the store holds no state yet: no checkpoint, no job, no ledger entry. A
// replica starting on an empty store while its state directory holds an SQLite database must
// refuse (the state would be left behind: start: new would skip mail, pending jobs would be lost).
func (s *Store) Empty(ctx context.Context) (bool, error) { return empty(ctx, s.pool) }

func empty(ctx context.Context, db dbtx) (bool, error) {
	var q string
	for _, t := range CopyTables() {
		if t.Name == "installation" {
			continue // a replica creates the key as it starts, before refusing an empty store
		}
		if q != "" {
			q += " OR "
		}
		q += "EXISTS (SELECT 1 FROM " + pgx.Identifier{t.Name}.Sanitize() + ")"
	}
	var some bool
	if err := db.QueryRow(ctx, "SELECT "+q).Scan(&some); err != nil {
		return false, fmt.Errorf("check whether the store is empty: %w", err)
	}
	return !some, nil
}

// CopyFrom fills an empty store with the state src yields, in one transaction: all of it or
// nothing. Jobs keep their insertion order. In-flight claims are copied as they are; their
// owners are gone, so Recover settles them once they expire. It refuses a store that is not empty
// (ErrNotEmpty) and returns the number of rows copied per table.
func (s *Store) CopyFrom(ctx context.Context, src CopySource) (map[string]int64, error) {
	counts := make(map[string]int64)
	err := s.withTx(ctx, func(tx pgx.Tx) error {
		// Serialise with replicas starting on this store meanwhile: they take the migration lock.
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", migrationLock); err != nil {
			return err
		}
		ok, err := empty(ctx, tx)
		if err != nil {
			return err
		}
		if !ok {
			return ErrNotEmpty
		}
		if _, err := tx.Exec(ctx, "DELETE FROM installation"); err != nil { // the copied install's key wins
			return err
		}
		for _, t := range CopyTables() {
			n, err := copyTable(ctx, tx, t, src)
			if err != nil {
				return fmt.Errorf("copy table %s: %w", t.Name, err)
			}
			counts[t.Name] = n
		}
		for _, t := range []string{"jobs", "attempts"} {
			if _, err := tx.Exec(ctx, `SELECT setval(pg_get_serial_sequence($1, 'seq'), coalesce((SELECT max(seq) FROM `+
				pgx.Identifier{t}.Sanitize()+`), 0) + 1, false)`, t); err != nil {
				return fmt.Errorf("copy table %s: %w", t, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("copy state into postgres: %w", err)
	}
	return counts, nil
}

// copyTable streams one table from src into tx with COPY, which writes the given identity values
// (jobs.seq) as they are.
func copyTable(ctx context.Context, tx pgx.Tx, t CopyTable, src CopySource) (int64, error) {
	rows := make(chan []any)
	srcErr := make(chan error, 1)
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		defer close(rows)
		srcErr <- src(cctx, t, func(values []any) error {
			if len(values) != len(t.Columns) {
				return fmt.Errorf("%d values for %d columns", len(values), len(t.Columns))
			}
			select {
			case rows <- values:
				return nil
			case <-cctx.Done():
				return cctx.Err()
			}
		})
	}()
	n, err := tx.CopyFrom(ctx, pgx.Identifier{t.Name}, t.Columns, &chanSource{rows: rows})
	cancel()
	for range rows { // let the source finish
	}
	if serr := <-srcErr; serr != nil && !errors.Is(serr, context.Canceled) {
		return n, serr
	}
	return n, err
}

// chanSource is a pgx.CopyFromSource over a channel of rows.
type chanSource struct {
	rows <-chan []any
	cur  []any
}

func (c *chanSource) Next() bool {
	row, ok := <-c.rows
	c.cur = row
	return ok
}

func (c *chanSource) Values() ([]any, error) { return c.cur, nil }

func (c *chanSource) Err() error { return nil }
