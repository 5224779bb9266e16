package sqlite

import (
	"context"
	"database/sql"
	"sync"
)

// stmtCache keeps the prepared statements of the outbox's hot paths (claiming and finishing jobs),
// which SQLite would otherwise parse and plan afresh on every call: with a backlog, parsing cost
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
