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

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mailhook/mailhook/store"
)

// Options are the PostgreSQL-specific settings of a Store; the zero value gives the documented
// defaults. The store's general options (clock, retention, claim owner and TTL, shared mode) are
// store.Options.
type Options struct {
	// Lease tunes the mailbox leases.
	Lease LeaseOptions
	// MaxConns is the pool size for the store's own transactions. Default 8. Leases and heartbeats
	// use a separate pool of 2 connections, and wake-ups one more, so renewals never queue behind
	// deliveries.
	MaxConns int32
	// Logger receives lease and wake-up events; default slog.Default().
	Logger *slog.Logger
}

// Store is mailhook's state in PostgreSQL, shared by every replica that opens the same database:
// a store.Backend whose mailbox writers are fenced by the leases of [Store.Leases].
type Store struct {
	pool      *pgxpool.Pool // the store's transactions
	leasePool *pgxpool.Pool // renewals and heartbeats
	replica   string        // lease holder and claim owner
	host      string
	log       *slog.Logger

	now           func() time.Time
	seenTTL       time.Duration
	doneRetention time.Duration
	claimTTL      time.Duration
	shared        bool

	leases *Leases

	mu         sync.Mutex
	wake       chan struct{} // closed and replaced by broadcastLocal
	slotsFreed chan struct{} // closed and replaced by broadcastSlots
	lastPrune  time.Time

	stopListen context.CancelFunc
	listenDone chan struct{}
	closeOnce  sync.Once
}

var _ store.Backend = (*Store)(nil)

// Open connects to the database at dsn, checks that it can be used (reachable, permitted) and
// brings its schema to this binary's version (or, with opts.Shared, checks that it is exactly that).
// opts.Owner, when set, is the replica id (lease holder and claim owner); by default it is the
// host name, the process id and a random suffix. Errors name the host and the cause, never the
// password.
func Open(ctx context.Context, dsn string, opts store.Options, pgOpts Options) (*Store, error) {
	if pgOpts.Logger == nil {
		pgOpts.Logger = slog.Default()
	}
	pgOpts.Lease = pgOpts.Lease.withDefaults()
	if pgOpts.MaxConns <= 0 {
		pgOpts.MaxConns = 8
	}
	host, _ := os.Hostname()
	replica := opts.Owner
	if replica == "" {
		var b [4]byte
		_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
		replica = host + "-" + strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(b[:])
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// The parse error may quote the dsn, password included: say what is wrong without it.
		return nil, errors.New("open postgres store: the dsn is not a valid PostgreSQL connection string or URL (not shown: it may hold a password)")
	}
	where := "postgres " + target(cfg.ConnConfig.Config)
	rt := cfg.ConnConfig.RuntimeParams
	if rt["application_name"] == "" {
		rt["application_name"] = "mailhook " + replica
	}
	// A replica frozen inside a transaction (SIGSTOP, a suspended VM) must not keep lease rows
	// locked: the server ends a session idle in a transaction after half a lease TTL.
	rt["idle_in_transaction_session_timeout"] = strconv.FormatInt(max(pgOpts.Lease.TTL/2, time.Second).Milliseconds(), 10)
	cfg.MaxConns = pgOpts.MaxConns
	leaseCfg := cfg.Copy()
	leaseCfg.MaxConns = 2
	listenCfg := cfg.ConnConfig.Copy()

	s := &Store{
		replica:       replica,
		host:          host,
		log:           pgOpts.Logger,
		now:           opts.Now,
		seenTTL:       opts.SeenTTL,
		doneRetention: opts.DoneRetention,
		claimTTL:      opts.ClaimTTL,
		shared:        opts.Shared,
		wake:          make(chan struct{}),
		slotsFreed:    make(chan struct{}),
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.seenTTL <= 0 {
		s.seenTTL = store.DefaultSeenTTL
	}
	if s.doneRetention <= 0 {
		s.doneRetention = store.DefaultDoneRetention
	}
	if s.claimTTL <= 0 {
		s.claimTTL = store.DefaultClaimTTL
	}
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
	s.leases = newLeases(s.leasePool, s.replica, host, pgOpts.Lease, s.log)
	lctx, cancel := context.WithCancel(context.Background())
	s.stopListen = cancel
	s.listenDone = make(chan struct{})
	go func() {
		defer close(s.listenDone)
		s.listen(lctx, listenCfg, map[string]func(){
			notifyLeases: s.leases.Wake, notifyOutbox: s.broadcastLocal, notifySlots: s.broadcastSlots})
	}()
	return s, nil
}

// target describes where a connection goes, for error messages: host, port, user and database,
// never the password.
func target(c pgconn.Config) string {
	return fmt.Sprintf("%s:%d (user %s, database %s)", c.Host, c.Port, c.User, c.Database)
}

// cause strips pgx's "failed to connect to `user=… database=…`:" prefix (our message names the
// target already) and returns the error below it.
func cause(err error) error {
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		if inner := errors.Unwrap(ce); inner != nil {
			return inner
		}
	}
	return err
}

// Replica returns this store's replica id: its lease holder and claim owner name.
func (s *Store) Replica() string { return s.replica }

// Leases returns the store's lease manager: Run it to watch mailboxes; mailbox writers are fenced
// on the epochs it holds.
func (s *Store) Leases() *Leases { return s.leases }

// Close releases the leases this handle still holds (Leases.Run releases its own on the way out;
// this covers leases taken with Acquire), stops the wake-up listener and closes the connections.
// It does not wait for callers still inside a method. Closing twice is harmless.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.leases.releaseAll(ctx)
		s.stopListen()
		<-s.listenDone
		s.leasePool.Close()
		s.pool.Close()
	})
	return nil
}

// Wake implements store.Outbox: a broadcast channel, closed and replaced at every change of any
// replica that may make a job claimable (this handle's own changes directly, the others' through
// NOTIFY).
func (s *Store) Wake() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.wake
}

// broadcastLocal wakes every waiter of the current Wake channel and arms a new one.
func (s *Store) broadcastLocal() {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.wake)
	s.wake = make(chan struct{})
}

// notifyOutbox, inside a transaction, queues the wake-up of the other replicas for its commit.
func notifyOutboxTx(ctx context.Context, tx pgx.Tx) error {
	_, err := tx.Exec(ctx, `SELECT pg_notify($1, '')`, notifyOutbox)
	return err
}

// withTx runs fn in one transaction and commits it if fn succeeds.
func (s *Store) withTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, s.pool, fn)
}

// dbTime converts t to the stored form: Unix nanoseconds, 0 for the zero time.
func dbTime(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// goTime converts a stored time back; 0 is the zero time, others are in UTC.
func goTime(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}
