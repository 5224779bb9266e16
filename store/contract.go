package store

import (
	"context"
	"time"
)

// Backend is a whole store as the daemon and the operator verbs use it. Its methods are safe for
// concurrent use. store/storetest states this contract as tests; every backend passes them.
type Backend interface {
	Mailboxes
	Outbox
	OutboxAdmin
	Endpoints
	Replies
	Budget
	// InstallationKey returns the installation's secret key (32 random bytes), creating it on
	// first use, atomically: every process and replica on this store gets the same key. Replies
	// carry an HMAC under it, by which mailhook recognises its own mail and an outsider cannot
	// forge it.
	InstallationKey(ctx context.Context) ([]byte, error)
	// Prune deletes, in one transaction, seen keys older than the seen-key TTL and done jobs (with
	// their attempts) not updated for Options.DoneRetention, as of now. A done job that a job not
	// yet done depends on is kept, or that job would be held forever. Dead, unknown and held jobs
	// are dead letters and are kept until an operator acts. A commit prunes once an hour on its
	// own, after committing and never failing for it.
	Prune(ctx context.Context, now time.Time) error
	// Close releases the store. It does not wait for callers still inside a method; stop them
	// first. Closing twice is harmless.
	Close() error
}

// Mailboxes gives the per-mailbox writer handles and reads the checkpoints.
type Mailboxes interface {
	// Mailbox returns the writer of (account, mailbox): every write for that mailbox goes through
	// it. A backend with leases attaches the lease it holds now (acquiring one is the caller's
	// business); its writes fail with ErrLeaseLost once the lease is gone, and a new writer must be
	// obtained after the lease is won again. Obtaining a writer writes nothing.
	Mailbox(ctx context.Context, account, mailbox string) (MailboxWriter, error)
	// Checkpoint returns the stored checkpoint of (account, mailbox); ok is false when there is
	// none yet (first start).
	Checkpoint(ctx context.Context, account, mailbox string) (cp Checkpoint, ok bool, err error)
	// Checkpoints lists every (account, mailbox) that has a checkpoint, ordered by account and
	// mailbox.
	Checkpoints(ctx context.Context) ([]MailboxState, error)
}

// MailboxWriter is the writer handle of one (account, mailbox). Its methods are safe for
// concurrent use; a backend with leases fences every write with the lease the handle carries
// (ErrLeaseLost).
type MailboxWriter interface {
	// Checkpoint returns the mailbox's stored checkpoint; ok is false when there is none yet.
	Checkpoint(ctx context.Context) (cp Checkpoint, ok bool, err error)
	// Seen reports whether key was recorded by a commit of this mailbox within the seen-key TTL
	// (Options.SeenTTL, 30 days) before the store's clock.
	Seen(ctx context.Context, key string) (bool, error)
	// ResetCheckpoint replaces the mailbox's checkpoint with cp unconditionally. The watcher calls
	// it on first start (cp.LastUID = UIDNEXT-1, or 0 to backfill) and when the mailbox's
	// UIDVALIDITY changed (RFC 3501 §2.3.1.1: every stored UID is void), where it may lower
	// LastUID. Seen keys are kept: they are what bridges the change. Jobs already in the outbox are
	// kept too; post-actions carry their own uidvalidity, which the watcher checks before running
	// them. Fetch records and strikes of another UIDVALIDITY are deleted.
	ResetCheckpoint(ctx context.Context, cp Checkpoint) error
	// Commit records processed messages, in ascending UID order, in ONE durable transaction:
	// each message's jobs and seen key, and the checkpoint of the last entry. When it returns
	// nil, all of it survives a crash or power loss; when it returns an error, none of it exists,
	// so the checkpoint never gets ahead of the jobs. An empty batch does nothing.
	//
	// Checkpoint: with no stored checkpoint, the first entry's is stored (then advanced). A
	// UIDVALIDITY other than the stored one is an error wrapping ErrUIDValidity (ResetCheckpoint
	// must come first), as is a batch whose entries differ in UIDVALIDITY. The checkpoint never
	// decreases within one UIDVALIDITY: an entry whose LastUID is below the stored one leaves the
	// stored checkpoint as it is (no error: replaying an older message is harmless, its jobs are
	// deduplicated); otherwise LastUID and LastInternalDate are stored.
	//
	// Jobs: each job is inserted unless a job with its ID exists, in which case it is left exactly
	// as it is (state, attempts, body): replaying a message after a crash never creates a second
	// job with the same id, nor revives a done one. ID, Kind, Target, Account, Mailbox,
	// UIDValidity, UID, Rule, DependsOn, Body and LastError are taken from the job; State may be ""
	// (pending), pending, held or dead; a zero NextAt means due now; Attempts, CreatedAt,
	// UpdatedAt and the claim fields are ignored. Every id in DependsOn must name a job earlier in
	// the batch or already stored, which also rules out cycles.
	//
	// Fetch records: the mailbox's fetch record is cleared when the committed checkpoint reaches
	// its Hi (same UIDVALIDITY), and the strikes of UIDs up to the checkpoint are cleared.
	//
	// After the transaction commits, Wake's channel fires.
	Commit(ctx context.Context, batch []Commit) error

	// BeginFetch records that the messages of r are being fetched (one record per mailbox; a new
	// one replaces the old). It is written once per fetch batch, not per message.
	BeginFetch(ctx context.Context, r FetchRange) error
	// EndFetch clears the mailbox's fetch record (the batch ended without a commit reaching Hi,
	// e.g. it held nothing to commit). Clearing a missing record is harmless.
	EndFetch(ctx context.Context) error
	// UnfinishedFetch returns the mailbox's fetch record, if any: after a restart, the range the
	// previous process was fetching when it stopped.
	UnfinishedFetch(ctx context.Context) (r FetchRange, ok bool, err error)
	// StrikeFetch records one failed fetch of message uid (reason says why; no secrets) and
	// returns how many failures of it are recorded now. Strikes survive restarts; a commit whose
	// checkpoint passes uid clears them, and so does a reset to another UIDVALIDITY.
	StrikeFetch(ctx context.Context, uidvalidity, uid uint32, reason string) (int, error)
	// FetchStrikes returns how many failed fetches of uid are recorded.
	FetchStrikes(ctx context.Context, uidvalidity, uid uint32) (int, error)

	// ReserveBudget reserves n bytes of the account's rolling download budget for a fetch, as of
	// now, atomically against every other holder of the account's budget: it is granted when the
	// bytes charged within lim.Window before now plus the bytes of live reservations plus n stay
	// within lim.Bytes (a request larger than lim.Bytes is granted only when nothing is used).
	// A granted reservation counts until Budget.ReleaseBudget, or lim.Hold after now.
	ReserveBudget(ctx context.Context, n int64, lim BudgetLimit, now time.Time) (BudgetGrant, error)

	// The mailbox's post-actions: Claim and NextDue accept only a selector of kind post_action
	// for this mailbox (its Account and Mailbox may be left empty; others are an error), Finish
	// only a job of it; otherwise they are Outbox's.
	Outbox
}

