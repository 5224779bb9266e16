package outbox

import (
	"context"
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
