package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/mailhook/mailhook/store"
)

// migrations returns the schema history: migration i (0-based) brings the database from
// PRAGMA user_version i to i+1. Append a new migration to change the schema; never edit one that
// has shipped (an existing state directory replays only the migrations after its version).
//
// Conventions: times are INTEGER Unix nanoseconds in UTC (0 = unknown), UIDs and UIDVALIDITY are
// INTEGER (uint32), ids are TEXT.
func migrations() []string {
	return []string{
		// 1: checkpoints, seen keys, outbox.
		`
CREATE TABLE checkpoints (
	account           TEXT    NOT NULL,
	mailbox           TEXT    NOT NULL,
	uidvalidity       INTEGER NOT NULL,
	last_uid          INTEGER NOT NULL,
	last_internaldate INTEGER NOT NULL,
	updated_at        INTEGER NOT NULL,
	PRIMARY KEY (account, mailbox)
) WITHOUT ROWID;

-- Stable keys (Message-ID or header hash, plus size) of processed messages, so a re-scan after a
-- UIDVALIDITY change repeats nothing. Kept store.Options.SeenTTL (30 days).
CREATE TABLE seen_keys (
	account TEXT    NOT NULL,
	mailbox TEXT    NOT NULL,
	key     TEXT    NOT NULL,
	seen_at INTEGER NOT NULL,
	PRIMARY KEY (account, mailbox, key)
) WITHOUT ROWID;
CREATE INDEX seen_keys_seen_at ON seen_keys (seen_at);

-- The outbox. seq is the insertion order (FIFO claiming; an INTEGER PRIMARY KEY survives VACUUM,
-- a bare rowid does not); id is the stable store.JobID, unique, so replaying a message inserts nothing.
CREATE TABLE jobs (
	seq         INTEGER PRIMARY KEY,
	id          TEXT    NOT NULL UNIQUE,
	kind        TEXT    NOT NULL CHECK (kind <> ''),
	target      TEXT    NOT NULL,
	account     TEXT    NOT NULL,
	mailbox     TEXT    NOT NULL,
	uidvalidity INTEGER NOT NULL,
	uid         INTEGER NOT NULL,
	rule        TEXT    NOT NULL,
	state       TEXT    NOT NULL
		CHECK (state IN ('pending', 'in_flight', 'done', 'dead', 'unknown', 'held')),
	next_at     INTEGER NOT NULL,
	attempts    INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
	last_error  TEXT    NOT NULL DEFAULT '',
	body        BLOB,
	created_at  INTEGER NOT NULL,
	updated_at  INTEGER NOT NULL
);
-- Claiming and NextDue: only pending jobs, by kind and target, earliest first.
CREATE INDEX jobs_due ON jobs (kind, target, next_at) WHERE state = 'pending';
-- Listing and counting by state; pruning done jobs by age.
CREATE INDEX jobs_state ON jobs (state, updated_at);

-- depends_on, one row per edge, in the caller's order (pos). dep_id carries no foreign key: a
-- dependency that does not exist holds the job, and Drop decides what may go.
CREATE TABLE job_deps (
	job_id TEXT    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
	dep_id TEXT    NOT NULL,
	pos    INTEGER NOT NULL,
	PRIMARY KEY (job_id, dep_id)
) WITHOUT ROWID;
CREATE INDEX job_deps_dep ON job_deps (dep_id);

CREATE TABLE attempts (
	seq    INTEGER PRIMARY KEY,
	job_id TEXT    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
	at     INTEGER NOT NULL,
	status TEXT    NOT NULL,
	error  TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX attempts_job ON attempts (job_id, seq);
`,
		// 2: reply ledger (once per (account, sender, reply) per once_per), the record of sent replies
		// (rolling 24 h cap, our own Message-IDs) and per-account sending pauses; see replies.go.
		`
CREATE TABLE reply_ledger (
	account    TEXT    NOT NULL,
	sender     TEXT    NOT NULL, -- lower-cased recipient of the reply
	reply      TEXT    NOT NULL,
	sent_at    INTEGER NOT NULL,
	expires_at INTEGER NOT NULL,
	message_id TEXT    NOT NULL,
	PRIMARY KEY (account, sender, reply)
) WITHOUT ROWID;
CREATE INDEX reply_ledger_expires ON reply_ledger (expires_at);

CREATE TABLE reply_sends (
	message_id TEXT    NOT NULL PRIMARY KEY, -- with angle brackets, as in the header
	account    TEXT    NOT NULL,
	sent_at    INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX reply_sends_account ON reply_sends (account, sent_at);

CREATE TABLE reply_pauses (
	account TEXT    NOT NULL PRIMARY KEY,
	until   INTEGER NOT NULL,
	reason  TEXT    NOT NULL
) WITHOUT ROWID;
`,
		// 3: budget ledger: IMAP bytes downloaded per account in time buckets (the rolling 24 h
		// download budget survives a restart) and each account's last throttle decision; see budget.go.
		`
CREATE TABLE budget_buckets (
	account TEXT    NOT NULL,
	start   INTEGER NOT NULL, -- bucket start, Unix nanoseconds
	bytes   INTEGER NOT NULL CHECK (bytes >= 0),
	PRIMARY KEY (account, start)
) WITHOUT ROWID;

CREATE TABLE budget_state (
	account         TEXT    NOT NULL PRIMARY KEY,
	throttled_until INTEGER NOT NULL, -- 0 = not throttled
	reason          TEXT    NOT NULL,
	updated_at      INTEGER NOT NULL
) WITHOUT ROWID;
`,
		// 4: webhook endpoint health: when an endpoint was disabled (HTTP 410, or failing without a
		// success for its disable_after period) and why, and since when it has been failing; see
		// endpoints.go. An endpoint without a row is enabled and healthy.
		`
CREATE TABLE endpoints (
	name          TEXT    NOT NULL PRIMARY KEY, -- the webhook name (jobs.target)
	disabled_at   INTEGER NOT NULL,             -- 0 = enabled
	reason        TEXT    NOT NULL,             -- why it was disabled; '' when enabled
	failing_since INTEGER NOT NULL,             -- first failure since the last success; 0 = not failing
	updated_at    INTEGER NOT NULL
) WITHOUT ROWID;
`,
		// 5: claiming and NextDue across targets (the any-target webhook worker, replies by account,
		// post-actions by mailbox) in due order without sorting every pending job of the kind; see
		// Claim.
		`
CREATE INDEX jobs_due_any ON jobs (kind, next_at) WHERE state = 'pending';
`,
		// 6: claim owner and expiry of in-flight jobs (see Claim, Heartbeat, Recover). Jobs left in
		// flight by an older binary have no expiry (0): they count as expired.
		`
ALTER TABLE jobs ADD COLUMN claim_owner   TEXT    NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN claim_expires INTEGER NOT NULL DEFAULT 0;
CREATE INDEX jobs_in_flight ON jobs (claim_owner, claim_expires) WHERE state = 'in_flight';
`,
		// 7: fetch records (one per mailbox: the UID range being fetched) and fetch strikes (failed
		// fetches of one message), so that a message that kills the process is recognised after a
		// restart; see fetch.go.
		`
CREATE TABLE fetch_records (
	account     TEXT    NOT NULL,
	mailbox     TEXT    NOT NULL,
	uidvalidity INTEGER NOT NULL,
	lo          INTEGER NOT NULL,
	hi          INTEGER NOT NULL,
	begun_at    INTEGER NOT NULL,
	PRIMARY KEY (account, mailbox)
) WITHOUT ROWID;

CREATE TABLE fetch_strikes (
	account     TEXT    NOT NULL,
	mailbox     TEXT    NOT NULL,
	uidvalidity INTEGER NOT NULL,
	uid         INTEGER NOT NULL,
	strikes     INTEGER NOT NULL CHECK (strikes > 0),
	last_error  TEXT    NOT NULL,
	updated_at  INTEGER NOT NULL,
	PRIMARY KEY (account, mailbox, uidvalidity, uid)
) WITHOUT ROWID;
`,
		// 8: download-budget reservations of fetches under way; see budget.go.
		`
CREATE TABLE budget_holds (
	id         TEXT    NOT NULL PRIMARY KEY,
	account    TEXT    NOT NULL,
	bytes      INTEGER NOT NULL CHECK (bytes >= 0),
	expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX budget_holds_account ON budget_holds (account, expires_at);
`,
		// 9: installation-wide values; the key of the HMAC our replies carry (key.go).
		`
CREATE TABLE installation (
	name  TEXT NOT NULL PRIMARY KEY,
	value BLOB NOT NULL
) WITHOUT ROWID;
`,
	}
}

