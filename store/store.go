// Package store is the contract of mailhook's durable state: the types (checkpoints, outbox jobs
// and their attempts, ledgers), the errors callers test with errors.Is, the stable job ids, and the
// interfaces a backend implements ([Backend] and its parts). It imports none of mailhook's
// packages and no database driver: the SQLite backend lives in store/sqlite, and store/storetest is
// the conformance suite every backend passes. Consumers declare the narrow interfaces they use.
//
// # What is stored
//
// Per (account, mailbox): a checkpoint (how far the mailbox has been processed), the seen keys
// that bridge a UIDVALIDITY change, the record of an unfinished fetch and the fetch failures
// ("strikes") of single messages. The outbox: jobs (webhooks, replies, post-actions) with their
// attempts and dead letters. Ledgers: the reply ledger (at most one auto-reply per sender and
// period, the rolling daily cap, sending pauses), the download budget of each account, and the
// health of each webhook endpoint.
//
// # Writes for a mailbox
//
// Every write that belongs to one mailbox goes through its [MailboxWriter] ([Mailboxes.Mailbox]):
// checkpoint creation, advance and reset, the jobs and seen keys of processed messages (a batch of
// messages in one transaction: the checkpoint never gets ahead of the jobs), fetch records and
// strikes, the claiming and finishing of the mailbox's post-actions, and download-budget
// reservations. A backend shared by several processes fences these writes with the writer's lease
// and fails them with [ErrLeaseLost] once another process took the mailbox over; a backend owned
// by one process (SQLite, whose state directory is locked) has no lease to lose.
//
// # Outbox
//
// A job is inserted by a commit (pending, or held/dead when the caller says so) or by [Outbox.Enqueue],
// claimed by a worker with [Outbox.Claim] (pending → in_flight, attempts+1, under the store handle's
// claim owner with an expiry) and settled with [Outbox.Finish] (done, dead, unknown, held, or
// pending again with a later next_at). A job is claimable when it is pending, due (next_at ≤ now)
// and every job it depends on is done; a dependency that is dead, unknown, held or missing holds it
// until an operator requeues or drops jobs ("unknown holds them").
//
// Claims expire: a worker's process renews its claims with [Outbox.Heartbeat]; [Outbox.Recover],
// called by the daemon at start and periodically (never implicitly when a store is opened),
// settles the in-flight jobs whose claims expired: webhooks and post-actions go back to pending (at
// least once), replies become unknown (at most once: the SMTP outcome cannot be known). A backend
// that knows a claim's owner is gone (SQLite: the state directory's lock proves the previous
// process has exited) may treat its claims as expired at once.
//
// Nothing here polls: [Outbox.Wake] is a broadcast that fires after every change of this process
// that can make a job claimable, and [Outbox.NextDue] says when the next retry falls due.
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
	// ErrLocked: another process (or another Store of this one) holds the state.
	ErrLocked = errors.New("state directory is in use by another mailhook instance")
	// ErrSchemaTooNew: the database was written by a newer mailhook; this binary refuses to touch it.
	ErrSchemaTooNew = errors.New("database schema is newer than this binary supports")
	// ErrSchemaTooOld: an operator tool (Options.Shared) found a database an older mailhook wrote;
	// tools migrate nothing, the daemon does.
	ErrSchemaTooOld = errors.New("database schema is older than this binary's")
	// ErrUIDValidity: a commit carried a UIDVALIDITY other than the stored one; call
	// ResetCheckpoint first.
	ErrUIDValidity = errors.New("uidvalidity differs from the stored checkpoint")
	// ErrNotFound: no job has that id.
	ErrNotFound = errors.New("job not found")
	// ErrState: the job's state does not allow the operation (e.g. Finish of a job not in flight).
	ErrState = errors.New("job is in the wrong state")
	// ErrDependents: Drop was refused because jobs that are not done yet depend on the job.
	ErrDependents = errors.New("job has dependents that are not done")
	// ErrLeaseLost: a MailboxWriter's write was refused because the writer no longer holds the
	// mailbox (another process took it over). Nothing of the write happened; stop acting for the
	// mailbox. Backends without leases never return it.
	ErrLeaseLost = errors.New("mailbox lease lost")
)

