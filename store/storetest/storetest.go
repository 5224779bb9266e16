// Package storetest is the conformance suite of the store contract (package store): every backend
// runs [Run] from its own tests, and a change to the contract or to a backend passes it on every
// backend. The tests use only the interfaces of package store; what only one backend can check
// (its files, locks, pragmas, fault injection into its engine) stays in that backend's tests.
//
// The suite's clock is a test clock passed as Options.Now and as the now of every call that takes
// one, so nothing here waits on wall time beyond the bounded waits for Wake.
package storetest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/mailhook/mailhook/store"
)

// Opener opens a handle on one durable state with opts. The suite calls it again on the same
// state to restart (after closing the previous handle), and with opts.Shared while another handle
// is open, as an operator tool beside a daemon.
type Opener func(opts store.Options) (store.Backend, error)

// NewState returns an Opener of a fresh, empty state that lives until the test ends.
type NewState func(t testing.TB) Opener

// Run runs the conformance suite, one subtest per part of the contract, each on a fresh state.
func Run(t *testing.T, newState NewState) {
	h := harness{newState: newState}
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, harness)
	}{
		// Checkpoints, commits, seen keys.
		{"Durability", testDurability},
		{"CommitAtomic", testCommitAtomic},
		{"CommitBatch", testCommitBatch},
		{"CommitRejectsBadJobs", testCommitRejectsBadJobs},
		{"CheckpointNeverDecreases", testCheckpointNeverDecreases},
		{"ResetCheckpoint", testResetCheckpoint},
		{"CommitIdempotent", testCommitIdempotent},
		{"SeenExpires", testSeenExpires},
		{"SeenKeptForRescan", testSeenKeptForRescan},
		{"MailboxesAndCounts", testMailboxesAndCounts},
		{"FetchRecords", testFetchRecords},
		// Outbox.
		{"Claim", testClaim},
		{"ClaimConcurrent", testClaimConcurrent},
		{"ClaimDueOrder", testClaimDueOrder},
		{"WriterPostActions", testWriterPostActions},
		{"RecoverAfterRestart", testRecoverAfterRestart},
		{"ClaimExpiryAndHeartbeat", testClaimExpiryAndHeartbeat},
		{"WakeBroadcast", testWakeBroadcast},
		{"Finish", testFinish},
		{"FinishConcurrentDurable", testFinishConcurrentDurable},
		{"FinishCanceled", testFinishCanceled},
		{"RequeueReleaseDropCounts", testRequeueReleaseDropCounts},
		{"Enqueue", testEnqueue},
		{"Prune", testPrune},
		{"SharedBesideDaemon", testSharedBesideDaemon},
		// Ledgers.
		{"EndpointDisableEnable", testEndpointDisableEnable},
		{"SetEndpointFailingClears", testSetEndpointFailingClears},
		{"ReplyLedgerAcrossRestart", testReplyLedgerAcrossRestart},
		{"ReplyLedgerHoldsThousands", testReplyLedgerHoldsThousands},
		{"ReplyCapPauseRelease", testReplyCapPauseRelease},
		{"BudgetLedger", testBudgetLedger},
		{"BudgetReserve", testBudgetReserve},
		{"InstallationKey", testInstallationKey},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, h) })
	}
}

// harness makes the states of the tests.
type harness struct{ newState NewState }

// state is one durable state under test.
type state struct{ open_ Opener }

// fresh returns a new, empty state.
func (h harness) fresh(t testing.TB) state { return state{open_: h.newState(t)} }

// openWith opens a handle with opts; the handle is closed when the test ends (Close twice is
// harmless).
func (st state) openWith(t testing.TB, opts store.Options) (store.Backend, error) {
	t.Helper()
	s, err := st.open_(opts)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { s.Close() })
	return s, nil
}

// open opens a handle with clk as its clock, failing the test on error.
func (st state) open(t testing.TB, clk *clock) store.Backend {
	t.Helper()
	s, err := st.openWith(t, store.Options{Now: clk.Now})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return s
}

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// clock is a settable time source for Options.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: t0} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func webhook(id, target string, deps ...string) store.Job {
	return store.Job{ID: id, Kind: store.KindWebhook, Target: target, Account: "acct", Mailbox: "INBOX",
		UIDValidity: 7, UID: 1, Rule: "r", DependsOn: deps, Body: []byte(`{"id":"` + id + `"}`)}
}

