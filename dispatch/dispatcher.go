package dispatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/mailhook/mailhook/spool"
	"github.com/mailhook/mailhook/store"
)

// Outbox is the part of the store the dispatcher drives. Implementations must be safe for
// concurrent use by many workers.
type Outbox interface {
	// Claim moves up to max pending jobs of kind whose next_at is at or before now (and whose
	// dependencies are done) to in_flight, counts the attempt (the returned Job.Attempts includes
	// it) and returns the jobs with their Body, oldest first. target selects the jobs of one
	// target; "" selects jobs of any target. A claimed job stays in_flight until Finish; jobs left
	// in_flight by a crash are pending again after a restart.
	Claim(ctx context.Context, kind, target string, now time.Time, max int) ([]store.Job, error)
	// Finish records one attempt of a claimed job, sets its last error to a.Error and moves it
	// to state: StateDone, StateDead, or StatePending to be claimable again at nextAt. An error
	// wrapping store.ErrState or store.ErrNotFound means the job is no longer in flight (an
	// operator dropped or requeued it): retrying is pointless.
	Finish(ctx context.Context, id, state string, nextAt time.Time, a store.Attempt) error
	// NextDue returns the earliest next_at of the pending jobs of kind and target ("" = any
	// target), or ok=false when there is none.
	NextDue(ctx context.Context, kind, target string) (next time.Time, ok bool, err error)
	// Wake returns a channel that becomes ready (receives or is closed) after the next commit of
	// new or re-queued jobs following the call. Several workers wait on it at once, so every one of
	// them must see it; a worker takes the channel before it claims, so a commit in between is
	// never missed.
	Wake() <-chan struct{}
}

// Options tune a Dispatcher. The zero value is usable.
type Options struct {
	// Logger receives one line per delivery outcome; nil discards. The dispatcher adds the key
	// "webhook" (the endpoint name) and never logs URLs, header values or secrets.
	Logger *slog.Logger
	// Version is sent as User-Agent: mailhook/<Version> ("dev" when empty).
	Version string
	// Now is the clock for claiming, timestamps, Retry-After dates and retry schedules; nil
	// means time.Now.
	Now func() time.Time
	// Rand returns a uniform number in [0, 1) for backoff jitter and must be safe for concurrent
	// use; nil means math/rand/v2.Float64.
	Rand func() float64
	// Quick is the in-process retry of one claimed job, before it goes back to the outbox.
	Quick QuickRetry
	// Observe, when set, is called once per settled attempt (delivered, retry, dead letter,
	// interrupted), from the worker goroutines, just before the outcome is recorded; it must be
	// quick and safe for concurrent use. Metrics hang here.
	Observe func(Event)
	// States remembers which endpoints are disabled and since when each has been failing
	// (health.go); nil keeps that in memory only, for the life of the Dispatcher.
	States EndpointStates
	// Spool holds the files of jobs whose bodies ship attachments inline (stream.go); nil when no
	// webhook does. A body referring to spooled files without a Spool is dead-lettered.
	Spool *spool.Spool
}

// QuickRetry bounds the retries made in process, within one claim of a job, for errors that are
// often momentary (a reset connection, a 503 from a restarting receiver). Timeouts and responses
// whose Retry-After exceeds WaitMax are not retried in process: they go straight to the durable
// schedule of the endpoint's RetryPolicy. A quick retry holds one of the endpoint's concurrency
// slots while it waits, so an endpoint whose RetryPolicy.MinBackoff is shorter than WaitMin gets
// no quick retries: the durable schedule tries as soon, and frees the slot meanwhile (with
// min_backoff 10ms, quick retries would hold a slot for 500ms per failed request).
type QuickRetry struct {
	Max     int           // retries after the first try; 0 means 2, negative means none
	WaitMin time.Duration // first wait, doubled per retry, with full jitter (default 500ms)
	WaitMax time.Duration // longest wait (default 4s)
}

// Dispatcher delivers webhook jobs to their endpoints. Create it with New and start it with Run.
type Dispatcher struct {
	out       Outbox
	endpoints map[string]*endpoint
	order     []*endpoint // configuration order, for starting workers
	log       *slog.Logger
	userAgent string
	now       func() time.Time
	rand      func() float64
	quick     QuickRetry
	observer  func(Event)
	states    EndpointStates
	spool     *spool.Spool
	beats     beats // worker loop heartbeats, for Heartbeat
}

