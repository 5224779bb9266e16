package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrSchemaTooNew: the database was migrated by a newer mailhook; this binary refuses to touch it.
// A running replica that finds it at a lease renewal stops (a rolling upgrade has passed it).
var ErrSchemaTooNew = errors.New("database schema is newer than this binary supports")

// migrationLock is the key of the transaction-scoped advisory lock that serialises migrations:
// replicas starting at once migrate once, the others wait and find the work done.
const migrationLock int64 = 0x6d61696c686f6f6b // "mailhook"

// migrations returns the schema history: migration i (0-based) brings the database from schema
// version i to i+1. Append a new migration to change the schema; never edit one that has shipped.
// Migrations are additive only (new tables, columns with defaults, indexes), so a replica of the
// previous version keeps working during a rolling upgrade until it sees the new version.
//
// Conventions: lease and replica times are the database's clock (timestamptz, clock_timestamp());
// epochs only grow.
func migrations() []string {
	return []string{
		// 1: mailbox leases and live replicas.
		`
-- One row per (account, mailbox) any replica wants to watch. holder is the replica id ('' before
-- the first acquisition and once released, with expires_at -infinity); epoch grows by one at every
-- acquisition and never at a renewal, so a write fenced on (holder, epoch) fails once another
-- replica has taken the mailbox over.
CREATE TABLE mailbox_leases (
	account     text        NOT NULL,
	mailbox     text        NOT NULL,
	holder      text        NOT NULL,
	epoch       bigint      NOT NULL CHECK (epoch >= 0),
	expires_at  timestamptz NOT NULL,
	acquired_at timestamptz NOT NULL,
	PRIMARY KEY (account, mailbox)
);
CREATE INDEX mailbox_leases_holder ON mailbox_leases (holder);

-- Replicas with a heartbeat: the live ones (expires_at in the future) share the mailboxes.
CREATE TABLE replicas (
	id           text        NOT NULL PRIMARY KEY,
	host         text        NOT NULL,
	started_at   timestamptz NOT NULL,
	heartbeat_at timestamptz NOT NULL,
	expires_at   timestamptz NOT NULL
);
`,
	}
}

// SchemaVersion is the schema version this binary creates and expects.
func SchemaVersion() int { return len(migrations()) }

// migrate brings the database to SchemaVersion in one transaction under an advisory lock. A
// database whose version is newer is refused with ErrSchemaTooNew and left untouched.
func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", migrationLock); err != nil {
			return fmt.Errorf("lock schema: %w", err)
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_version (
	only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
	version  integer NOT NULL
)`); err != nil {
			return fmt.Errorf("create schema_version: %w", err)
		}
		version, err := readVersion(ctx, tx)
		if err != nil {
			return err
		}
		ms := migrations()
		if version > len(ms) {
			return tooNew(version)
		}
		for v := version; v < len(ms); v++ {
			if _, err := tx.Exec(ctx, ms[v]); err != nil {
				return fmt.Errorf("migrate to schema version %d: %w", v+1, err)
			}
		}
		if _, err := tx.Exec(ctx, `INSERT INTO schema_version (version) VALUES ($1)
ON CONFLICT (only_row) DO UPDATE SET version = excluded.version`, len(ms)); err != nil {
			return fmt.Errorf("record schema version: %w", err)
		}
		return nil
	})
}

// checkSchema refuses a database whose schema version is not exactly this binary's: an operator
// tool must neither migrate under running replicas nor misread a schema it does not know.
func checkSchema(ctx context.Context, q querier) error {
	version, err := readVersion(ctx, q)
	if err != nil {
		return err
	}
	if version > SchemaVersion() {
		return tooNew(version)
	}
	if version < SchemaVersion() {
		return fmt.Errorf("database schema version %d, this binary uses %d: start a replica of this version first (it migrates)", version, SchemaVersion())
	}
	return nil
}

func tooNew(version int) error {
	return fmt.Errorf("database schema version %d, this binary knows up to %d (a newer mailhook has migrated it: upgrade this replica): %w",
		version, SchemaVersion(), ErrSchemaTooNew)
}

// querier is what pgx.Tx, *pgx.Conn and *pgxpool.Pool have in common for reading.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// readVersion returns the recorded schema version, 0 for an empty database.
func readVersion(ctx context.Context, q querier) (int, error) {
	var version int
	err := q.QueryRow(ctx, `SELECT coalesce((SELECT version FROM schema_version), 0)`).Scan(&version)
	if err != nil {
		// An empty database has no schema_version table yet.
		if isUndefinedTable(err) {
			return 0, nil
		}
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	return version, nil
}
