// Package sqlite is the SQLite backend of the store contract (package store): mailhook's state in
// one embedded database file, dir/mailhook.db (modernc.org/sqlite, WAL, synchronous=FULL), in a
// state directory that one process owns.
//
// [Open] takes an exclusive lock on dir/lock and keeps it until [Store.Close], so a second
// daemon on the same directory fails at once with store.ErrLocked. That lock is this backend's
// lease: a MailboxWriter never loses its mailbox (no ErrLeaseLost), and the claims of a previous
// process are known to be abandoned, so Recover on a handle that holds the lock settles them at
// once, expired or not. An operator tool opens the state with Options.Shared beside a running
// daemon (WAL admits concurrent processes); such a handle migrates nothing and recovers only
// expired claims.
//
// The schema is one numbered sequence of migrations (PRAGMA user_version, see schema.go): a
// change appends the next one, and a database newer than the binary is refused.
package sqlite

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mailhook/mailhook/store"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// File names inside the state directory.
const (
	dbFile   = "mailhook.db"
	lockFile = "lock"
)

// busyTimeoutMS bounds how long a statement waits for a SQLite lock. Only this process writes (the
// directory lock sees to that), so it matters only against a reader such as the sqlite3 shell.
const busyTimeoutMS = 5000

// Store is mailhook's state in one state directory: a store.Backend. Its methods are safe for
// concurrent use.
//
// All access goes through one *sql.DB limited to a single connection. SQLite admits one writer at a
// time anyway, and the directory lock makes this process the only one; a single connection adds
// no SQLITE_BUSY between our own connections, no WAL reader/writer interleaving to reason about,
// and costs nothing measurable here: every statement is a point lookup or a short indexed scan
// (microseconds), so a separate read pool would only help long listings, which are operator
// tooling. Callers never hold the connection across calls.
type Store struct {
	dir           string
	db            *sql.DB
	lock          *os.File
	now           func() time.Time
	seenTTL       time.Duration
	doneRetention time.Duration
	owner         string        // claim owner of this handle
	claimTTL      time.Duration // claim expiry after Claim or Heartbeat
	exclusive     bool          // holds the directory lock: no other process writes

	mu        sync.Mutex
	wake      chan struct{} // closed and replaced by broadcast
	lastPrune time.Time
	closed    bool

	finishes finishQueue // Finish's group commit (groupcommit.go)
	stmts    stmtCache   // prepared statements of the hot paths (stmts.go)
}

var _ store.Backend = (*Store)(nil)

// Open creates dir (mode 0700) if needed, takes an exclusive lock on dir/lock for the life of the
// Store (failing at once with an error wrapping store.ErrLocked that names dir if another Store, in
// any process, holds it — unless opts.Shared, see the package doc), opens dir/mailhook.db (mode
// 0600; WAL, synchronous=FULL, foreign keys on) and migrates its schema (refusing a newer one with
// store.ErrSchemaTooNew). A tool (opts.Shared) migrates only an empty database: an older schema is
// refused with store.ErrSchemaTooOld, and left for the daemon to migrate. It recovers nothing: jobs a crash left in flight wait for Recover.
func Open(dir string, opts store.Options) (_ *Store, err error) {
	if dir == "" {
		return nil, errors.New("open state: empty state directory")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create state directory: %w", err)
	}
	lock, err := lockDir(dir)
	beside := false // a tool opening the state beside a running daemon
	switch {
	case err != nil && opts.Shared && errors.Is(err, store.ErrLocked):
		beside = true
	case err != nil:
		return nil, err
	}
	defer func() {
		if err != nil && lock != nil {
			unlockDir(lock)
		}
	}()

	path, err := filepath.Abs(filepath.Join(dir, dbFile))
	if err != nil {
		return nil, fmt.Errorf("open state: %w", err)
	}
	// Create the file ourselves so it gets 0600 whatever the umask (it holds mail content); SQLite
	// gives the -wal and -shm files the database file's permissions.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open state: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("open state: %w", err)
	}

	db, err := sql.Open("sqlite", dsn(path))
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			db.Close()
		}
	}()
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)

	ctx := context.Background()
	var mode string
	if err := db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if !strings.EqualFold(mode, "wal") {
		return nil, fmt.Errorf("open %s: journal mode is %q, want wal", path, mode)
	}
	if beside {
		if err := sameSchema(ctx, db, path); err != nil {
			return nil, err
		}
	} else if opts.Shared {
		if err := toolSchema(ctx, db, path); err != nil {
			return nil, err
		}
	} else if err := migrate(ctx, db, path); err != nil {
		return nil, err
	}

	s := &Store{
		dir:           dir,
		db:            db,
		lock:          lock,
		now:           opts.Now,
		seenTTL:       opts.SeenTTL,
		doneRetention: opts.DoneRetention,
		owner:         opts.Owner,
		claimTTL:      opts.ClaimTTL,
		exclusive:     !beside,
		wake:          make(chan struct{}),
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
	if s.owner == "" {
		s.owner = newOwner()
	}
	return s, nil
}