// New checks the endpoints, fills in defaults and returns a Dispatcher for them. Errors name the
// endpoint and the field, never the URL or a secret.
func New(o Outbox, endpoints []Endpoint, opts Options) (*Dispatcher, error) {
	if o == nil {
		return nil, errors.New("dispatch: nil outbox")
	}
	d := &Dispatcher{
		out:       o,
		endpoints: make(map[string]*endpoint, len(endpoints)),
		log:       opts.Logger,
		userAgent: "mailhook/" + opts.Version,
		now:       opts.Now,
		rand:      opts.Rand,
		quick:     opts.Quick,
		observer:  opts.Observe,
		states:    opts.States,
		spool:     opts.Spool,
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if opts.Version == "" {
		d.userAgent = "mailhook/dev"
	}
	if d.now == nil {
		d.now = time.Now
	}
	if d.rand == nil {
		d.rand = rand.Float64
	}
	switch {
	case d.quick.Max == 0:
		d.quick.Max = 2
	case d.quick.Max < 0:
		d.quick.Max = 0
	}
	if d.quick.WaitMin <= 0 {
		d.quick.WaitMin = 500 * time.Millisecond
	}
	if d.quick.WaitMax <= 0 {
		d.quick.WaitMax = 4 * time.Second
	}
	d.quick.WaitMax = max(d.quick.WaitMax, d.quick.WaitMin)

	for _, e := range endpoints {
		e, err := e.withDefaults()
		if err != nil {
			return nil, err
		}
		if _, dup := d.endpoints[e.Name]; dup {
			return nil, fmt.Errorf("webhook %q: configured twice", e.Name)
		}
		ep := newEndpoint(e, d.log.With("webhook", e.Name))
		d.endpoints[e.Name] = ep
		d.order = append(d.order, ep)
	}
	return d, nil
}

// Run delivers jobs until ctx is done, then returns nil once every worker has stopped; a delivery
// cut short by the shutdown goes back to the outbox as pending. Each endpoint has its own worker
// loop, so a slow or failing endpoint never holds up another: it claims as many due jobs in one
// transaction as the endpoint has free slots (Endpoint.Concurrency in all) and delivers each in its
// own goroutine. One more worker claims jobs of any target: it dead-letters jobs whose endpoint is
// no longer configured (last error "webhook_removed") and delivers the others within their
// endpoint's concurrency limit. Workers sleep on Outbox.Wake and on a timer set to the next due job
// (at most 30 s, to notice changes made by other processes); they do not poll.
// Run must not be called again before it has returned.
func (d *Dispatcher) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, ep := range d.order {
		wg.Go(func() { d.worker(ep).run(ctx) })
	}
	wg.Go(func() { d.worker(nil).run(ctx) })
	wg.Wait()
	for _, ep := range d.order {
		ep.client.CloseIdleConnections()
	}
	d.log.Debug("dispatcher stopped")
	return nil
}

// Worker pacing.
const (
	minStoreRetry = time.Second // first wait after a failed Claim or NextDue
	maxStoreRetry = time.Minute // longest such wait
	minPastDue    = 50 * time.Millisecond
	maxPastDue    = 5 * time.Second // re-check of a due job Claim did not return (waiting on dependencies)
	finishTimeout = 10 * time.Second
	// recheck bounds every idle wait: an operator tool (`mailhook outbox retry`) may change the
	// outbox from another process, whose writes do not reach this process's Wake.
	recheck = 30 * time.Second
)

