package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// fence is the first statement of every transaction that writes for a mailbox: it checks that
// this replica still holds the mailbox's lease at epoch and keeps the lease row share-locked until
// the transaction ends. A takeover (an UPDATE of the row) therefore waits for the transaction, and
// a fence that waited behind a takeover re-reads the row under READ COMMITTED and finds nothing:
// either way no write of a stale holder lands after a new holder's first. FOR SHARE, not FOR KEY
// SHARE: the latter does not conflict with an UPDATE that leaves the key alone.
func (s *Store) fence(ctx context.Context, tx pgx.Tx, account, mailbox string, epoch int64) error {
	var one int
	err := tx.QueryRow(ctx, `SELECT 1 FROM mailbox_leases
WHERE account = $1 AND mailbox = $2 AND holder = $3 AND epoch = $4
FOR SHARE`, account, mailbox, s.replica, epoch).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrLeaseLost
	}
	if err != nil {
		if isSerialization(err) {
			return ErrLeaseLost
		}
		return fmt.Errorf("check mailbox lease: %w", err)
	}
	return nil
}

// fenced runs fn in a transaction fenced on the lease of (account, mailbox) at epoch and commits
// it. It returns ErrLeaseLost, with nothing written, when the lease is no longer this replica's at
// that epoch, including when the database could not order the transaction after a concurrent
// takeover (a serialization failure or deadlock).
func (s *Store) fenced(ctx context.Context, account, mailbox string, epoch int64, fn func(pgx.Tx) error) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := s.fence(ctx, tx, account, mailbox, epoch); err != nil {
			return err
		}
		return fn(tx)
	})
	if err != nil && !errors.Is(err, ErrLeaseLost) && isSerialization(err) {
		return fmt.Errorf("%w: %v", ErrLeaseLost, err)
	}
	return err
}
