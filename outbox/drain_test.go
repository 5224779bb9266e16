package outbox

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailhook/mailhook/store"
)

func postAction(id, mailbox string, due time.Time) store.Job {
	return store.Job{ID: id, Kind: store.KindPostAction, Target: "mark_seen", Account: "acct", Mailbox: mailbox, NextAt: due}
}

// Drain works every due job of its selector in turn, a batch at a time, records each outcome
// (the job id and the time filled in), and leaves jobs of other selectors and jobs not yet due.
func TestDrainWorksDueJobs(t *testing.T) {
	st := newMemStore()
	now := time.Now()
	for i := range 5 {
		st.add(postAction(fmt.Sprintf("msg_%d", i), "INBOX", now.Add(-time.Minute)))
	}
	st.add(postAction("msg_later", "INBOX", now.Add(time.Hour)), postAction("msg_other", "Archive", now))
	var worked []string
	w := WorkerFunc(func(_ context.Context, j store.Job) Result {
		worked = append(worked, j.ID)
		return Result{State: store.StateDone, Attempt: store.Attempt{Status: "ok"}}
	})
	sel := store.Selector{Kind: store.KindPostAction, Account: "acct", Mailbox: "INBOX"}
	if err := Drain(context.Background(), st, sel, w, DrainOptions{Batch: 2}); err != nil {
		t.Fatal(err)
	}
	if len(worked) != 5 {
		t.Errorf("worked %v, want the 5 due jobs of INBOX", worked)
	}
	for i := range 5 {
		j, recs := st.job(fmt.Sprintf("msg_%d", i))
		if j.State != store.StateDone || len(recs) != 1 || recs[0].JobID != j.ID || recs[0].At.IsZero() || recs[0].Status != "ok" {
			t.Errorf("%s: state %s, records %+v", j.ID, j.State, recs)
		}
	}
	for _, id := range []string{"msg_later", "msg_other"} {
		if j, _ := st.job(id); j.State != store.StatePending {
			t.Errorf("%s is %s, want untouched", id, j.State)
		}
	}
}

// A Result with Stop ends the drain once the claimed batch has its results; the worker answers for
// the rest, and no further batch is claimed. A failing Claim is a ClaimError.
func TestDrainStops(t *testing.T) {
	st := newMemStore()
	for i := range 6 {
		st.add(postAction(fmt.Sprintf("msg_%d", i), "INBOX", time.Time{}))
	}
	lost := errors.New("connection reset")
	var failed error
	calls := 0
	w := WorkerFunc(func(_ context.Context, j store.Job) Result {
		calls++
		if failed != nil {
			return Result{State: store.StatePending, Attempt: store.Attempt{Status: "canceled", Error: "session ended before it ran"}}
		}
		if calls == 2 {
			failed = lost
			return Result{State: store.StatePending, Attempt: store.Attempt{Status: "network"}, Stop: lost}
		}
		return Result{State: store.StateDone}
	})
	err := Drain(context.Background(), st, store.Selector{Kind: store.KindPostAction}, w, DrainOptions{Batch: 4})
	if !errors.Is(err, lost) {
		t.Fatalf("Drain = %v, want the worker's stop error", err)
	}
	if calls != 4 {
		t.Errorf("worker called %d times, want 4 (one batch)", calls)
	}
	pending := 0
	for i := range 6 {
		if j, _ := st.job(fmt.Sprintf("msg_%d", i)); j.State == store.StatePending {
			pending++
		}
	}
	if pending != 5 {
		t.Errorf("%d jobs pending after the stop, want 5 (1 done)", pending)
	}

	st.claimErr = errors.New("database is locked")
	var ce *ClaimError
	if err := Drain(context.Background(), st, store.Selector{}, w, DrainOptions{}); !errors.As(err, &ce) {
		t.Errorf("Drain with a failing Claim = %v, want a *ClaimError", err)
	}
}

