package dispatch

import (
	"context"
	"log/slog"
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

// testPump is a pump over nothing: claims return what jobs hands out, nothing is ever due, and
// Wake never fires.
func testPump(jobs func(max int) []store.Job, handle func(context.Context, store.Job)) *pump {
	never := make(chan struct{})
	return &pump{
		log:  slog.New(slog.DiscardHandler),
		now:  time.Now,
		wake: func() <-chan struct{} { return never },
		claim: func(_ context.Context, _ time.Time, max int) ([]store.Job, error) {
			return jobs(max), nil
		},
		nextDue: func(context.Context) (time.Time, bool, error) { return time.Time{}, false, nil },
		handle:  handle,
	}
}

// Every idle wait is bounded by recheck: a change another process made to the outbox (which does
// not reach this process's Wake) is noticed without a wake-up. Reply and webhook workers share
// this loop.
func TestPumpRechecksWithoutWake(t *testing.T) {
	var claims atomic.Int64
	p := testPump(func(int) []store.Job { claims.Add(1); return nil }, nil)
	p.recheck = 5 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.run(ctx); close(done) }()
	waitUntil(t, "three claims without a wake-up", func() bool { return claims.Load() >= 3 })
	cancel()
	<-done
}

// A parallel pump claims as many jobs as acquire grants in one claim, handles them at once, gives
// back the units nobody used and one per handled job, and returns only once its handlers have.
func TestPumpParallelClaimsAndReleases(t *testing.T) {
	const granted = 3
	var (
		mu                 sync.Mutex
		maxes              []int
		acquired, released int
		served             bool
	)
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan string, granted)
	finish := make(chan struct{})
	p := testPump(func(max int) []store.Job {
		mu.Lock()
		defer mu.Unlock()
		maxes = append(maxes, max)
		if served {
			return nil
		}
		served = true
		return []store.Job{{ID: "a"}, {ID: "b"}} // fewer than granted: one unit unused
	}, func(_ context.Context, j store.Job) {
		started <- j.ID
		<-finish
	})
	p.parallel = true
	p.acquire = func(ctx context.Context) int {
		mu.Lock()
		defer mu.Unlock()
		if acquired-released >= granted {
			return 0 // a real semaphore would block; here the test is over
		}
		n := granted - (acquired - released)
		acquired += n
		return n
	}
	p.release = func(n int) {
		mu.Lock()
		defer mu.Unlock()
		released += n
	}
	done := make(chan struct{})
	go func() { p.run(ctx); close(done) }()

	for range 2 { // both jobs are being handled at the same time
		select {
		case <-started:
		case <-time.After(10 * time.Second):
			t.Fatal("the claimed jobs were not handled in parallel")
		}
	}
	mu.Lock()
	if len(maxes) == 0 || maxes[0] != granted {
		t.Errorf("first claim asked for %v, want %d", maxes, granted)
	}
	mu.Unlock()
	cancel()
	select {
	case <-done:
		t.Fatal("run returned while its handlers were still running")
	case <-time.After(20 * time.Millisecond): // a window for a wrong early return to show
	}
	close(finish)
	<-done
	mu.Lock()
	defer mu.Unlock()
	if acquired != released {
		t.Errorf("acquired %d units, released %d", acquired, released)
	}
}

// acquireFree takes every free slot, waiting for the first.
func TestAcquireFree(t *testing.T) {
	ep := &endpoint{sem: make(chan struct{}, 4)}
	ctx := context.Background()
	ep.sem <- struct{}{}
	if n := ep.acquireFree(ctx); n != 3 {
		t.Errorf("with 1 of 4 slots taken, acquireFree = %d, want 3", n)
	}
	short, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	if n := ep.acquireFree(short); n != 0 {
		t.Errorf("with every slot taken, acquireFree = %d, want 0 once ctx is done", n)
	}
	if taken := len(ep.sem); taken == 4 {
		ep.releaseN(taken)
		if len(ep.sem) != 0 {
			t.Errorf("%d slots still taken after releasing all", len(ep.sem))
		}
	}
}

// An endpoint's worker claims as many jobs at once as the endpoint has free slots, so a backlog
// costs one claim per several deliveries.
func TestEndpointClaimsFreeSlots(t *testing.T) {
	_, key := testSecret(t, 1, 32)
	srv, _ := receiver(t, nil)
	out := &claimLog{fakeOutbox: newFakeOutbox()}
	t0 := time.Now()
	for i := range 8 {
		out.add(newJob("msg_"+string(rune('A'+i)), "ci", t0))
	}
	start(t, mustNew(t, out, []Endpoint{{Name: "ci", URL: srv.URL, Secrets: [][]byte{key}, Concurrency: 4}}, Options{}))
	for i := range 8 {
		out.waitState(t, "msg_"+string(rune('A'+i)), store.StateDone)
	}
	if got := out.most("ci"); got < 2 {
		t.Errorf("most jobs claimed at once for the endpoint = %d, want several (up to 4)", got)
	}
}

// claimLog is a fakeOutbox that remembers the most jobs one Claim returned, per target.
type claimLog struct {
	*fakeOutbox
	mu   sync.Mutex
	peak map[string]int
}

func (c *claimLog) Claim(ctx context.Context, kind, target string, now time.Time, limit int) ([]store.Job, error) {
	jobs, err := c.fakeOutbox.Claim(ctx, kind, target, now, limit)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.peak == nil {
		c.peak = map[string]int{}
	}
	c.peak[target] = max(c.peak[target], len(jobs))
	return jobs, err
}

func (c *claimLog) most(target string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.peak[target]
}

// The reply dispatcher's workers report heartbeats while Run runs, and none after.
func TestReplyHeartbeat(t *testing.T) {
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	d, err := NewReplyDispatcher(st, nil, ReplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if hb := d.Heartbeat(); !hb.IsZero() {
		t.Errorf("Heartbeat before Run = %v, want zero", hb)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = d.Run(ctx); close(done) }()
	waitUntil(t, "a heartbeat", func() bool { return !d.Heartbeat().IsZero() })
	cancel()
	<-done
	if hb := d.Heartbeat(); !hb.IsZero() {
		t.Errorf("Heartbeat after Run returned = %v, want zero", hb)
	}
}
