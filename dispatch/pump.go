package dispatch

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/mailhook/mailhook/store"
)

// pump is the worker loop of webhook and reply workers. Each round it takes capacity (acquire),
// claims up to that many due jobs in one transaction, and hands them to handle; when nothing was
// claimable it asks when the next job falls due and sleeps until then, until the outbox's Wake
// fires or until recheck has passed (another process, such as `mailhook outbox retry`, may have
// changed the outbox without reaching this process's Wake), whichever comes first. A failing
// store is retried with a backoff from minStoreRetry to maxStoreRetry; a job that is due but not
// claimed (its dependencies are not done) is looked at again after a backoff from minPastDue to
// maxPastDue, so the loop never spins.
type pump struct {
	log  *slog.Logger
	now  func() time.Time
	wake func() <-chan struct{}
	// beats, when set, gets this loop's heartbeat: one at the start of every round.
	beats *beats
	// acquire blocks until the pump may claim, and returns how many jobs it may claim at most
	// (at least 1), or 0 when ctx is done first. nil means one job per round.
	acquire func(ctx context.Context) int
	// release gives back n of the units acquire granted: those no claimed job used, right after
	// the claim, and one per job once handle has returned. nil means nothing to give back.
	release func(n int)
	// claim claims up to max jobs due at now; nextDue tells when the next one is due.
	claim   func(ctx context.Context, now time.Time, max int) ([]store.Job, error)
	nextDue func(ctx context.Context) (time.Time, bool, error)
	// handle settles one claimed job.
	handle func(ctx context.Context, j store.Job)
	// parallel runs handle for each claimed job in its own goroutine, so the loop claims again as
	// soon as a unit is released; otherwise the jobs are handled in turn before the next round.
	// run returns only after every handle it started has returned.
	parallel bool
	// recheck bounds every idle wait; 0 means the recheck constant (30 s).
	recheck time.Duration
}

// run is the loop; it returns when ctx is done (and, with parallel, its handlers have returned).
func (p *pump) run(ctx context.Context) {
	var hb *beat
	if p.beats != nil {
		hb = p.beats.join()
		defer p.beats.leave(hb)
	}
	var handlers sync.WaitGroup
	defer handlers.Wait()
	// A handler returning frees capacity, and may have made its job due again (a retry): the
	// loop goes round then, as a sequential one does, whether or not the outbox's Wake fires.
	handled := make(chan struct{}, 1)

	idle := p.recheck
	if idle <= 0 {
		idle = recheck
	}
	storeWait, pastDue := time.Duration(0), 0
	for ctx.Err() == nil {
		if hb != nil {
			hb.beat()
		}
		wake := p.wake() // before claiming, so a commit in between is not missed
		n := 1
		if p.acquire != nil {
			if n = p.acquire(ctx); n <= 0 {
				return
			}
		}
		jobs, err := p.claim(ctx, p.now(), n)
		p.give(n - len(jobs))
		for _, j := range jobs {
			if p.parallel {
				handlers.Go(func() {
					p.handle(ctx, j)
					p.give(1)
					select {
					case handled <- struct{}{}:
					default:
					}
				})
			} else {
				p.handle(ctx, j)
				p.give(1)
			}
		}
		if err == nil && len(jobs) > 0 {
			storeWait, pastDue = 0, 0
			continue
		}

		var next time.Time
		ok := false
		if err == nil {
			next, ok, err = p.nextDue(ctx)
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			storeWait = min(max(2*storeWait, minStoreRetry), maxStoreRetry)
			p.log.Error("outbox unavailable", "err", err, "retry_in", storeWait)
			sleep(ctx, nil, storeWait)
			continue
		}
		storeWait = 0

		delay := idle // or until woken
		if ok {
			if delay = next.Sub(p.now()); delay <= 0 {
				// Due, yet not claimed: waiting on dependencies, or it became due just now.
				delay = min(minPastDue<<min(pastDue, 16), maxPastDue)
				pastDue++
			} else {
				pastDue = 0
				delay = min(delay, idle)
			}
		}
		p.sleep(ctx, wake, handled, delay)
	}
}

// sleep waits until ctx is done, wake or handled is ready, or delay has passed.
func (p *pump) sleep(ctx context.Context, wake <-chan struct{}, handled chan struct{}, delay time.Duration) {
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-wake:
	case <-handled:
	case <-t.C:
	}
}

// give releases n units, if any.
func (p *pump) give(n int) {
	if n > 0 && p.release != nil {
		p.release(n)
	}
}

// acquireFree takes one slot of the endpoint's concurrency limit, waiting for it, then as many
// more as are free at once: how many jobs one claim may start. It returns 0 when ctx is done
// before the first slot.
func (ep *endpoint) acquireFree(ctx context.Context) int {
	if !ep.acquire(ctx) {
		return 0
	}
	n := 1
	for n < cap(ep.sem) {
		select {
		case ep.sem <- struct{}{}:
			n++
		default:
			return n
		}
	}
	return n
}

// releaseN gives back n slots.
func (ep *endpoint) releaseN(n int) {
	for range n {
		ep.release()
	}
}