// migrate brings db to the newest schema this binary knows, one transaction per migration, each
// setting PRAGMA user_version (transactional in SQLite) with its own changes. A database whose
// user_version is newer is refused with ErrSchemaTooNew and left untouched.
func migrate(ctx context.Context, db *sql.DB, path string) error {
	var version int
	if err := db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return fmt.Errorf("read schema version of %s: %w", path, err)
	}
	ms := migrations()
	if version > len(ms) {
		return fmt.Errorf("open %s: schema version %d, this binary knows up to %d (upgrade mailhook or restore an older state directory): %w",
			path, version, len(ms), store.ErrSchemaTooNew)
	}
	if version < 0 {
		return fmt.Errorf("open %s: invalid schema version %d", path, version)
	}
	for v := version; v < len(ms); v++ {
		if err := migrateOne(ctx, db, ms[v], v+1); err != nil {
			return fmt.Errorf("migrate %s to schema version %d: %w", path, v+1, err)
		}
	}
	return nil
}

// sameSchema refuses a database whose schema version is not exactly this binary's: a tool beside a
// running daemon must neither migrate under it nor misread a schema it does not know.
func sameSchema(ctx context.Context, db *sql.DB, path string) error {
	var version int
	if err := db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return fmt.Errorf("read schema version of %s: %w", path, err)
	}
	if want := len(migrations()); version != want {
		return fmt.Errorf("open %s beside the running daemon: schema version %d, this binary uses %d (run the same mailhook version as the daemon)", path, version, want)
	}
	return nil
}

// toolSchema is migrate for an operator tool with the state to itself: it creates the schema of an
// empty database, but refuses an older schema rather than migrate it under the operator's feet
// (the daemon, which owns the state, migrates it when it starts) and a newer one (ErrSchemaTooNew).
func toolSchema(ctx context.Context, db *sql.DB, path string) error {
	var version int
	if err := db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return fmt.Errorf("read schema version of %s: %w", path, err)
	}
	if want := len(migrations()); version > 0 && version < want {
		return fmt.Errorf("open %s: schema version %d, this mailhook uses %d: an older mailhook wrote it, and this command migrates nothing; run the daemon (mailhook run) of this version once to migrate it, then try again: %w",
			path, version, want, store.ErrSchemaTooOld)
	}
	return migrate(ctx, db, path)
}

func migrateOne(ctx context.Context, db *sql.DB, stmts string, to int) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() // no-op after Commit
	if _, err := tx.ExecContext(ctx, stmts); err != nil {
		return err
	}
	// PRAGMA takes no bound parameters; to is an int from this package.
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", to)); err != nil {
		return err
	}
	return tx.Commit()
}
