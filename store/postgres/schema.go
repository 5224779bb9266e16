package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mailhook/mailhook/store"
)

// ErrSchemaTooNew is store.ErrSchemaTooNew: the database was migrated by a newer mailhook; this
// binary refuses to touch it. A running replica that finds it at a lease renewal stops (a rolling
// upgrade has passed it).
var ErrSchemaTooNew = store.ErrSchemaTooNew

// migrationLock is the key of the transaction-scoped advisory lock that serialises migrations:
// replicas starting at once migrate once, the others wait and find the work done.
const migrationLock int64 = 0x6d61696c686f6f6b // "mailhook"

// migrations returns the schema history: migration i (0-based) brings the database from schema
// version i to i+1. Append a new migration to change the schema; never edit one that has shipped.
// Migrations are additive only (new tables, columns with defaults, indexes), so a replica of the
// previous version keeps working during a rolling upgrade until it sees the new version.
//
// Conventions: lease and replica times are the database's clock (timestamptz, clock_timestamp());
// epochs only grow. The store's own times are bigint Unix nanoseconds in UTC (0 = unknown), as the
// callers pass them (the contract's "now"), UIDs and UIDVALIDITY bigint, ids text.
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
		// 2: the store proper, as in the SQLite backend: checkpoints, seen keys, fetch records and
		// strikes, the outbox (claims with owner and expiry), the reply ledger, the download budget,
		// endpoint health; and lock rows that serialise the shared limits of one account.
		`
CREATE TABLE checkpoints (
	account           text   NOT NULL,
	mailbox           text   NOT NULL,
	uidvalidity       bigint NOT NULL,
	last_uid          bigint NOT NULL,
	last_internaldate bigint NOT NULL,
	updated_at        bigint NOT NULL,
	PRIMARY KEY (account, mailbox)
);

CREATE TABLE seen_keys (
	account text   NOT NULL,
	mailbox text   NOT NULL,
	key     text   NOT NULL,
	seen_at bigint NOT NULL,
	PRIMARY KEY (account, mailbox, key)
);
CREATE INDEX seen_keys_seen_at ON seen_keys (seen_at);

CREATE TABLE fetch_records (
	account     text   NOT NULL,
	mailbox     text   NOT NULL,
	uidvalidity bigint NOT NULL,
	lo          bigint NOT NULL,
	hi          bigint NOT NULL,
	begun_at    bigint NOT NULL,
	PRIMARY KEY (account, mailbox)
);

CREATE TABLE fetch_strikes (
	account     text    NOT NULL,
	mailbox     text    NOT NULL,
	uidvalidity bigint  NOT NULL,
	uid         bigint  NOT NULL,
	strikes     integer NOT NULL CHECK (strikes > 0),
	last_error  text    NOT NULL,
	updated_at  bigint  NOT NULL,
	PRIMARY KEY (account, mailbox, uidvalidity, uid)
);

-- The outbox. seq is the insertion order (FIFO among jobs due at once); id the stable JobID.
-- claim_owner and claim_expires describe the claim of an in-flight job ('' and 0 otherwise).
CREATE TABLE jobs (
	seq           bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	id            text    NOT NULL UNIQUE,
	kind          text    NOT NULL CHECK (kind <> ''),
	target        text    NOT NULL,
	account       text    NOT NULL,
	mailbox       text    NOT NULL,
	uidvalidity   bigint  NOT NULL,
	uid           bigint  NOT NULL,
	rule          text    NOT NULL,
	state         text    NOT NULL
		CHECK (state IN ('pending', 'in_flight', 'done', 'dead', 'unknown', 'held')),
	next_at       bigint  NOT NULL,
	attempts      integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
	last_error    text    NOT NULL DEFAULT '',
	body          bytea,
	created_at    bigint  NOT NULL,
	updated_at    bigint  NOT NULL,
	claim_owner   text    NOT NULL DEFAULT '',
	claim_expires bigint  NOT NULL DEFAULT 0
);
CREATE INDEX jobs_due ON jobs (kind, target, next_at, seq) WHERE state = 'pending';
CREATE INDEX jobs_due_any ON jobs (kind, next_at, seq) WHERE state = 'pending';
CREATE INDEX jobs_state ON jobs (state, updated_at);
CREATE INDEX jobs_in_flight ON jobs (claim_owner, claim_expires) WHERE state = 'in_flight';
CREATE INDEX jobs_mailbox ON jobs (account, mailbox);

CREATE TABLE job_deps (
	job_id text    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
	dep_id text    NOT NULL,
	pos    integer NOT NULL,
	PRIMARY KEY (job_id, dep_id)
);
CREATE INDEX job_deps_dep ON job_deps (dep_id);

CREATE TABLE attempts (
	seq    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	job_id text   NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
	at     bigint NOT NULL,
	status text   NOT NULL,
	error  text   NOT NULL DEFAULT ''
);
CREATE INDEX attempts_job ON attempts (job_id, seq);

CREATE TABLE reply_ledger (
	account    text   NOT NULL,
	sender     text   NOT NULL,
	reply      text   NOT NULL,
	sent_at    bigint NOT NULL,
	expires_at bigint NOT NULL,
	message_id text   NOT NULL,
	PRIMARY KEY (account, sender, reply)
);
CREATE INDEX reply_ledger_expires ON reply_ledger (expires_at);

CREATE TABLE reply_sends (
	message_id text   NOT NULL PRIMARY KEY,
	account    text   NOT NULL,
	sent_at    bigint NOT NULL
);
CREATE INDEX reply_sends_account ON reply_sends (account, sent_at);

CREATE TABLE reply_pauses (
	account text   NOT NULL PRIMARY KEY,
	until   bigint NOT NULL,
	reason  text   NOT NULL
);

CREATE TABLE budget_buckets (
	account text   NOT NULL,
	start   bigint NOT NULL,
	bytes   bigint NOT NULL CHECK (bytes >= 0),
	PRIMARY KEY (account, start)
);

CREATE TABLE budget_state (
	account         text   NOT NULL PRIMARY KEY,
	throttled_until bigint NOT NULL,
	reason          text   NOT NULL,
	updated_at      bigint NOT NULL
);

CREATE TABLE budget_holds (
	id         text   NOT NULL PRIMARY KEY,
	account    text   NOT NULL,
	bytes      bigint NOT NULL CHECK (bytes >= 0),
	expires_at bigint NOT NULL
);
CREATE INDEX budget_holds_account ON budget_holds (account, expires_at);

CREATE TABLE endpoints (
	name          text   NOT NULL PRIMARY KEY,
	disabled_at   bigint NOT NULL,
	reason        text   NOT NULL,
	failing_since bigint NOT NULL,
	updated_at    bigint NOT NULL
);

-- One row per (scope, key) whose check-then-act must not interleave across replicas (the reply
-- ledger and daily cap of an account, its download budget): a transaction locks the row first.
CREATE TABLE serial_locks (
	scope text NOT NULL,
	key   text NOT NULL,
	PRIMARY KEY (scope, key)
);
`,
		// 3: cluster-wide concurrency limits (a webhook endpoint's concurrency across replicas):
		// one row per unit, held by a replica until it releases it or its expiry (renewed with the
		// replica's leases) passes; see slots.go. OAuth refresh tokens rotated by any replica, one
		// refresh at a time per account; see tokens.go. Blobs: inline-attachment octets of queued
		// webhooks, in chunks, so any replica can deliver any job; see blobs.go.
		`
CREATE TABLE concurrency_slots (
	name       text        NOT NULL,
	slot       integer     NOT NULL,
	holder     text        NOT NULL,
	expires_at timestamptz NOT NULL,
	PRIMARY KEY (name, slot)
);
CREATE INDEX concurrency_slots_holder ON concurrency_slots (holder);

CREATE TABLE blob_chunks (
	key  text    NOT NULL, -- e.g. a job id and a section
	seq  integer NOT NULL, -- chunk number from 0
	data bytea   NOT NULL,
	PRIMARY KEY (key, seq)
);

CREATE TABLE oauth_tokens (
	name          text   NOT NULL PRIMARY KEY, -- the account
	refresh_token text   NOT NULL,             -- '' until the first rotation
	updated_at    bigint NOT NULL
);
`,
		// 4: when a blob was stored, so a sweep removes the blobs of jobs that never committed
		// once they are old enough (they are stored just before their job commits).
		`
ALTER TABLE blob_chunks ADD COLUMN stored_at bigint NOT NULL DEFAULT 0;
`,
		// 5: installation-wide values; the key of the HMAC our replies carry (key.go).
		`
CREATE TABLE installation (
	name  text  NOT NULL PRIMARY KEY,
	value bytea NOT NULL
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
