package outbox

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailhook/mailhook/store"
)

// waitUntil polls cond every millisecond until it holds, failing the test after 10s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond) // polling with a deadline
	}
}

// stubStore is a Store over nothing: claims return what jobs hands out, nothing is ever due,
// Wake never fires; finishes are counted.
type stubStore struct {
	jobs     func(max int) []store.Job
	never    chan struct{}
	finished atomic.Int64
	renewed  atomic.Int64
}

func newStub(jobs func(max int) []store.Job) *stubStore {
	return &stubStore{jobs: jobs, never: make(chan struct{})}
}

func (s *stubStore) Claim(_ context.Context, _ store.Selector, _ time.Time, max int) ([]store.Job, error) {
	return s.jobs(max), nil
}

func (s *stubStore) Finish(context.Context, string, string, time.Time, store.Attempt) error {
	s.finished.Add(1)
	return nil
}

func (s *stubStore) NextDue(context.Context, store.Selector) (time.Time, bool, error) {
	return time.Time{}, false, nil
}

func (s *stubStore) Wake() <-chan struct{} { return s.never }

func (s *stubStore) Heartbeat(context.Context, time.Time) error {
	s.renewed.Add(1)
	return nil
}

// done is a Worker whose every job is done.
var done = WorkerFunc(func(context.Context, store.Job) Result { return Result{State: store.StateDone} })

// runConsumer runs c until the returned stop is called.
func runConsumer(c *Consumer) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	finished := make(chan struct{})
	go func() { _ = c.Run(ctx); close(finished) }()
	return func() { cancel(); <-finished }
}

// Every idle wait is bounded by recheck: a change another process made to the outbox (which does
// not reach this process's Wake) is noticed without a wake-up. Reply and webhook lanes share
// this loop.
func TestLoopRechecksWithoutWake(t *testing.T) {
	var claims atomic.Int64
	st := newStub(func(int) []store.Job { claims.Add(1); return nil })
	c := New(st, []Lane{{Worker: done}}, Options{Recheck: 5 * time.Millisecond})
	stop := runConsumer(c)
	waitUntil(t, "three claims without a wake-up", func() bool { return claims.Load() >= 3 })
	stop()
}