// The outcome of a job is recorded even though a store write fails for a while, and while the
// context is being cancelled; a job an operator changed meanwhile is left alone.
func TestRecordRetries(t *testing.T) {
	st := newMemStore()
	st.add(postAction("msg_A", "INBOX", time.Time{}), postAction("msg_B", "INBOX", time.Time{}))
	if _, err := st.Claim(context.Background(), store.Selector{}, time.Now(), 2); err != nil {
		t.Fatal(err)
	}
	st.finishErr = []error{errors.New("disk I/O error"), errors.New("disk I/O error")}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // shutting down: the outcome is recorded all the same
	a, _ := st.job("msg_A")
	record(ctx, st, a, Result{State: store.StateDone}, time.Now)
	if j, recs := st.job("msg_A"); j.State != store.StateDone || len(recs) != 1 {
		t.Errorf("after two failed writes: %s with %d records, want done", j.State, len(recs))
	}
	st.mu.Lock()
	st.jobs["msg_B"].State = store.StateDead // an operator dropped it meanwhile
	st.mu.Unlock()
	b, _ := st.job("msg_B")
	record(context.Background(), st, b, Result{State: store.StateDone}, time.Now)
	if j, recs := st.job("msg_B"); j.State != store.StateDead || len(recs) != 0 {
		t.Errorf("changed job: %s with %d records, want dead and untouched", j.State, len(recs))
	}
}

// Due fires when a job of its selector falls due: at once for one due now, on a commit that adds
// one, and when the next_at of a pending one passes; never for other selectors.
func TestDue(t *testing.T) {
	st := newMemStore()
	sel := store.Selector{Kind: store.KindPostAction, Account: "acct", Mailbox: "INBOX"}
	ctx := context.Background()
	wait := func(due <-chan struct{}, what string) {
		t.Helper()
		select {
		case <-due:
		case <-time.After(10 * time.Second):
			t.Fatalf("Due did not fire for %s", what)
		}
	}

	st.add(postAction("msg_other", "Archive", time.Time{}))
	due, stop := Due(ctx, st, sel)
	select {
	case <-due:
		t.Fatal("Due fired for another mailbox's job")
	case <-time.After(20 * time.Millisecond): // a window for a wrong firing to show
	}
	st.add(postAction("msg_A", "INBOX", time.Time{}))
	wait(due, "a committed job")
	stop()

	st.mu.Lock()
	st.jobs["msg_A"].NextAt = time.Now().Add(50 * time.Millisecond)
	st.mu.Unlock()
	due, stop = Due(ctx, st, sel)
	defer stop()
	wait(due, "a job whose next_at passed")
}

// A running Consumer renews the store's claims every Options.Heartbeat, and its Heartbeat is
// zero before Run and after it returns.
func TestConsumerHeartbeats(t *testing.T) {
	st := newMemStore()
	c := New(st, []Lane{{Worker: done}}, Options{Heartbeat: time.Millisecond})
	if !c.Heartbeat().IsZero() {
		t.Error("Heartbeat before Run is not zero")
	}
	stop := runConsumer(c)
	waitUntil(t, "a loop heartbeat", func() bool { return !c.Heartbeat().IsZero() })
	waitUntil(t, "three claim renewals", func() bool {
		st.mu.Lock()
		defer st.mu.Unlock()
		return st.renewals >= 3
	})
	stop()
	if hb := c.Heartbeat(); !hb.IsZero() {
		t.Errorf("Heartbeat after Run returned = %v, want zero", hb)
	}
}

// Lanes run side by side: a worker stuck on one lane's job does not hold up another lane, and
// the consumer's Stopped hook runs once every lane has stopped.
func TestLanesIndependent(t *testing.T) {
	st := newMemStore()
	stuck := make(chan struct{})
	var stopped atomic.Bool
	slow := WorkerFunc(func(ctx context.Context, j store.Job) Result {
		select {
		case <-stuck:
		case <-ctx.Done():
		}
		return Result{State: store.StateDone}
	})
	c := New(st, []Lane{
		{Select: store.Selector{Kind: store.KindWebhook, Target: "slow"}, Worker: slow},
		{Select: store.Selector{Kind: store.KindWebhook, Target: "fast"}, Worker: done},
	}, Options{Stopped: func() { stopped.Store(true) }})
	stop := runConsumer(c)
	st.add(store.Job{ID: "msg_slow", Kind: store.KindWebhook, Target: "slow"})
	waitUntil(t, "the slow lane's job in flight", func() bool { j, _ := st.job("msg_slow"); return j.State == store.StateInFlight })
	st.add(store.Job{ID: "msg_fast", Kind: store.KindWebhook, Target: "fast"})
	waitUntil(t, "the fast lane's job done", func() bool { j, _ := st.job("msg_fast"); return j.State == store.StateDone })
	if j, _ := st.job("msg_slow"); j.State != store.StateInFlight {
		t.Errorf("slow job is %s, want in flight", j.State)
	}
	stop()
	if !stopped.Load() {
		t.Error("Stopped was not called")
	}
	close(stuck)
}
