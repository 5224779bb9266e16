// Package store is mailhook's durable state in an embedded SQLite database (modernc.org/sqlite, WAL,
// synchronous=FULL): per-mailbox checkpoints, the seen-keys that bridge a UIDVALIDITY change, and the
// outbox of jobs (webhooks, replies, post-actions) with their attempts and dead letters. A message's
// jobs and its checkpoint advance commit in one transaction. It imports none of mailhook's packages.
//
// One process owns a state directory: [Open] takes an exclusive lock on dir/lock and keeps it until
// [Store.Close], so a second instance fails at once with [ErrLocked] (REQUIREMENTS E90).
//
// # Outbox contract
//
// A job is inserted by [Store.Commit] (pending, or held/dead when the caller says so), claimed by a
// worker with [Store.Claim] (pending → in_flight, attempts+1) and settled with [Store.Finish] (done,
// dead, unknown, held, or pending again with a later next_at). A job is claimable when it is pending,
// due (next_at ≤ now) and every job it depends on is done; a dependency that is dead, unknown, held or
// missing holds it (DESIGN "unknown holds them") until an operator requeues or drops jobs. Jobs left
// in_flight by a crash are recovered when the store is opened: webhooks and post-actions go back to
// pending (at least once), replies become unknown (at most once: the SMTP outcome cannot be known).
// Nothing here polls: [Store.Wake] is a broadcast that fires after every change that can make a job
// claimable, and [Store.NextDue] says when the next retry falls due.
package store

import (
	"errors"
	"time"
)

// Job kinds.
const (
	KindWebhook    = "webhook"
	KindReply      = "reply"
	KindPostAction = "post_action"
)

// Job states.
const (
	StatePending  = "pending"
	StateInFlight = "in_flight"
	StateDone     = "done"
	StateDead     = "dead"
	StateUnknown  = "unknown" // ambiguous outcome (reply lost after DATA); never retried
	StateHeld     = "held"    // target endpoint disabled
)

// Errors callers may test with errors.Is.
var (
	// ErrLocked: another Store (in this or another process) holds the state directory.
	ErrLocked = errors.New("state directory is in use by another mailhook instance")
	// ErrSchemaTooNew: the database was written by a newer mailhook; this binary refuses to touch it.
	ErrSchemaTooNew = errors.New("database schema is newer than this binary supports")
	// ErrUIDValidity: Commit was called with a UIDVALIDITY other than the stored one; call
	// ResetCheckpoint first.
	ErrUIDValidity = errors.New("uidvalidity differs from the stored checkpoint")
	// ErrNotFound: no job has that id.
	ErrNotFound = errors.New("job not found")
	// ErrState: the job's state does not allow the operation (e.g. Finish of a job not in flight).
	ErrState = errors.New("job is in the wrong state")
	// ErrDependents: Drop was refused because jobs that are not done yet depend on the job.
	ErrDependents = errors.New("job has dependents that are not done")
)

// Checkpoint is how far one (account, mailbox) has been processed.
type Checkpoint struct {
	UIDValidity      uint32
	LastUID          uint32    // highest UID processed (committed)
	LastInternalDate time.Time // INTERNALDATE of the last processed message
}

// Job is one outbox entry.
type Job struct {
	ID          string // stable: see JobID
	Kind        string // KindWebhook | KindReply | KindPostAction
	Target      string // webhook or reply name, or the post-action ("move:Archive", "mark_seen", …)
	Account     string
	Mailbox     string
	UIDValidity uint32
	UID         uint32
	Rule        string
	DependsOn   []string // ids of jobs that must be done first
	State       string
	NextAt      time.Time
	Attempts    int
	LastError   string
	Body        []byte // request body, stored once (signed per attempt)
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

// Attempt is one delivery attempt of a job, kept for `outbox show` and dead letters.
type Attempt struct {
	JobID  string
	At     time.Time
	Status string // e.g. "http 503", "network", "ok"
	Error  string
}

// Selector picks outbox jobs; an empty field matches any value. Workers select by Kind and Target
// (one webhook endpoint); a watcher selects its own post-actions by Kind, Account and Mailbox.
type Selector struct {
	Kind    string
	Target  string
	Account string
	Mailbox string
}

// Filter selects jobs for listing with [Store.Jobs].
type Filter struct {
	Selector
	State string // "" = any state
	Limit int    // ≤ 0 = no limit
}

// Options tune a Store; the zero value gives the documented defaults.
type Options struct {
	// Now is the clock for the timestamps callers do not pass (created_at, updated_at, seen_at,
	// the window of Seen, recovery and pruning in Commit). Default time.Now.
	Now func() time.Time
	// SeenTTL is how long a seen key is remembered. Default 30 days (DESIGN: keys are kept 30 days).
	SeenTTL time.Duration
	// DoneRetention is how long a done job (and its attempts and body) is kept before pruning.
	// Default 7 days. Dead, unknown and held jobs are dead letters and are never pruned.
	DoneRetention time.Duration
	// Shared opens the state for an operator tool (status, outbox) that may run beside a daemon.
	// When no daemon holds the directory lock, Shared behaves like a normal open. When one does,
	// the database is opened without the lock (SQLite's WAL admits concurrent processes), nothing
	// is migrated or recovered (that is the daemon's business), and a schema version other than
	// this binary's is refused. Wake then fires only for this process's own writes: the daemon
	// notices a tool's changes within its own periodic re-check.
	Shared bool
}

// Defaults of [Options].
const (
	DefaultSeenTTL       = 30 * 24 * time.Hour
	DefaultDoneRetention = 7 * 24 * time.Hour
	// pruneEvery is how often Commit prunes expired seen keys and done jobs, in its own transaction.
	pruneEvery = time.Hour
)

// API (sqlite.go, outbox.go, jobid.go):
//
//	func Open(dir string) (*Store, error)
//	func OpenWith(dir string, opts Options) (*Store, error)
//	func (s *Store) Close() error
//	func JobID(account, mailbox string, uidvalidity, uid uint32, rule string, action int) string
//	func (s *Store) Checkpoint(ctx context.Context, account, mailbox string) (Checkpoint, bool, error)
//	func (s *Store) ResetCheckpoint(ctx context.Context, account, mailbox string, cp Checkpoint) error
//	func (s *Store) Commit(ctx context.Context, account, mailbox string, cp Checkpoint, key string, jobs []Job) error
//	func (s *Store) Seen(ctx context.Context, account, mailbox, key string) (bool, error)
//	func (s *Store) Prune(ctx context.Context, now time.Time) error
//	func (s *Store) Claim(ctx context.Context, kind, target string, now time.Time, max int) ([]Job, error)
//	func (s *Store) ClaimSelected(ctx context.Context, sel Selector, now time.Time, max int) ([]Job, error)
//	func (s *Store) Finish(ctx context.Context, id, state string, nextAt time.Time, a Attempt) error
//	func (s *Store) NextDue(ctx context.Context, kind, target string) (time.Time, bool, error)
//	func (s *Store) NextDueSelected(ctx context.Context, sel Selector) (time.Time, bool, error)
//	func (s *Store) Wake() <-chan struct{}
//	func (s *Store) Jobs(ctx context.Context, f Filter) ([]Job, error)
//	func (s *Store) Job(ctx context.Context, id string) (Job, []Attempt, error)
//	func (s *Store) Requeue(ctx context.Context, id string, now time.Time) error
//	func (s *Store) Release(ctx context.Context, sel Selector, now time.Time) (int, error)
//	func (s *Store) Drop(ctx context.Context, id string) error
//	func (s *Store) Counts(ctx context.Context) (map[string]int, error)
