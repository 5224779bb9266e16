package outbox

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/mailhook/mailhook/store"
)

// Loop pacing.
const (
	minStoreRetry = time.Second // first wait after a failed Claim or NextDue
	maxStoreRetry = time.Minute // longest such wait
	minPastDue    = 50 * time.Millisecond
	maxPastDue    = 5 * time.Second // re-check of a due job Claim did not return (waiting on dependencies)
	finishTimeout = 10 * time.Second
	// recheck bounds every idle wait by default: an operator tool (`mailhook outbox retry`) may
	// change the outbox from another process, whose writes do not reach this process's Wake.
	recheck = 30 * time.Second
)

// loop is lane l's claim loop. Each round it takes capacity (the Gate) and starts that many jobs:
// those it claimed ahead first, and when they do not suffice it claims the rest and l.Ahead more
// in one transaction. Each job is worked and recorded; when nothing was claimable it asks
// when the next job falls due and sleeps until then, until the store's Wake fires or until
// recheck has passed (another process, such as `mailhook outbox retry`, may have changed the
// outbox without reaching this process's Wake), whichever comes first. A failing store is retried
// with a backoff from minStoreRetry to maxStoreRetry; a job that is due but not claimed (its
// dependencies are not done) is looked at again after a backoff from minPastDue to maxPastDue, so
// the loop never spins. It returns when ctx is done and, with l.Parallel, its workers have.
func (c *Consumer) loop(ctx context.Context, l Lane) {
	hb := c.beats.join()
	defer c.beats.leave(hb)
	var workers sync.WaitGroup
	defer workers.Wait()
	// A job worked in parallel frees capacity when it is recorded, and may have made its job due
	// again (a retry): the loop goes round then, as a sequential one does, whether or not the
	// store's Wake fires.
	worked := make(chan struct{}, 1)

	// Jobs claimed ahead (Lane.Ahead), in due order, not yet started; put back at the end.
	var ahead []store.Job
	defer func() { c.putBack(ctx, l, ahead) }()

	storeWait, pastDue := time.Duration(0), 0
	for ctx.Err() == nil {
		hb.beat()
		wake := c.st.Wake() // before claiming, so a commit in between is not missed
		n := 1
		if l.Gate != nil {
			if n = l.Gate.Acquire(ctx); n <= 0 {
				return
			}
		}
		var err error
		if len(ahead) < n {
			var more []store.Job
			more, err = c.st.Claim(ctx, l.Select, c.now(), n-len(ahead)+max(l.Ahead, 0))
			ahead = append(ahead, more...)
		}
		k := min(n, len(ahead))
		jobs := ahead[:k:k]
		ahead = ahead[k:]
		if len(ahead) == 0 {
			ahead = nil // let the claimed batch's bodies go
		}
		release(l.Gate, n-len(jobs))
		for _, j := range jobs {
			if l.Parallel {
				workers.Go(func() {
					c.work(ctx, l, j, func() { release(l.Gate, 1) })
					// After the record, also when the unit went back before it
					// (FreeBeforeRecord): a retry recorded pending is what the loop must see.
					select {
					case worked <- struct{}{}:
					default:
					}
				})
			} else {
				c.work(ctx, l, j, func() { release(l.Gate, 1) })
			}
		}
		if err == nil && len(jobs) > 0 {
			storeWait, pastDue = 0, 0
			continue
		}

		var next time.Time
		ok := false
		if err == nil {
			next, ok, err = c.st.NextDue(ctx, l.Select)
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			storeWait = min(max(2*storeWait, minStoreRetry), maxStoreRetry)
			l.Log.Error("outbox unavailable", "err", err, "retry_in", storeWait)
			sleep(ctx, nil, nil, storeWait)
			continue
		}
		storeWait = 0

		delay, due := untilDue(next, ok, c.now(), c.idle)
		switch {
		case due:
			// Due, yet not claimed: waiting on dependencies, or it became due just now.
			delay = min(minPastDue<<min(pastDue, 16), maxPastDue)
			pastDue++
		case ok:
			pastDue = 0
		}
		sleep(ctx, wake, worked, delay)
	}
}

