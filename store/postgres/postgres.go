package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Options tune a Store; the zero value gives the documented defaults.
type Options struct {
	// Replica is this process's id among the replicas sharing the database, the holder name of
	// its leases. Default: host name, process id and a random suffix (unique per start).
	Replica string
	// Lease tunes the mailbox leases.
	Lease LeaseOptions
	// MaxConns is the pool size for the store's own transactions. Default 8. Leases and heartbeats
	// use a separate pool of 2 connections, and wake-ups one more, so renewals never queue behind
	// deliveries.
	MaxConns int32
	// Shared opens the store for an operator tool beside running replicas: nothing is migrated,
	// and a schema version other than this binary's is refused.
	Shared bool
	// Logger receives lease events; default slog.Default().
	Logger *slog.Logger
}

// Store is mailhook's state in PostgreSQL, shared by every replica that opens the same database.
type Store struct {
	pool      *pgxpool.Pool // the store's transactions
	leasePool *pgxpool.Pool // renewals and heartbeats
	replica   string
	host      string
	opts      Options
	log       *slog.Logger

	leases *Leases

	stopListen context.CancelFunc
	listenDone chan struct{}
	closeOnce  sync.Once
}

// Open connects to the database at dsn, checks it can be used (reachable, permitted) and brings
// its schema to this binary's version (or, with Options.Shared, checks that it is exactly that).
// Errors name the host and the cause, never the password.
func Open(ctx context.Context, dsn string, opts Options) (*Store, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	opts.Lease = opts.Lease.withDefaults()
	if opts.MaxConns <= 0 {
		opts.MaxConns = 8
	}
	host, _ := os.Hostname()
	if opts.Replica == "" {
		var b [4]byte
		_, _ = rand.Read(b[:])
		opts.Replica = host + "-" + strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(b[:])
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// The parse error may quote the dsn, password included: say what is wrong without it.
		return nil, errors.New("open postgres store: the dsn is not a valid PostgreSQL connection string or URL (not shown: it may hold a password)")
	}
	where := "postgres " + target(cfg.ConnConfig.Config)
	rt := cfg.ConnConfig.RuntimeParams
	if rt["application_name"] == "" {
		rt["application_name"] = "mailhook " + opts.Replica
	}
	// A replica frozen inside a transaction (SIGSTOP, a suspended VM) must not keep lease rows
	// locked: the server ends a session idle in a transaction after half a lease TTL.
	rt["idle_in_transaction_session_timeout"] = strconv.FormatInt(max(opts.Lease.TTL/2, time.Second).Milliseconds(), 10)
	cfg.MaxConns = opts.MaxConns
	leaseCfg := cfg.Copy()
	listenCfg := cfg.ConnConfig.Copy()
	leaseCfg.MaxConns = 2
	leaseCfg.MinConns = 1

	s := &Store{replica: opts.Replica, host: host, opts: opts, log: opts.Logger}
	s.pool, err = pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", where, err)
	}
	if err := s.pool.Ping(ctx); err != nil {
		s.pool.Close()
		return nil, fmt.Errorf("open %s: %w", where, cause(err))
	}
	if opts.Shared {
		err = checkSchema(ctx, s.pool)
	} else {
		err = migrate(ctx, s.pool)
	}
	if err != nil {
		s.pool.Close()
		return nil, fmt.Errorf("open %s: %w", where, err)
	}
	s.leasePool, err = pgxpool.NewWithConfig(ctx, leaseCfg)
	if err != nil {
		s.pool.Close()
		return nil, fmt.Errorf("open %s: %w", where, err)
	}
	s.leases = newLeases(s.leasePool, s.replica, host, opts.Lease, s.log)
	lctx, cancel := context.WithCancel(context.Background())
	s.stopListen = cancel
	s.listenDone = make(chan struct{})
	go func() {
		defer close(s.listenDone)
		s.listen(lctx, listenCfg, map[string]func(){notifyLeases: s.leases.Wake})
	}()
	return s, nil
}

// target describes where a connection goes, for error messages: host, port, user and database,
// never the password.
func target(c pgconn.Config) string {
	return fmt.Sprintf("%s:%d (user %s, database %s)", c.Host, c.Port, c.User, c.Database)
}

// cause strips pgx's "failed to connect to `user=… database=…`:" prefix when the error names
// the same target as ours; it returns err unchanged otherwise.
func cause(err error) error {
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		if inner := errors.Unwrap(ce); inner != nil {
			return inner
		}
	}
	return err
}

// Replica returns this store's replica id.
func (s *Store) Replica() string { return s.replica }

// Leases returns the store's lease manager: Run it to watch mailboxes; writes for a mailbox are
// fenced on the epochs it holds.
func (s *Store) Leases() *Leases { return s.leases }

// Close stops the wake-up listener and closes the connections. Stop Leases.Run first: it releases
// the leases on its way out.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.stopListen()
		<-s.listenDone
		s.leasePool.Close()
		s.pool.Close()
	})
	return nil
}