// Outbox is what an outbox consumer drives: claim, finish, wait. Its methods are safe for
// concurrent use by many loops.
type Outbox interface {
	// Claim atomically moves up to max claimable jobs matching sel — pending, next_at ≤ now,
	// every dependency done — to in_flight, in due order (earliest next_at first; insertion order
	// among jobs due at the same time, so a backlog goes oldest first), increments their attempts,
	// records this handle's claim owner and a claim expiry of now + ClaimTTL, and returns them with
	// Body and DependsOn. Concurrent claimers, in this process or another, never receive the same
	// job. A claimed job must be settled with Finish; a claim neither finished nor renewed
	// (Heartbeat) before it expires is settled by Recover. It returns no jobs (and no error) when
	// none is claimable or max ≤ 0.
	Claim(ctx context.Context, sel Selector, now time.Time, max int) ([]Job, error)
	// Finish settles the in-flight job id: it records attempt a (a.JobID is ignored; a zero a.At
	// means the store's clock), sets the job's state and last_error (= a.Error) and clears its
	// claim. state is one of pending (retry at nextAt; zero means now), done, dead, unknown or
	// held; for the latter four a non-zero nextAt is stored too and a zero one leaves next_at as
	// it was. A job that is not in flight gives an error wrapping ErrState (an operator dropped or
	// requeued it meanwhile, or Recover took it), a missing one ErrNotFound. Finishing to done or
	// pending fires Wake. When Finish returns nil the outcome is durable; a ctx done before the
	// call fails it.
	Finish(ctx context.Context, id, state string, nextAt time.Time, a Attempt) error
	// NextDue returns the earliest next_at among pending jobs matching sel whose dependencies are
	// all done — the moment a worker should next call Claim if Wake does not fire first. It may be
	// in the past. ok is false when no such job exists: wait for Wake alone. Jobs held by a
	// dependency are left out, or a worker would spin on them.
	NextDue(ctx context.Context, sel Selector) (next time.Time, ok bool, err error)
	// Wake returns a channel that is closed at the next change of this handle that may make a job
	// claimable: a commit, a Finish to done (dependents) or pending, Recover, Requeue, Release,
	// Enqueue or EnableEndpoint releasing jobs. Every caller gets the same channel until then
	// (a broadcast). Take the channel before calling Claim/NextDue, then wait on it, so a change in
	// between is not missed:
	//
	//	wake := st.Wake()
	//	jobs, _ := st.Claim(ctx, sel, now, n)
	//	… if none: select { case <-wake: case <-timer(NextDue): case <-ctx.Done(): }
	Wake() <-chan struct{}
	// Heartbeat renews, as of now, every claim this handle's owner holds (expiry now + ClaimTTL),
	// so that jobs still being worked on are not recovered as abandoned.
	Heartbeat(ctx context.Context, now time.Time) error
}