// putBack returns jobs claimed ahead that were never started to the outbox: pending, due now,
// with an attempt saying why. It runs as ctx is done, so it records as record does, regardless.
func (c *Consumer) putBack(ctx context.Context, l Lane, jobs []store.Job) {
	for _, j := range jobs {
		record(ctx, c.st, j, Result{State: store.StatePending, Log: l.Log,
			Attempt: store.Attempt{Status: "canceled", Error: "shut down before it was started"}}, c.now)
	}
}

// work has l's worker work j and records the outcome; free gives j's Gate unit back, after the
// record or, with l.FreeBeforeRecord, before it.
func (c *Consumer) work(ctx context.Context, l Lane, j store.Job, free func()) {
	r := l.Worker.Work(ctx, j)
	if r.Log == nil {
		r.Log = l.Log
	}
	if l.FreeBeforeRecord {
		free()
		record(ctx, c.st, j, r, c.now)
		return
	}
	record(ctx, c.st, j, r, c.now)
	free()
}

// untilDue says how long an idle loop sleeps when NextDue said (next, ok) at now: until next, at
// most idle, and idle when nothing is pending. due reports a job that is due already.
func untilDue(next time.Time, ok bool, now time.Time, idle time.Duration) (delay time.Duration, due bool) {
	if !ok {
		return idle, false
	}
	if delay = next.Sub(now); delay <= 0 {
		return 0, true
	}
	return min(delay, idle), false
}

// sleep waits until ctx is done, wake or worked is ready, or delay has passed (forever when
// delay < 0). A nil channel is never ready.
func sleep(ctx context.Context, wake <-chan struct{}, worked chan struct{}, delay time.Duration) {
	var timer <-chan time.Time
	if delay >= 0 {
		t := time.NewTimer(delay)
		defer t.Stop()
		timer = t.C
	}
	select {
	case <-ctx.Done():
	case <-wake:
	case <-worked:
	case <-timer:
	}
}

// release gives n units back to g, if any.
func release(g Gate, n int) {
	if n > 0 && g != nil {
		g.Release(n)
	}
}

// record records the outcome r of job j (Store.Finish). It goes on while ctx is being cancelled,
// so an outcome reached during shutdown is not lost (a sent webhook is not sent again, a sent
// reply not marked unknown); it retries a failing store for up to finishTimeout, after which the
// job stays in_flight until its claim is recovered. A job changed meanwhile (dropped, requeued)
// is left as the operator made it.
func record(ctx context.Context, st Store, j store.Job, r Result, now func() time.Time) {
	a := r.Attempt
	a.JobID = j.ID
	if a.At.IsZero() {
		a.At = now()
	}
	what := noun(j.Kind)
	log := r.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finishTimeout)
	defer cancel()
	wait := 100 * time.Millisecond
	for {
		err := st.Finish(ctx, j.ID, r.State, r.NextAt, a)
		if err == nil {
			return
		}
		if errors.Is(err, store.ErrState) || errors.Is(err, store.ErrNotFound) {
			log.Warn("job changed while in flight; "+what+" outcome not recorded", "state", r.State, "err", err)
			return
		}
		if ctx.Err() != nil {
			log.Error("cannot record "+what+" outcome; job stays in flight until restart", "state", r.State, "err", err)
			return
		}
		log.Warn("cannot record "+what+" outcome; retrying", "state", r.State, "err", err)
		sleep(ctx, nil, nil, wait)
		wait *= 2
	}
}

// noun names the outcome of a job of kind in log lines.
func noun(kind string) string {
	switch kind {
	case store.KindWebhook:
		return "delivery"
	case store.KindPostAction:
		return "post-action"
	}
	return kind // "reply"
}
