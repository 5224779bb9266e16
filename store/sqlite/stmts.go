package sqlite

import (
	"context"
	"database/sql"
	"sync"
)

// stmtCache keeps the prepared statements of the hot paths (committing messages, claiming and
// finishing jobs, the lookups per message or job), which SQLite would otherwise parse and plan
// afresh on every call: with a backlog, parsing cost
// more than running them. The statements are prepared on the Store's one connection and closed
// with the database. The zero value is ready.
type stmtCache struct {
	mu sync.Mutex
	m  map[string]*sql.Stmt
}

// prepared returns query prepared on the database, preparing it on first use. Call it outside a
// transaction (the one connection would be the transaction's) and bind the result to a
// transaction with tx.StmtContext, which reuses the prepared statement.
func (s *Store) prepared(ctx context.Context, query string) (*sql.Stmt, error) {
	c := &s.stmts
	c.mu.Lock()
	st, ok := c.m[query]
	c.mu.Unlock()
	if ok {
		return st, nil
	}
	st, err := s.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if prev, ok := c.m[query]; ok { // prepared meanwhile by another caller
		_ = st.Close()
		return prev, nil
	}
	if c.m == nil {
		c.m = make(map[string]*sql.Stmt)
	}
	c.m[query] = st
	return st, nil
}

// scanRow runs a query of one row through the statement cache, outside a transaction, and scans
// it into dest (sql.ErrNoRows when there is none): for the lookups made once per message or per
// job, which would otherwise be parsed afresh each time.
func (s *Store) scanRow(ctx context.Context, query string, args []any, dest ...any) error {
	st, err := s.prepared(ctx, query)
	if err != nil {
		return err
	}
	return st.QueryRowContext(ctx, args...).Scan(dest...)
}

// preparedAll is prepared for several queries, in order.
func (s *Store) preparedAll(ctx context.Context, queries ...string) ([]*sql.Stmt, error) {
	out := make([]*sql.Stmt, len(queries))
	for i, q := range queries {
		st, err := s.prepared(ctx, q)
		if err != nil {
			return nil, err
		}
		out[i] = st
	}
	return out, nil
}

// The statements of a commit and of Enqueue, prepared once (see prepared) and bound lazily to
// the write transaction that uses them: a commit runs each of them once or more per message.
const (
	qCheckpointRead = iota
	qCheckpointInsert
	qCheckpointUpdate
	qSeenKey
	qJobInsert
	qJobExists
	qJobDep
	qFetchClear
	qStrikesClear
	nWriteQueries
)

var writeQueries = [nWriteQueries]string{
	qCheckpointRead: `SELECT uidvalidity, last_uid FROM checkpoints WHERE account = ? AND mailbox = ?`,
	qCheckpointInsert: `
INSERT INTO checkpoints (account, mailbox, uidvalidity, last_uid, last_internaldate, updated_at)
VALUES (?, ?, ?, ?, ?, ?)`,
	qCheckpointUpdate: `
UPDATE checkpoints SET last_uid = ?, last_internaldate = ?, updated_at = ?
WHERE account = ? AND mailbox = ?`,
	qSeenKey: `
INSERT INTO seen_keys (account, mailbox, key, seen_at) VALUES (?, ?, ?, ?)
ON CONFLICT (account, mailbox, key) DO UPDATE SET seen_at = excluded.seen_at`,
	qJobInsert: `
INSERT INTO jobs (id, kind, target, account, mailbox, uidvalidity, uid, rule, state, next_at,
	last_error, body, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO NOTHING`,
	qJobExists:    `SELECT 1 FROM jobs WHERE id = ?`,
	qJobDep:       `INSERT INTO job_deps (job_id, dep_id, pos) VALUES (?, ?, ?)`,
	qFetchClear:   `DELETE FROM fetch_records WHERE account = ? AND mailbox = ? AND uidvalidity = ? AND hi <= ?`,
	qStrikesClear: `DELETE FROM fetch_strikes WHERE account = ? AND mailbox = ? AND uidvalidity = ? AND uid <= ?`,
}

// writeTx is a write transaction with the commit statements at hand.
type writeTx struct {
	ctx   context.Context
	tx    *sql.Tx
	all   []*sql.Stmt // prepared on the database
	bound [nWriteQueries]*sql.Stmt
}

// stmt returns statement q bound to the transaction.
func (w *writeTx) stmt(q int) *sql.Stmt {
	if w.bound[q] == nil {
		w.bound[q] = w.tx.StmtContext(w.ctx, w.all[q])
	}
	return w.bound[q]
}

// withWriteTx runs fn in one BEGIN IMMEDIATE transaction with the commit statements prepared, and
// commits it if fn succeeds.
func (s *Store) withWriteTx(ctx context.Context, fn func(w *writeTx) error) error {
	all, err := s.preparedAll(ctx, writeQueries[:]...)
	if err != nil {
		return err
	}
	return s.withTx(ctx, func(tx *sql.Tx) error {
		return fn(&writeTx{ctx: ctx, tx: tx, all: all})
	})
}