func ids(jobs []store.Job) []string {
	out := make([]string, len(jobs))
	for i, j := range jobs {
		out[i] = j.ID
	}
	return out
}

// writer returns the writer of (account, mailbox).
func writer(ctx context.Context, t testing.TB, s store.Backend, account, mailbox string) store.MailboxWriter {
	t.Helper()
	w, err := s.Mailbox(ctx, account, mailbox)
	if err != nil {
		t.Fatalf("writer of %s/%s: %v", account, mailbox, err)
	}
	return w
}

// commit commits one message of (account, mailbox) through its writer.
func commit(ctx context.Context, s store.Backend, account, mailbox string, cp store.Checkpoint, key string, jobs []store.Job) error {
	w, err := s.Mailbox(ctx, account, mailbox)
	if err != nil {
		return err
	}
	return w.Commit(ctx, []store.Commit{{Checkpoint: cp, Key: key, Jobs: jobs}})
}

// seenKey asks the writer of (account, mailbox) whether key was seen.
func seenKey(ctx context.Context, s store.Backend, account, mailbox, key string) (bool, error) {
	w, err := s.Mailbox(ctx, account, mailbox)
	if err != nil {
		return false, err
	}
	return w.Seen(ctx, key)
}

// reset resets the checkpoint of (account, mailbox) through its writer.
func reset(ctx context.Context, s store.Backend, account, mailbox string, cp store.Checkpoint) error {
	w, err := s.Mailbox(ctx, account, mailbox)
	if err != nil {
		return err
	}
	return w.ResetCheckpoint(ctx, cp)
}

// commitNow commits uid with key in acct/INBOX as a message arriving as it is processed: its
// internal date is clk's now.
func commitNow(t testing.TB, s store.Backend, clk *clock, uid uint32, key string) {
	t.Helper()
	cp := store.Checkpoint{UIDValidity: 7, LastUID: uid, LastInternalDate: clk.Now()}
	if err := commit(context.Background(), s, "acct", "INBOX", cp, key, nil); err != nil {
		t.Fatalf("commit uid %d: %v", uid, err)
	}
}

func mustCommit(t testing.TB, s store.Backend, uid uint32, key string, jobs ...store.Job) {
	t.Helper()
	cp := store.Checkpoint{UIDValidity: 7, LastUID: uid, LastInternalDate: t0.Add(time.Duration(uid) * time.Minute)}
	if err := commit(context.Background(), s, "acct", "INBOX", cp, key, jobs); err != nil {
		t.Fatalf("commit uid %d: %v", uid, err)
	}
}

func mustCheckpoint(t *testing.T, s store.Backend) store.Checkpoint {
	t.Helper()
	cp, ok, err := s.Checkpoint(context.Background(), "acct", "INBOX")
	if err != nil || !ok {
		t.Fatalf("checkpoint: ok=%v err=%v", ok, err)
	}
	return cp
}

func mustJob(t *testing.T, s store.Backend, id string) (store.Job, []store.Attempt) {
	t.Helper()
	j, as, err := s.Job(context.Background(), id)
	if err != nil {
		t.Fatalf("job %s: %v", id, err)
	}
	return j, as
}

// claimAll commits webhook jobs with ids to target "ci" and claims them all.
func claimAll(t *testing.T, s store.Backend, clk *clock, ids ...string) {
	t.Helper()
	var jobs []store.Job
	for _, id := range ids {
		jobs = append(jobs, webhook(id, "ci"))
	}
	mustCommit(t, s, 1, "", jobs...)
	got, err := s.Claim(context.Background(), store.Selector{Kind: store.KindWebhook, Target: "ci"}, clk.Now(), len(ids))
	if err != nil || len(got) != len(ids) {
		t.Fatalf("claim: %d jobs, err %v", len(got), err)
	}
}

func reserve(t *testing.T, s store.Backend, k store.ReplyKey, id string, oncePer time.Duration, perDay int, now time.Time) store.Reservation {
	t.Helper()
	r, err := s.ReserveReply(context.Background(), k, id, oncePer, perDay, now)
	if err != nil {
		t.Fatalf("reserve %v: %v", k, err)
	}
	return r
}
