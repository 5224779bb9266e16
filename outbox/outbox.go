package outbox

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/mailhook/mailhook/store"
)

// Store is the part of the state store a consumer drives. Implementations must be safe for
// concurrent use by many loops.
type Store interface {
	// Claim moves up to max jobs that sel picks — pending, next_at at or before now, every
	// dependency done — to in_flight under this store's claim owner, counts the attempt (the
	// returned Job.Attempts includes it) and returns them with their Body, in due order. A claimed
	// job stays in_flight until Finish; a claim that is neither finished nor renewed (Heartbeat)
	// before it expires is recovered by the store.
	Claim(ctx context.Context, sel store.Selector, now time.Time, max int) ([]store.Job, error)
	// Finish records one attempt of a claimed job, sets its last error to a.Error and moves it
	// to state (store.StateDone, StatePending to be claimable again at nextAt, StateDead,
	// StateUnknown or StateHeld). An error wrapping store.ErrState or store.ErrNotFound means the
	// job is no longer in flight here (an operator dropped or requeued it): retrying is pointless.
	Finish(ctx context.Context, id, state string, nextAt time.Time, a store.Attempt) error
	// NextDue returns the earliest next_at of the pending jobs sel picks whose dependencies are
	// done, or ok=false when there is none. It may be in the past.
	NextDue(ctx context.Context, sel store.Selector) (next time.Time, ok bool, err error)
	// Wake returns a channel that becomes ready (receives or is closed) after the next commit of
	// new or re-queued jobs following the call. Several loops wait on it at once, so every one of
	// them must see it; a loop takes the channel before it claims, so a commit in between is
	// never missed.
	Wake() <-chan struct{}
	// Heartbeat renews, as of now, the claims this store's owner holds, so that jobs still being
	// worked on are not recovered as abandoned.
	Heartbeat(ctx context.Context, now time.Time) error
}

// Worker does the work of claimed jobs: a webhook delivery, an auto-reply, a post-action. Work is
// called once per claimed job, from the loop that claimed it; it returns the job's outcome, which
// the loop records (Store.Finish). Work runs while ctx is being cancelled too: when ctx is done it
// should give up what it has not started and say so in its Result (pending, due now), so the job is
// tried again after the restart.
type Worker interface {
	Work(ctx context.Context, j store.Job) Result
}

// WorkerFunc adapts a function to Worker.
type WorkerFunc func(ctx context.Context, j store.Job) Result

// Work calls f.
func (f WorkerFunc) Work(ctx context.Context, j store.Job) Result { return f(ctx, j) }

// Result is the outcome of one attempt at a job, as the loop records it.
type Result struct {
	// State is the job's next state: store.StateDone, StatePending (tried again at NextAt; zero
	// means now), StateDead, StateUnknown or StateHeld.
	State  string
	NextAt time.Time
	// Attempt is the record of the attempt: its Status and Error (the job's last error). JobID is
	// filled in; a zero At means the time the loop records it.
	Attempt store.Attempt
	// Log, when set, is the job's logger (with its job, rule, … keys), for the lines the loop
	// writes about recording the outcome; nil means the loop's own.
	Log *slog.Logger
	// Stop, when set, says the worker cannot go on (its connection failed). Drain claims no more
	// and returns it once the jobs it had claimed have their results; a Consumer ignores it.
	Stop error
}

// Gate bounds how many claimed jobs a lane holds at once.
type Gate interface {
	// Acquire blocks until the lane may claim and returns how many jobs it may claim at most (at
	// least 1), or 0 when ctx is done first.
	Acquire(ctx context.Context) int
	// Release gives back n of the units Acquire granted: those no claimed job used, right after
	// the claim, and one per job once its result is recorded (or, with Lane.FreeBeforeRecord, once
	// its Worker has returned it).
	Release(n int)
}

// Lane is one claim loop of a Consumer: which jobs it claims, how many it may hold at once, and
// who works them.
type Lane struct {
	Select store.Selector
	Worker Worker
	// Gate, when set, bounds the jobs the lane holds (a webhook endpoint's concurrency, an
	// account's one reply at a time); nil means one job per round.
	Gate Gate
	// Parallel works each claimed job in its own goroutine, so the lane claims again as soon as
	// its Gate releases a unit; otherwise the jobs of one claim are worked in turn.
	Parallel bool
	// FreeBeforeRecord gives a job's Gate unit back as soon as its Worker has returned, before
	// the outcome is recorded: the Gate then bounds the work under way (a webhook endpoint's
	// requests in flight), and outcomes that wait for their record commit together with the
	// others of their moment (the store's group commit) instead of holding the next job's unit
	// for an fsync. The lane still holds no more jobs than it claimed. Otherwise the unit is held
	// until the record (a reply account's one message at a time covers the record of its outcome).
	FreeBeforeRecord bool
	// Ahead is how many jobs beyond what its Gate grants the lane may claim at once and hold,
	// claimed but not started, to start as units free up: one claim transaction (one fsync) then
	// serves Ahead+1 or more jobs instead of the one a freed unit admits. The store's heartbeat
	// renews their claims like any other. A job claimed ahead that shutdown finds unstarted is
	// put back (pending, due at once) with an attempt "canceled". Zero claims only what the Gate
	// grants.
	Ahead int
	// Log receives the lane's own lines (the outbox unavailable); nil means the consumer's.
	Log *slog.Logger
}

