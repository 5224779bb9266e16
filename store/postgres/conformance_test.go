package postgres

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/mailhook/mailhook/internal/testmail"
	"github.com/mailhook/mailhook/store"
	"github.com/mailhook/mailhook/store/storetest"
)

// leased is a Store whose Mailbox first takes the mailbox's lease (Leases.Acquire), as the
// daemon's lease manager would have: the conformance suite writes through writers without
// competing for leases. A lease still held by an earlier handle of the same state (a "killed"
// process) is expired first, as its TTL would.
type leased struct{ *Store }

func (l leased) Mailbox(ctx context.Context, account, mailbox string) (store.MailboxWriter, error) {
	if _, ok := l.leases.Epoch(account, mailbox); !ok {
		_, err := l.leases.Acquire(ctx, account, mailbox)
		if errors.Is(err, ErrLeaseHeld) {
			if _, err := l.pool.Exec(ctx, `UPDATE mailbox_leases SET expires_at = '-infinity' WHERE account = $1 AND mailbox = $2`,
				account, mailbox); err != nil {
				return nil, err
			}
			_, err = l.leases.Acquire(ctx, account, mailbox)
		}
		if err != nil {
			return nil, err
		}
	}
	return l.Store.Mailbox(ctx, account, mailbox)
}

func TestConformance(t *testing.T) {
	pg := testmail.StartPostgres(t, testmail.PostgresOptions{})
	// One database, emptied for each state: creating a database per test costs about a second.
	dsn := pg.NewDatabase(t)
	admin := openStore(t, dsn, testOpts{replica: "admin"}) // migrates
	rows, _ := admin.pool.Query(context.Background(), `SELECT tablename FROM pg_tables
WHERE schemaname = current_schema() AND tablename <> 'schema_version'`)
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(tables) == 0 {
		t.Fatalf("list tables: %v", err)
	}
	storetest.Run(t, func(t testing.TB) storetest.Opener {
		if _, err := admin.pool.Exec(context.Background(), "TRUNCATE "+strings.Join(tables, ", ")+" RESTART IDENTITY CASCADE"); err != nil {
			t.Fatalf("empty the state: %v", err)
		}
		return func(opts store.Options) (store.Backend, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			s, err := Open(ctx, dsn, opts, Options{Logger: quietLog()})
			if err != nil {
				return nil, err
			}
			return leased{s}, nil
		}
	})
}