// OutboxAdmin is the outbox as the daemon's recovery and the operator verbs see it.
type OutboxAdmin interface {
	// Recover settles, as of now, the in-flight jobs whose claims have expired (and, on a backend
	// that knows it, the claims of owners that are gone), recording an "interrupted" attempt for
	// each: webhooks and post-actions return to pending (at least once), replies become unknown
	// (at most once). It never touches an unexpired claim of a live owner, so any process may call
	// it; the daemon calls it at start and periodically. It returns how many jobs it settled and
	// fires Wake when it settled any.
	Recover(ctx context.Context, now time.Time) (int, error)
	// Jobs lists jobs matching f in insertion order, without Body (use Job for one job's body).
	Jobs(ctx context.Context, f Filter) ([]Job, error)
	// Job returns job id with its Body and its attempts, oldest first, or an error wrapping
	// ErrNotFound.
	Job(ctx context.Context, id string) (Job, []Attempt, error)
	// Requeue makes a dead, unknown or held job pending again, due at now, with its attempt
	// count reset to 0 (its attempts history stays). Requeueing an unknown reply may send it
	// twice: that is the operator's call. Other states give an error wrapping ErrState. It fires
	// Wake.
	Requeue(ctx context.Context, id string, now time.Time) error
	// Release makes every held job matching sel pending again, due at now — for an endpoint that
	// was re-enabled — and returns how many it released. It fires Wake when it released any.
	Release(ctx context.Context, sel Selector, now time.Time) (int, error)
	// Drop deletes job id and its attempts. It refuses (ErrState) a job in flight, and
	// (ErrDependents, naming them) a job that jobs not yet done depend on: drop those first, or
	// they would be held forever. A missing job gives ErrNotFound.
	Drop(ctx context.Context, id string) error
	// Enqueue inserts jobs into the outbox in one transaction without touching any checkpoint or
	// seen key: the operator's replay of mail that was already processed. The jobs follow the
	// rules of MailboxWriter.Commit (a job whose id exists is left exactly as it is; dependencies
	// must be earlier in jobs or stored). It returns the ids it inserted, in order; the others
	// already existed. It fires Wake.
	Enqueue(ctx context.Context, jobs []Job) (inserted []string, err error)
	// Counts returns the number of jobs in each state, with every state present (0 when empty),
	// for status and metrics (outbox depth = pending + in_flight, dead-letter depth = dead).
	Counts(ctx context.Context) (map[string]int, error)
	// MailboxCounts returns, for (account, mailbox), how many outbox jobs are in each state
	// present.
	MailboxCounts(ctx context.Context, account, mailbox string) (map[string]int, error)
	// TargetCounts returns, per target of jobs of kind, the number of jobs in each state present.
	TargetCounts(ctx context.Context, kind string) (map[string]map[string]int, error)
}

// Endpoints is the health of webhook endpoints.
type Endpoints interface {
	// Endpoints returns the state of every endpoint the store has a record of, by name.
	Endpoints(ctx context.Context) ([]EndpointState, error)
	// Endpoint returns the state of endpoint name; an endpoint without a record is enabled and
	// not failing (the zero EndpointState with its Name).
	Endpoint(ctx context.Context, name string) (EndpointState, error)
	// SetEndpointFailing records since when endpoint name has been failing without a success; a
	// zero since records that it is not failing (its last attempt succeeded). It leaves the
	// disabled state alone.
	SetEndpointFailing(ctx context.Context, name string, since time.Time) error
	// DisableEndpoint marks endpoint name disabled at the time at, for reason, and in the same
	// transaction holds its pending webhook jobs (pending → held), returning how many. Jobs in
	// flight are the dispatcher's to settle (it holds them too). Disabling an endpoint that is
	// already disabled keeps its first time and reason, and holds whatever became pending since.
	DisableEndpoint(ctx context.Context, name, reason string, at time.Time) (int, error)
	// EnableEndpoint marks endpoint name enabled and not failing, and in the same transaction
	// releases its held webhook jobs (held → pending, due at now), returning how many. It fires
	// Wake when it released any. Enabling an endpoint that is not disabled only releases held jobs.
	EnableEndpoint(ctx context.Context, name string, now time.Time) (int, error)
}