// DefaultHeartbeat is how often a running Consumer renews the store's claims by default.
const DefaultHeartbeat = 10 * time.Second

// Options tune a Consumer. The zero value is usable.
type Options struct {
	// Name says what stopped in the line Run logs at debug when it returns ("dispatcher").
	Name string
	// Logger receives the consumer's lines and, where a Lane or Result has none, theirs; nil
	// discards.
	Logger *slog.Logger
	// Now is the clock of claims and of outcome records; nil means time.Now.
	Now func() time.Time
	// Recheck bounds every idle wait (default 30 s): another process (`mailhook outbox retry`)
	// may change the outbox, and its commits do not reach this process's Store.Wake.
	Recheck time.Duration
	// Heartbeat is how often Run renews the store's claims (Store.Heartbeat); default
	// DefaultHeartbeat. It must be well below the store's claim expiry.
	Heartbeat time.Duration
	// Stopped, when set, is called once every lane has stopped, before Run returns (a webhook
	// dispatcher closes its idle connections).
	Stopped func()
}

// Consumer is the outbox's one consumer loop, run once per lane: claim due jobs, have the lane's
// Worker work each, record the outcome (Store.Finish, retried while the store fails), and sleep
// until the next job is due or a commit wakes it. Create it with New and start it with Run.
type Consumer struct {
	st    Store
	lanes []Lane
	name  string
	log   *slog.Logger
	now   func() time.Time
	idle  time.Duration
	renew time.Duration
	stop  func()
	beats beats // lane loop heartbeats, for Heartbeat
}

// New returns a Consumer of st running lanes. It does no I/O.
func New(st Store, lanes []Lane, opts Options) *Consumer {
	c := &Consumer{st: st, lanes: lanes, name: opts.Name, log: opts.Logger, now: opts.Now,
		idle: opts.Recheck, renew: opts.Heartbeat, stop: opts.Stopped}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.idle <= 0 {
		c.idle = recheck
	}
	if c.renew <= 0 {
		c.renew = DefaultHeartbeat
	}
	for i := range c.lanes {
		if c.lanes[i].Log == nil {
			c.lanes[i].Log = c.log
		}
	}
	return c
}

// Run runs every lane's loop, and renews the store's claims every Options.Heartbeat, until ctx
// is done; it returns nil once every loop has stopped and every outcome reached meanwhile is
// recorded. A job whose work shutdown cut short goes back to the outbox as its worker says
// (pending, as a rule). Run must not be called again before it has returned.
func (c *Consumer) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, l := range c.lanes {
		wg.Go(func() { c.loop(ctx, l) })
	}
	wg.Go(func() { c.heartbeat(ctx) })
	wg.Wait()
	if c.stop != nil {
		c.stop()
	}
	if c.name != "" {
		c.log.Debug(c.name + " stopped")
	}
	return nil
}

// Heartbeat returns the oldest of the times at which each running lane loop last began a round,
// or the zero time when Run is not running. A loop goes round at least every Options.Recheck
// while idle, and after every job, which its worker's timeouts bound: a heartbeat much older than
// that means a loop is stuck, which a liveness probe reports.
func (c *Consumer) Heartbeat() time.Time { return c.beats.oldest() }

// heartbeat renews the store's claims until ctx is done. A failure is logged once per streak;
// the claims expire only if no renewal succeeds for the store's claim expiry.
func (c *Consumer) heartbeat(ctx context.Context) {
	t := time.NewTicker(c.renew)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := c.st.Heartbeat(ctx, c.now())
		switch {
		case err != nil && ctx.Err() != nil:
			return
		case err != nil && !failing:
			failing = true
			c.log.Warn("cannot renew the outbox claims; will retry", "err", err)
		case err == nil && failing:
			failing = false
			c.log.Info("outbox claims renewed again")
		}
	}
}
