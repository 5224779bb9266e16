package outbox

import (
	"context"
	"log/slog"
	"time"

	"github.com/mailhook/mailhook/store"
)

// Jobs of a mailbox's post-actions are run by the watcher that holds the mailbox's connection, in
// between its IDLE cycles: go-imap admits no other command while IDLE runs. That watcher cannot
// hand them to a Consumer's lane; it drains them itself (Drain) whenever it is between commands,
// and ends its IDLE when one falls due (Due). Both go through the same Store, claims and
// records as a Consumer.

// DefaultDrainBatch is how many jobs Drain claims at a time by default.
const DefaultDrainBatch = 16

// DrainOptions tune Drain. The zero value is usable.
type DrainOptions struct {
	Batch  int              // jobs claimed at a time; default DefaultDrainBatch
	Now    func() time.Time // the clock of claims and records; default time.Now
	Logger *slog.Logger     // for a Result without Log; nil discards
}

// ClaimError is a Claim that failed: the store is unavailable, and the caller may try again later.
type ClaimError struct{ Err error }

func (e *ClaimError) Error() string { return "claim: " + e.Err.Error() }
func (e *ClaimError) Unwrap() error { return e.Err }

// Drain works the jobs sel picks that are due, in turn, until none is left or ctx is done: it
// claims a batch at a time, has w work each job of it, and records every outcome as a Consumer
// does. It returns nil then. A Result with Stop set makes it claim no more: it returns Stop once
// every job of the batch has its result (w answers for the rest without working them, as a rule
// putting them back). A failing Claim ends it with a *ClaimError.
func Drain(ctx context.Context, st Store, sel store.Selector, w Worker, opts DrainOptions) error {
	batch, now, log := opts.Batch, opts.Now, opts.Logger
	if batch <= 0 {
		batch = DefaultDrainBatch
	}
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	for ctx.Err() == nil {
		jobs, err := st.Claim(ctx, sel, now(), batch)
		if err != nil {
			return &ClaimError{Err: err}
		}
		if len(jobs) == 0 {
			return nil
		}
		var stop error
		for _, j := range jobs {
			r := w.Work(ctx, j)
			if r.Log == nil {
				r.Log = log
			}
			record(ctx, st, j, r, now)
			if stop == nil {
				stop = r.Stop
			}
		}
		if stop != nil {
			return stop
		}
	}
	return nil
}

// Due returns a channel that is closed once a job sel picks is due (pending, its next_at
// passed, its dependencies done), for a wait that must end then (the watcher's IDLE); stop ends
// the goroutine behind it. It waits as a Consumer's loop does: on the store's Wake, and on a
// timer set to the next due job, at most recheck (30 s) at a time, to notice jobs changed by
// another process; a failing store is asked again after recheck.
func Due(ctx context.Context, st Store, sel store.Selector) (due <-chan struct{}, stop func()) {
	ch := make(chan struct{})
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			wake := st.Wake()
			delay := recheck
			next, ok, err := st.NextDue(ctx, sel)
			if err == nil {
				var now bool
				if delay, now = untilDue(next, ok, time.Now(), recheck); now {
					close(ch)
					return
				}
			}
			sleep(ctx, wake, nil, delay)
			if ctx.Err() != nil {
				return
			}
		}
	}()
	return ch, func() { cancel(); <-done }
}