// Replies is the reply ledger (see ReplyKey).
type Replies interface {
	// ReserveReply decides, in one transaction, whether the reply identified by k may be sent at
	// now, and if so records it: a ledger entry for k expiring at now+oncePer, and a send of
	// messageID counted against the account's rolling cap perDay (≤ 0: no cap). It answers
	// ReplyDuplicate when a ledger entry for k has not expired yet, ReplyPaused when the account
	// is paused (see PauseReplies), ReplyOverCap when perDay replies were recorded in the last
	// ReplyWindow (Until is when the oldest of them leaves the window). Expired ledger entries and
	// sends older than OwnReplyTTL are deleted on the way.
	ReserveReply(ctx context.Context, k ReplyKey, messageID string, oncePer time.Duration, perDay int, now time.Time) (Reservation, error)
	// ReleaseReply undoes the reservation of messageID for k: the server refused the reply for
	// certain, so neither the ledger nor the daily count should hold it. A ledger entry for k made
	// by another reservation (another Message-ID) is left alone. Releasing twice is harmless.
	ReleaseReply(ctx context.Context, k ReplyKey, messageID string) error
	// Replied reports whether the ledger holds an unexpired entry for k at now: a cheap
	// pre-check for callers that want to avoid queueing a reply ReserveReply would refuse.
	Replied(ctx context.Context, k ReplyKey, now time.Time) (bool, error)
	// PauseReplies stops every reply of account after the server refused one for its daily
	// sending limit (`550 5.4.5`), until the rolling window allows: when the oldest reply recorded
	// in the ReplyWindow before now leaves the window, or at now+ReplyWindow when none is recorded
	// (the quota went to other clients of the account); never sooner than ReplyPauseMin after now.
	// A later pause never shortens an earlier one. It returns when the pause ends. reason is kept
	// for status output and must not hold secrets.
	PauseReplies(ctx context.Context, account string, now time.Time, reason string) (time.Time, error)
	// RepliesPaused returns when the reply pause of account ends, or ok=false when it is not
	// paused at now.
	RepliesPaused(ctx context.Context, account string, now time.Time) (until time.Time, ok bool, err error)
	// RepliesSent returns how many replies of account were recorded in the ReplyWindow before
	// now (the rolling daily count).
	RepliesSent(ctx context.Context, account string, now time.Time) (int, error)
	// OwnReply reports whether messageID (with angle brackets, as in the header) is the
	// Message-ID of a reply this state recorded within OwnReplyTTL.
	OwnReply(ctx context.Context, messageID string) (bool, error)
}

// Budget is the download-budget ledger of the accounts. Reservations are made through a
// mailbox's writer (MailboxWriter.ReserveBudget, fenced); charges record bytes that were
// actually read and are never fenced (they happened).
type Budget interface {
	// BudgetBuckets returns the buckets of account starting at or after since, oldest first.
	BudgetBuckets(ctx context.Context, account string, since time.Time) ([]BudgetBucket, error)
	// BudgetThrottleOf returns the last throttle decision recorded for account; ok is false when
	// none was ever recorded.
	BudgetThrottleOf(ctx context.Context, account string) (th BudgetThrottle, ok bool, err error)
	// ChargeBudget records, in one transaction, the bytes of add on top of what the buckets of
	// account already hold (add carries deltas since the last call, so concurrent writers never
	// lose each other's bytes), sets the account's throttle decision to th, and deletes the
	// account's buckets that start before pruneBefore (outside any window the caller still needs).
	ChargeBudget(ctx context.Context, account string, add []BudgetBucket, th BudgetThrottle, pruneBefore time.Time) error
	// ReserveBudget is MailboxWriter.ReserveBudget for account without a lease's fence: for a
	// process that watches no mailbox (`mailhook test --last`, `replay`) but reads from the
	// account beside the daemon, so that together they stay within the budget. A watcher
	// reserves through its mailbox's writer.
	ReserveBudget(ctx context.Context, account string, n int64, lim BudgetLimit, now time.Time) (BudgetGrant, error)
	// ReleaseBudget ends reservation id of account (its fetch is over and its bytes are charged).
	// Releasing twice, or a reservation that lapsed, is harmless.
	ReleaseBudget(ctx context.Context, account, id string) error
}

// CommitMessage commits one processed message of (account, mailbox) through the mailbox's writer:
// a shorthand for callers that commit outside a watcher (tests, tools).
func CommitMessage(ctx context.Context, m Mailboxes, account, mailbox string, c Commit) error {
	w, err := m.Mailbox(ctx, account, mailbox)
	if err != nil {
		return err
	}
	return w.Commit(ctx, []Commit{c})
}
