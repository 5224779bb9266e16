package postgres

import (
	"errors"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/mailhook/mailhook/store"
)

// ErrLeaseLost is store.ErrLeaseLost: a write for a mailbox was refused because this replica no
// longer holds the mailbox's lease at the epoch its writer carries (another replica has taken the
// mailbox over, or the lease was released). Nothing of the transaction was written; the caller
// drops its IMAP session and competes for the lease again.
var ErrLeaseLost = store.ErrLeaseLost

// SQLSTATE codes this package tells apart.
const (
	codeSerializationFailure = "40001"
	codeDeadlockDetected     = "40P01"
	codeUndefinedTable       = "42P01"
)

func sqlState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

func isUndefinedTable(err error) bool { return sqlState(err) == codeUndefinedTable }

// isSerialization reports a failure that a fenced transaction reads as a lost lease: the database
// could not order it after a concurrent takeover.
func isSerialization(err error) bool {
	c := sqlState(err)
	return c == codeSerializationFailure || c == codeDeadlockDetected
}