// worker returns the loop of endpoint ep's worker, or of the any-target worker when ep is nil.
// An endpoint's worker holds a slot of the endpoint's semaphore for each job from before Claim
// until the job is finished, so the endpoint's concurrency is never exceeded; it claims as many
// jobs at once as slots are free, so a backlog costs one claim transaction per several deliveries.
// The any-target worker claims one job at a time and takes the slot after claiming, once it knows
// the job's endpoint.
func (d *Dispatcher) worker(ep *endpoint) *pump {
	p := &pump{
		log:   d.log,
		now:   d.now,
		wake:  d.out.Wake,
		beats: &d.beats,
		claim: func(ctx context.Context, now time.Time, max int) ([]store.Job, error) {
			return d.out.Claim(ctx, store.KindWebhook, "", now, max)
		},
		nextDue: func(ctx context.Context) (time.Time, bool, error) {
			return d.out.NextDue(ctx, store.KindWebhook, "")
		},
		handle: d.route,
	}
	if ep != nil {
		p.log = ep.log
		p.claim = func(ctx context.Context, now time.Time, max int) ([]store.Job, error) {
			return d.out.Claim(ctx, store.KindWebhook, ep.Name, now, max)
		}
		p.nextDue = func(ctx context.Context) (time.Time, bool, error) {
			return d.out.NextDue(ctx, store.KindWebhook, ep.Name)
		}
		p.acquire, p.release, p.parallel = ep.acquireFree, ep.releaseN, true
		p.handle = func(ctx context.Context, j store.Job) { d.deliver(ctx, ep, j) }
	}
	return p
}

// sleep waits until ctx is done, wake is ready or delay has passed (forever when delay < 0).
func sleep(ctx context.Context, wake <-chan struct{}, delay time.Duration) {
	var timer <-chan time.Time
	if delay >= 0 {
		t := time.NewTimer(delay)
		defer t.Stop()
		timer = t.C
	}
	select {
	case <-ctx.Done():
	case <-wake:
	case <-timer:
	}
}

// route handles a job claimed by the any-target worker.
func (d *Dispatcher) route(ctx context.Context, j store.Job) {
	ep, ok := d.endpoints[j.Target]
	if !ok {
		log := d.log.With("webhook", j.Target, "job", j.ID, "rule", j.Rule)
		log.Warn("webhook no longer configured; job dead-lettered", "err", "webhook_removed")
		d.finish(ctx, log, j, store.StateDead, time.Time{},
			store.Attempt{JobID: j.ID, At: d.now(), Status: "removed", Error: "webhook_removed"})
		return
	}
	if !ep.acquire(ctx) {
		d.finish(ctx, ep.log.With("job", j.ID), j, store.StatePending, d.now(),
			store.Attempt{JobID: j.ID, At: d.now(), Status: "canceled", Error: "shut down before sending"})
		return
	}
	defer ep.release()
	d.deliver(ctx, ep, j)
}

// finish records the outcome of a webhook job (see persist).
func (d *Dispatcher) finish(ctx context.Context, log *slog.Logger, j store.Job, state string, nextAt time.Time, a store.Attempt) {
	d.observe(j, state, a)
	persist(ctx, log, "delivery", state, func(ctx context.Context) error {
		return d.out.Finish(ctx, j.ID, state, nextAt, a)
	})
}

// persist runs finish, which records a job's outcome. It goes on while ctx is being cancelled, so
// an outcome reached during shutdown is not lost (a sent webhook is not sent again, a sent reply
// not marked unknown); it retries a failing store for up to finishTimeout, after which the job
// stays in_flight until the next start. A job changed meanwhile (dropped, requeued) is left as the
// operator made it.
func persist(ctx context.Context, log *slog.Logger, what, state string, finish func(context.Context) error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finishTimeout)
	defer cancel()
	wait := 100 * time.Millisecond
	for {
		err := finish(ctx)
		if err == nil {
			return
		}
		if errors.Is(err, store.ErrState) || errors.Is(err, store.ErrNotFound) {
			log.Warn("job changed while in flight; "+what+" outcome not recorded", "state", state, "err", err)
			return
		}
		if ctx.Err() != nil {
			log.Error("cannot record "+what+" outcome; job stays in flight until restart", "state", state, "err", err)
			return
		}
		log.Warn("cannot record "+what+" outcome; retrying", "state", state, "err", err)
		sleep(ctx, nil, wait)
		wait *= 2
	}
}

// acquire takes a slot of the endpoint's concurrency limit; false when ctx is done first.
func (ep *endpoint) acquire(ctx context.Context) bool {
	select {
	case ep.sem <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

func (ep *endpoint) release() { <-ep.sem }
