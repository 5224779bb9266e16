package watcher

import (
	"context"
	"sync"
	"time"
)

// Leased is the watcher of a mailbox on a store shared by replicas: this replica has one only
// while it holds the mailbox's lease, a new one per lease (its store writer carries that lease's
// epoch). Between leases its Status is StateStandby: another replica watches the mailbox.
type Leased struct {
	mu    sync.Mutex
	cur   *Watcher // nil while another replica holds the lease
	since time.Time
}

// NewLeased returns a Leased on standby.
func NewLeased() *Leased { return &Leased{since: time.Now()} }

// Status is the current watcher's status, or StateStandby between leases.
func (l *Leased) Status() Status {
	l.mu.Lock()
	w, since := l.cur, l.since
	l.mu.Unlock()
	if w == nil {
		return Status{State: StateStandby, Since: since}
	}
	return w.Status()
}

// Run runs w, the watcher of the lease just won, until ctx is done or w stops; Status reports
// w's meanwhile, and StateStandby again once it returns.
func (l *Leased) Run(ctx context.Context, w *Watcher) error {
	l.set(w)
	defer l.set(nil)
	return w.Run(ctx)
}

func (l *Leased) set(w *Watcher) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cur, l.since = w, time.Now()
}
