package outbox

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/mailhook/mailhook/store"
)

// memStore is an in-memory Store with the outbox's semantics (no dependencies): Claim takes due
// pending jobs by selector, Finish settles in-flight ones, add commits and wakes.
type memStore struct {
	mu        sync.Mutex
	jobs      map[string]*store.Job
	records   map[string][]store.Attempt
	wake      chan struct{}
	finishErr []error // returned by the next Finishes, one each
	claimErr  error   // returned by every Claim while set
	renewals  int
}

var _ Store = (*memStore)(nil)

func newMemStore() *memStore {
	return &memStore{jobs: map[string]*store.Job{}, records: map[string][]store.Attempt{}, wake: make(chan struct{})}
}

// add commits pending jobs and wakes the loops.
func (m *memStore) add(jobs ...store.Job) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, j := range jobs {
		j.State = store.StatePending
		m.jobs[j.ID] = &j
	}
	close(m.wake)
	m.wake = make(chan struct{})
}

func picks(sel store.Selector, j *store.Job) bool {
	match := func(want, got string) bool { return want == "" || want == got }
	return match(sel.Kind, j.Kind) && match(sel.Target, j.Target) && match(sel.Account, j.Account) &&
		match(sel.Mailbox, j.Mailbox)
}

func (m *memStore) Claim(_ context.Context, sel store.Selector, now time.Time, max int) ([]store.Job, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.claimErr != nil {
		return nil, m.claimErr
	}
	var due []*store.Job
	for _, j := range m.jobs {
		if j.State == store.StatePending && picks(sel, j) && !j.NextAt.After(now) {
			due = append(due, j)
		}
	}
	slices.SortFunc(due, func(a, b *store.Job) int { return cmp.Or(a.NextAt.Compare(b.NextAt), cmp.Compare(a.ID, b.ID)) })
	var out []store.Job
	for _, j := range due[:min(max, len(due))] {
		j.State = store.StateInFlight
		j.Attempts++
		out = append(out, *j)
	}
	return out, nil
}

func (m *memStore) Finish(_ context.Context, id, state string, nextAt time.Time, a store.Attempt) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.finishErr) > 0 {
		err := m.finishErr[0]
		m.finishErr = m.finishErr[1:]
		if err != nil {
			return err
		}
	}
	j, ok := m.jobs[id]
	if !ok {
		return store.ErrNotFound
	}
	if j.State != store.StateInFlight {
		return fmt.Errorf("%w: %s", store.ErrState, j.State)
	}
	j.State, j.NextAt, j.LastError = state, nextAt, a.Error
	m.records[id] = append(m.records[id], a)
	return nil
}

func (m *memStore) NextDue(_ context.Context, sel store.Selector) (time.Time, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var next time.Time
	ok := false
	for _, j := range m.jobs {
		if j.State == store.StatePending && picks(sel, j) && (!ok || j.NextAt.Before(next)) {
			next, ok = j.NextAt, true
		}
	}
	return next, ok, nil
}

func (m *memStore) Wake() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.wake
}

func (m *memStore) Heartbeat(context.Context, time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.renewals++
	return nil
}

// job returns a copy of job id and its records.
func (m *memStore) job(id string) (store.Job, []store.Attempt) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return *m.jobs[id], slices.Clone(m.records[id])
}