// newOwner returns a fresh claim owner id: the process id and random bits, unique per handle.
func newOwner() string {
	var b [6]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return "sqlite-" + strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(b[:])
}

// dsn is the modernc.org/sqlite data source name for the database at the absolute path. The
// driver runs each _pragma on every new connection (busy_timeout first); _txlock=immediate makes
// BeginTx issue BEGIN IMMEDIATE, so a read-then-write transaction takes the write lock up front.
func dsn(path string) string {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout("+strconv.Itoa(busyTimeoutMS)+")")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)") // a commit survives power loss, not just a crash
	q.Add("_pragma", "foreign_keys(1)")
	q.Set("_txlock", "immediate")
	u := url.URL{Scheme: "file", Path: path, RawQuery: q.Encode()}
	return u.String()
}

// Close closes the database and releases the directory lock. It does not wait for callers still
// inside a method; stop them first. Closing twice is harmless.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	err := s.db.Close()
	if s.lock != nil {
		if uerr := unlockDir(s.lock); uerr != nil && err == nil {
			err = uerr
		}
	}
	if err != nil {
		return fmt.Errorf("close state %s: %w", s.dir, err)
	}
	return nil
}

// lockDir takes an exclusive, non-blocking flock(2) on dir/lock and writes our pid into it for the
// error message of the next contender. flock locks belong to the open file description, so a second
// Open in this same process conflicts too.
func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock state directory %s: %w", dir, err)
	}
	if err := flock(f, syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("lock state directory %s: %w%s", dir, store.ErrLocked, holder(path))
		}
		return nil, fmt.Errorf("lock state directory %s: %w", dir, err)
	}
	pid := []byte(strconv.Itoa(os.Getpid()) + "\n")
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt(pid, 0) // informational only
	}
	return f, nil
}

// unlockDir releases the lock taken by lockDir. The lock file stays: removing it would let two
// processes lock two different files of the same name.
func unlockDir(f *os.File) error {
	err := flock(f, syscall.LOCK_UN)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func flock(f *os.File, how int) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) {
		for {
			ferr = syscall.Flock(int(fd), how)
			if ferr != syscall.EINTR {
				return
			}
		}
	}); err != nil {
		return err
	}
	return ferr
}

// holder describes who holds the lock at path, from the pid the holder wrote, or "".
func holder(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return ""
	}
	return fmt.Sprintf(" (held by pid %d)", pid)
}

// Wake implements store.Outbox: a broadcast channel, closed and replaced at every change of this
// handle that may make a job claimable.
func (s *Store) Wake() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.wake
}

// broadcast wakes every waiter of the current Wake channel and arms a new one.
func (s *Store) broadcast() {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.wake)
	s.wake = make(chan struct{})
}

// querier is what *sql.DB and *sql.Tx share.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// withTx runs fn in one BEGIN IMMEDIATE transaction and commits it if fn succeeds.
func (s *Store) withTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
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
