package dispatch

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailhook/mailhook/outbox"
	"github.com/mailhook/mailhook/store"
)

// An endpoint's gate takes every free slot, waiting for the first.
func TestEndpointGate(t *testing.T) {
	ep := &endpoint{sem: make(chan struct{}, 4)}
	ctx := context.Background()
	ep.sem <- struct{}{}
	if n := ep.Acquire(ctx); n != 3 {
		t.Errorf("with 1 of 4 slots taken, Acquire = %d, want 3", n)
	}
	short, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	if n := ep.Acquire(short); n != 0 {
		t.Errorf("with every slot taken, Acquire = %d, want 0 once ctx is done", n)
	}
	if taken := len(ep.sem); taken == 4 {
		ep.Release(taken)
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

// claimLog is a fakeOutbox that remembers the most jobs one Claim returned, per target. It gives
// the lane that claims jobs of any endpoint nothing, so that lane cannot take the backlog one job
// at a time before the endpoint's own lane is scheduled (which a loaded machine made happen).
type claimLog struct {
	*fakeOutbox
	mu   sync.Mutex
	peak map[string]int
}

func (c *claimLog) Claim(ctx context.Context, sel store.Selector, now time.Time, limit int) ([]store.Job, error) {
	if sel.Target == "" {
		return nil, nil
	}
	jobs, err := c.fakeOutbox.Claim(ctx, sel, now, limit)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.peak == nil {
		c.peak = map[string]int{}
	}
	c.peak[sel.Target] = max(c.peak[sel.Target], len(jobs))
	return jobs, err
}

func (c *claimLog) most(target string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.peak[target]
}

// With Options.Gates, two dispatchers (two replicas sharing a store) hold one endpoint's
// concurrency limit between them: the receiver never sees more requests at once than the limit.
func TestSharedConcurrencyLimit(t *testing.T) {
	_, key := testSecret(t, 1, 32)
	const limit, perReplica = 2, 6
	var inFlight, peak atomic.Int64
	arrived, release := make(chan struct{}, 2*perReplica), make(chan struct{}, 2*perReplica)
	srv, _ := receiver(t, func(_ http.ResponseWriter, r *http.Request, _ int) {
		n := inFlight.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		arrived <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
		inFlight.Add(-1)
	})
	shared := &endpoint{sem: make(chan struct{}, limit)} // stands in for the store's cluster-wide slots
	var asked []string
	opts := Options{Gates: func(name string, concurrency int) outbox.Gate {
		asked = append(asked, fmt.Sprintf("%s:%d", name, concurrency))
		return shared
	}}
	eps := []Endpoint{{Name: "ci", URL: srv.URL, Secrets: [][]byte{key}, Concurrency: limit}}
	outs := []*fakeOutbox{newFakeOutbox(), newFakeOutbox()}
	t0 := time.Now()
	for r, out := range outs {
		for i := range perReplica {
			out.add(newJob(fmt.Sprintf("msg_%d_%d", r, i), "ci", t0))
		}
		start(t, mustNew(t, out, eps, opts))
	}
	if want := []string{"ci:2", "ci:2"}; !slices.Equal(asked, want) {
		t.Errorf("Gates asked for %v, want %v", asked, want)
	}
	const jobs = 2 * perReplica
	got := 0
	for released := 0; released < jobs; released++ {
		for got-released < min(limit, jobs-released) {
			select {
			case <-arrived:
				got++
			case <-time.After(10 * time.Second):
				t.Fatalf("%d requests arrived, %d released; want %d in flight", got, released, limit)
			}
		}
		window := time.After(20 * time.Millisecond) // lets a dispatcher exceeding the limit show it
	observe:
		for {
			select {
			case <-arrived:
				got++
			case <-window:
				break observe
			}
		}
		release <- struct{}{}
	}
	for r, out := range outs {
		for i := range perReplica {
			out.waitState(t, fmt.Sprintf("msg_%d_%d", r, i), store.StateDone)
		}
	}
	if p := peak.Load(); p != limit {
		t.Errorf("peak concurrency across both dispatchers %d, want %d", p, limit)
	}
}
