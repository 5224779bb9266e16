package dispatch

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mailhook/mailhook/outbox"
	"github.com/mailhook/mailhook/store"
)

// fakeOutbox is an in-memory outbox.Store with the store's semantics, except that it wakes workers only
// on add (a commit), not on Finish, so the tests show the dispatcher does not depend on it.
type fakeOutbox struct {
	mu       sync.Mutex
	jobs     map[string]*store.Job
	attempts map[string][]finishCall
	wake     chan struct{} // closed and replaced on every add
	changed  chan struct{} // closed and replaced on every Finish, for tests to wait on
	claimErr error         // returned by the next Claim, then cleared
}

// finishCall is one recorded Finish.
type finishCall struct {
	State  string
	NextAt time.Time
	store.Attempt
}

var _ outbox.Store = (*fakeOutbox)(nil)

func newFakeOutbox() *fakeOutbox {
	return &fakeOutbox{
		jobs:     make(map[string]*store.Job),
		attempts: make(map[string][]finishCall),
		wake:     make(chan struct{}),
		changed:  make(chan struct{}),
	}
}

// add commits pending jobs and wakes the workers.
func (f *fakeOutbox) add(jobs ...store.Job) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, j := range jobs {
		j.State = store.StatePending
		if j.Kind == "" {
			j.Kind = store.KindWebhook
		}
		f.jobs[j.ID] = &j
	}
	close(f.wake)
	f.wake = make(chan struct{})
}

func (f *fakeOutbox) Claim(_ context.Context, sel store.Selector, now time.Time, max int) ([]store.Job, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.claimErr; err != nil {
		f.claimErr = nil
		return nil, err
	}
	var due []*store.Job
	for _, j := range f.jobs {
		if j.State == store.StatePending && picks(sel, j) && !j.NextAt.After(now) {
			due = append(due, j)
		}
	}
	slices.SortFunc(due, func(a, b *store.Job) int {
		return cmp.Or(a.NextAt.Compare(b.NextAt), a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.ID, b.ID))
	})
	var out []store.Job
	for _, j := range due[:min(max, len(due))] {
		j.State = store.StateInFlight
		j.Attempts++
		out = append(out, *j)
	}
	return out, nil
}

func (f *fakeOutbox) Finish(_ context.Context, id, state string, nextAt time.Time, a store.Attempt) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	j, ok := f.jobs[id]
	if !ok || j.State != store.StateInFlight {
		return fmt.Errorf("finish %s: not in flight", id)
	}
	j.State, j.NextAt, j.LastError = state, nextAt, a.Error
	f.attempts[id] = append(f.attempts[id], finishCall{State: state, NextAt: nextAt, Attempt: a})
	close(f.changed)
	f.changed = make(chan struct{})
	return nil
}

func (f *fakeOutbox) NextDue(_ context.Context, sel store.Selector) (time.Time, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var next time.Time
	ok := false
	for _, j := range f.jobs {
		if j.State == store.StatePending && picks(sel, j) && (!ok || j.NextAt.Before(next)) {
			next, ok = j.NextAt, true
		}
	}
	return next, ok, nil
}

// picks reports whether sel selects j.
func picks(sel store.Selector, j *store.Job) bool {
	match := func(want, got string) bool { return want == "" || want == got }
	return match(sel.Kind, j.Kind) && match(sel.Target, j.Target) && match(sel.Account, j.Account) &&
		match(sel.Mailbox, j.Mailbox)
}

// Heartbeat renews nothing: the fake's claims never expire.
func (f *fakeOutbox) Heartbeat(context.Context, time.Time) error { return nil }

func (f *fakeOutbox) Wake() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.wake
}

// job returns a copy of the job with id.
func (f *fakeOutbox) job(id string) store.Job {
	f.mu.Lock()
	defer f.mu.Unlock()
	return *f.jobs[id]
}

// history returns the Finish calls of job id.
func (f *fakeOutbox) history(id string) []finishCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.attempts[id])
}

// waitFor waits until cond holds (checked after every Finish), failing the test after 10s.
func (f *fakeOutbox) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for {
		f.mu.Lock()
		changed := f.changed
		f.mu.Unlock()
		if cond() {
			return
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// waitState waits until job id is in state.
func (f *fakeOutbox) waitState(t *testing.T, id, state string) store.Job {
	t.Helper()
	f.waitFor(t, id+" "+state, func() bool { return f.job(id).State == state })
	return f.job(id)
}

// waitFinished waits until job id has been finished n times and returns its history.
func (f *fakeOutbox) waitFinished(t *testing.T, id string, n int) []finishCall {
	t.Helper()
	f.waitFor(t, fmt.Sprintf("%s finished %d times", id, n), func() bool { return len(f.history(id)) >= n })
	return f.history(id)
}

// clock is a settable clock; with step set, every reading advances it by step.
type clock struct {
	mu   sync.Mutex
	t    time.Time
	step time.Duration
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.t
	c.t = c.t.Add(c.step)
	return t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}