// A parallel lane claims as many jobs as its Gate grants in one claim, works them at once, gives
// back the units nobody used and one per recorded job, and returns only once its workers have.
func TestLoopParallelClaimsAndReleases(t *testing.T) {
	const granted = 3
	var (
		mu                 sync.Mutex
		maxes              []int
		acquired, released int
		served             bool
	)
	started := make(chan string, granted)
	finish := make(chan struct{})
	st := newStub(func(max int) []store.Job {
		mu.Lock()
		defer mu.Unlock()
		maxes = append(maxes, max)
		if served {
			return nil
		}
		served = true
		return []store.Job{{ID: "a"}, {ID: "b"}} // fewer than granted: one unit unused
	})
	work := WorkerFunc(func(_ context.Context, j store.Job) Result {
		started <- j.ID
		<-finish
		return Result{State: store.StateDone}
	})
	gate := gateFuncs{
		acquire: func(ctx context.Context) int {
			mu.Lock()
			defer mu.Unlock()
			if acquired-released >= granted {
				return 0 // a real semaphore would block; here the test is over
			}
			n := granted - (acquired - released)
			acquired += n
			return n
		},
		release: func(n int) {
			mu.Lock()
			defer mu.Unlock()
			released += n
		},
	}
	c := New(st, []Lane{{Worker: work, Gate: gate, Parallel: true}}, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { _ = c.Run(ctx); close(stopped) }()

	for range 2 { // both jobs are being worked at the same time
		select {
		case <-started:
		case <-time.After(10 * time.Second):
			t.Fatal("the claimed jobs were not worked in parallel")
		}
	}
	mu.Lock()
	if len(maxes) == 0 || maxes[0] != granted {
		t.Errorf("first claim asked for %v, want %d", maxes, granted)
	}
	mu.Unlock()
	cancel()
	select {
	case <-stopped:
		t.Fatal("Run returned while its workers were still running")
	case <-time.After(20 * time.Millisecond): // a window for a wrong early return to show
	}
	close(finish)
	<-stopped
	mu.Lock()
	defer mu.Unlock()
	if acquired != released {
		t.Errorf("acquired %d units, released %d", acquired, released)
	}
	if n := st.finished.Load(); n != 2 {
		t.Errorf("%d outcomes recorded, want 2", n)
	}
}

// gateFuncs is a Gate of two functions.
type gateFuncs struct {
	acquire func(ctx context.Context) int
	release func(n int)
}

func (g gateFuncs) Acquire(ctx context.Context) int { return g.acquire(ctx) }
func (g gateFuncs) Release(n int)                   { g.release(n) }

// semGate is a Gate over a semaphore: Acquire waits for one unit and takes the others free then.
type semGate chan struct{}

func (g semGate) Acquire(ctx context.Context) int {
	select {
	case g <- struct{}{}:
	case <-ctx.Done():
		return 0
	}
	n := 1
	for n < cap(g) {
		select {
		case g <- struct{}{}:
			n++
		default:
			return n
		}
	}
	return n
}

func (g semGate) Release(n int) {
	for range n {
		<-g
	}
}

// A lane with Ahead claims its free units' worth of jobs and Ahead more in one claim, starts only
// what its Gate grants, and at shutdown puts the jobs it never started back: pending, due at once,
// with an attempt saying so. Jobs it did not claim are untouched.
func TestLoopClaimsAheadAndPutsBackUnstarted(t *testing.T) {
	st := newMemStore()
	t0 := time.Now().Add(-time.Minute)
	var jobs []store.Job
	for i := range 10 {
		jobs = append(jobs, store.Job{ID: fmt.Sprintf("j%d", i), Kind: store.KindWebhook, NextAt: t0.Add(time.Duration(i) * time.Second)})
	}
	st.add(jobs...)
	started := make(chan string, 10)
	work := WorkerFunc(func(ctx context.Context, j store.Job) Result {
		started <- j.ID
		<-ctx.Done()
		return Result{State: store.StatePending, Attempt: store.Attempt{Status: "canceled", Error: "shut down during work"}}
	})
	gate := make(semGate, 2)
	c := New(st, []Lane{{Worker: work, Gate: gate, Parallel: true, Ahead: 3}}, Options{})
	stop := runConsumer(c)
	var ran []string
	for range 2 {
		select {
		case id := <-started:
			ran = append(ran, id)
		case <-time.After(10 * time.Second):
			t.Fatal("the granted jobs were not started")
		}
	}
	waitUntil(t, "five jobs claimed", func() bool {
		n := 0
		for _, j := range jobs {
			if got, _ := st.job(j.ID); got.State == store.StateInFlight {
				n++
			}
		}
		return n == 5
	})
	stop()
	close(started)
	for id := range started {
		ran = append(ran, id)
	}
	slices.Sort(ran)
	if !slices.Equal(ran, []string{"j0", "j1"}) {
		t.Errorf("worked %v, want j0 and j1 (the gate's two units)", ran)
	}
	for i, j := range jobs {
		got, recs := st.job(j.ID)
		switch {
		case i < 2:
			if got.State != store.StatePending || len(recs) != 1 || recs[0].Error != "shut down during work" {
				t.Errorf("%s (worked): state %s, records %+v", j.ID, got.State, recs)
			}
		case i < 5:
			if got.State != store.StatePending || len(recs) != 1 || recs[0].Status != "canceled" ||
				recs[0].Error != "shut down before it was started" {
				t.Errorf("%s (claimed ahead): state %s, records %+v; want pending, one canceled attempt", j.ID, got.State, recs)
			}
		default:
			if got.State != store.StatePending || len(recs) != 0 || got.Attempts != 0 {
				t.Errorf("%s (never claimed): state %s, %d attempts, records %+v", j.ID, got.State, got.Attempts, recs)
			}
		}
	}
}

// blockingFinish is a stubStore whose Finish waits until unblock is closed.
type blockingFinish struct {
	*stubStore
	finishing chan struct{} // receives when a Finish begins
	unblock   chan struct{}
}

func (s blockingFinish) Finish(ctx context.Context, id, state string, next time.Time, a store.Attempt) error {
	s.finishing <- struct{}{}
	<-s.unblock
	return s.stubStore.Finish(ctx, id, state, next, a)
}

// With FreeBeforeRecord, a job's unit is free as soon as its worker returns, while its outcome is
// still being recorded; without it, only once the record is done.
func TestLoopFreeBeforeRecord(t *testing.T) {
	for _, early := range []bool{true, false} {
		t.Run(fmt.Sprint("early=", early), func(t *testing.T) {
			var once sync.Once
			st := blockingFinish{stubStore: newStub(func(int) []store.Job {
				var out []store.Job
				once.Do(func() { out = []store.Job{{ID: "a"}} })
				return out
			}), finishing: make(chan struct{}, 1), unblock: make(chan struct{})}
			gate := make(semGate, 1)
			c := New(st, []Lane{{Worker: done, Gate: gate, Parallel: true, FreeBeforeRecord: early}}, Options{})
			stop := runConsumer(c)
			defer stop()
			select {
			case <-st.finishing:
			case <-time.After(10 * time.Second):
				t.Fatal("no outcome recorded")
			}
			// The loop went round again: it holds the unit while it waits on the gate or claims.
			// Take the unit from the outside instead: possible only if the job freed it.
			free := false
			select {
			case gate <- struct{}{}:
				free = true
				<-gate
			case <-time.After(time.Second): // a window for the unit to show up (the loop may hold
				// it for a moment while it claims nothing; a loaded machine stretches that moment)
			}
			close(st.unblock)
			if free != early {
				t.Errorf("unit free while the outcome was recorded: %v, want %v", free, early)
			}
		})
	}
}
