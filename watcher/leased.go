package watcher

import (
	"context"
	"sync"
	"time"

	"github.com/mailhook/mailhook/store"
)

// Leased is the watcher of a mailbox on a store shared by replicas: this replica has one only
// while it holds the mailbox's lease, a new one per lease (its store writer carries that lease's
// epoch). Between leases its Status is StateStandby: another replica watches the mailbox.
type Leased struct {
	cfg Config
	h   Handler

	mu    sync.Mutex
	cur   *Watcher // nil while another replica holds the lease
	since time.Time
}

// NewLeased returns the Leased of the mailbox cfg watches, on standby; each lease's watcher gets
// cfg with PostActions set to that lease's writer.
func NewLeased(cfg Config, h Handler) *Leased { return &Leased{cfg: cfg, h: h, since: time.Now()} }

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

// Run makes the watcher of the lease just won, writing through mw (the store's writer carrying
// that lease), and runs it until ctx is done or it stops (store.ErrLeaseLost: the lease was found
// taken over); Status reports its status meanwhile, and StateStandby again once it returns.
func (l *Leased) Run(ctx context.Context, mw store.MailboxWriter) error {
	cfg := l.cfg
	cfg.PostActions = mw // mark_seen, flag, move, copy of this mailbox
	w, err := New(cfg, mw, l.h)
	if err != nil {
		return err
	}
	l.set(w)
	defer l.set(nil)
	return w.Run(ctx)
}

func (l *Leased) set(w *Watcher) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cur, l.since = w, time.Now()
}