// Checkpoint is how far one (account, mailbox) has been processed.
type Checkpoint struct {
	UIDValidity      uint32
	LastUID          uint32    // highest UID processed (committed)
	LastInternalDate time.Time // INTERNALDATE of the last processed message
}

// Commit is one processed message in a [MailboxWriter.Commit] batch: the checkpoint after it, its
// stable key (Message-ID or header hash plus size; "" records none) and its outbox jobs.
type Commit struct {
	Checkpoint Checkpoint
	Key        string
	Jobs       []Job
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
	// ClaimOwner and ClaimExpires describe the claim of an in-flight job: the store handle that
	// claimed it (Options.Owner) and when the claim lapses unless renewed. Both are zero for a job
	// that is not in flight; they are ignored when a job is inserted.
	ClaimOwner   string
	ClaimExpires time.Time
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

// Filter selects jobs for listing with [Outbox.Jobs].
type Filter struct {
	Selector
	State string // "" = any state
	Limit int    // ≤ 0 = no limit
}

// MailboxState is what the status verb shows of one (account, mailbox) from the store.
type MailboxState struct {
	Account, Mailbox string
	Checkpoint       Checkpoint
	// UpdatedAt is when the checkpoint last moved: the last message processed (or the first run).
	UpdatedAt time.Time
}

// FetchRange is the record of a fetch under way: the messages with UIDs Lo through Hi of
// UIDValidity, begun at Begun. A record still present after a restart says that the process
// stopped (crashed, was killed, hung) while fetching those messages.
type FetchRange struct {
	UIDValidity uint32
	Lo, Hi      uint32
	Begun       time.Time
}

// Options tune a store handle; the zero value gives the documented defaults. Backends take them
// with their own location (a directory, a DSN).
type Options struct {
	// Now is the clock for the timestamps callers do not pass (created_at, updated_at, seen_at,
	// the window of Seen, pruning after a commit). Default time.Now.
	Now func() time.Time
	// SeenTTL is how long a seen key is remembered. Default 30 days.
	SeenTTL time.Duration
	// DoneRetention is how long a done job (and its attempts and body) is kept before pruning.
	// Default 7 days. Dead, unknown and held jobs are dead letters and are never pruned.
	DoneRetention time.Duration
	// Owner names this handle as a claim owner (a replica id). Default: a fresh id per open, so
	// two handles never share claims.
	Owner string
	// ClaimTTL is how long a claim lasts without a Heartbeat. Default DefaultClaimTTL; keep it
	// well above the consumers' heartbeat interval.
	ClaimTTL time.Duration
	// Shared opens the state for an operator tool (status, outbox, replay, test) that may run
	// beside a daemon: the tool migrates nothing, refuses a schema version other than its own
	// (an older one with ErrSchemaTooOld, naming both versions and saying to run the daemon once),
	// and its Wake fires only for its own writes (the daemon notices a tool's changes within its
	// own periodic re-check).
	Shared bool
}

// RescanLookback is how far before a mailbox's last internal date a UIDVALIDITY rescan starts:
// the messages since then are looked at again and the seen keys tell the processed ones apart.
// The stores keep every seen key recorded within RescanLookback + RescanSkew of that date,
// however old (SeenTTL alone would drop them for a mailbox quiet for longer, and its reset would
// deliver the last day again under new ids); RescanSkew allows for a server clock ahead of ours.
const (
	RescanLookback = 24 * time.Hour
	RescanSkew     = 24 * time.Hour
)

// Defaults of [Options] and of the ledgers.
const (
	DefaultSeenTTL       = 30 * 24 * time.Hour
	DefaultDoneRetention = 7 * 24 * time.Hour
	DefaultClaimTTL      = time.Minute
)
