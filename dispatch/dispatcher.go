package dispatch

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/mailhook/mailhook/outbox"
	"github.com/mailhook/mailhook/spool"
	"github.com/mailhook/mailhook/store"
)

// Options tune a Dispatcher. The zero value is usable.
type Options struct {
	// Logger receives one line per delivery outcome; nil discards. The dispatcher adds the key
	// "webhook" (the endpoint name) and never logs URLs, header values or secrets.
	Logger *slog.Logger
	// Version is sent as User-Agent: mailhook/<Version> ("dev" when empty).
	Version string
	// Now is the clock for attempt timestamps, signatures, Retry-After dates and retry
	// schedules; nil means time.Now. The outbox.Consumer running the lanes takes the same one.
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
	// Gates, when set, gives each endpoint's concurrency limit as a gate shared with other
	// processes (for name and the endpoint's Concurrency), used instead of the in-process one:
	// replicas sharing a store hold the limit cluster-wide, since it protects the receiver.
	Gates func(name string, concurrency int) outbox.Gate
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

// Dispatcher delivers webhook jobs to their endpoints, as an outbox.Worker. Create it with New and
// run its Lanes in an outbox.Consumer.
type Dispatcher struct {
	endpoints map[string]*endpoint
	order     []*endpoint // configuration order, for the lanes
	log       *slog.Logger
	userAgent string
	now       func() time.Time
	rand      func() float64
	quick     QuickRetry
	observer  func(Event)
	states    EndpointStates
	spool     *spool.Spool
}

var _ outbox.Worker = (*Dispatcher)(nil)

// New checks the endpoints, fills in defaults and returns a Dispatcher for them. It does no I/O.
// Errors name the endpoint and the field, never the URL or a secret.
func New(endpoints []Endpoint, opts Options) (*Dispatcher, error) {
	d := &Dispatcher{
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
		if opts.Gates != nil {
			ep.shared = opts.Gates(e.Name, e.Concurrency)
		}
		d.endpoints[e.Name] = ep
		d.order = append(d.order, ep)
	}
	return d, nil
}

// Lanes returns the dispatcher's claim lanes for an outbox.Consumer. Each endpoint has its own
// lane, so a slow or failing endpoint never holds up another. It delivers each job in its own
// goroutine, holding one of the endpoint's slots (Endpoint.Concurrency in all) from before the
// claim until the response is in: concurrency bounds the requests in flight, and the outcome is
// recorded after, in a group commit with the others of its moment, so no slot waits for an fsync.
// It claims aheadPerSlot jobs per slot beyond its free slots in one transaction and starts them
// as slots free up, so a backlog costs one claim transaction per many deliveries, not one per
// freed slot. One more lane claims webhook jobs of any endpoint, one at a time, and works them
// with Work (it claims none ahead: jobs it held would go out one at a time, not in parallel).
func (d *Dispatcher) Lanes() []outbox.Lane {
	var lanes []outbox.Lane
	for _, ep := range d.order {
		lanes = append(lanes, outbox.Lane{
			Select:   store.Selector{Kind: store.KindWebhook, Target: ep.Name},
			Gate:     ep.gate(),
			Parallel: true,
			Ahead:    aheadPerSlot * cap(ep.sem),
			// Concurrency bounds requests in flight: a slot is free once the response is in.
			FreeBeforeRecord: true,
			Worker:           outbox.WorkerFunc(func(ctx context.Context, j store.Job) outbox.Result { return d.deliver(ctx, ep, j) }),
			Log:              ep.log,
		})
	}
	return append(lanes, outbox.Lane{Select: store.Selector{Kind: store.KindWebhook}, Worker: d, Log: d.log})
}

// aheadPerSlot is how many jobs per unit of its concurrency an endpoint's lane claims ahead of its
// free slots (outbox.Lane.Ahead). Claimed jobs hold their bodies in memory until sent.
const aheadPerSlot = 4

// Work delivers a webhook job of any endpoint, within its endpoint's concurrency limit. A job whose
// endpoint is no longer configured is dead-lettered (last error "webhook_removed").
func (d *Dispatcher) Work(ctx context.Context, j store.Job) outbox.Result {
	ep, ok := d.endpoints[j.Target]
	if !ok {
		log := d.log.With("webhook", j.Target, "job", j.ID, "rule", j.Rule)
		log.Warn("webhook no longer configured; job dead-lettered", "err", "webhook_removed")
		return d.result(log, j, store.StateDead, time.Time{},
			store.Attempt{JobID: j.ID, At: d.now(), Status: "removed", Error: "webhook_removed"})
	}
	if !ep.take(ctx) {
		return d.result(ep.log.With("job", j.ID), j, store.StatePending, d.now(),
			store.Attempt{JobID: j.ID, At: d.now(), Status: "canceled", Error: "shut down before sending"})
	}
	defer ep.give()
	return d.deliver(ctx, ep, j)
}

// CloseIdleConnections closes the endpoints' idle HTTP connections, once the lanes have stopped.
func (d *Dispatcher) CloseIdleConnections() {
	for _, ep := range d.order {
		ep.client.CloseIdleConnections()
	}
}

// result reports the outcome of a webhook job to Options.Observe and returns it for the consumer
// to record.
func (d *Dispatcher) result(log *slog.Logger, j store.Job, state string, nextAt time.Time, a store.Attempt) outbox.Result {
	d.observe(j, state, a)
	return outbox.Result{State: state, NextAt: nextAt, Attempt: a, Log: log}
}

// gate is the endpoint's concurrency limit as its lane's gate: the shared one (Options.Gates), or
// the endpoint itself.
func (ep *endpoint) gate() outbox.Gate {
	if ep.shared != nil {
		return ep.shared
	}
	return ep
}

// take takes one slot of the endpoint's concurrency limit (shared or in process) for the lane
// claiming jobs of any endpoint; false when ctx is done first.
func (ep *endpoint) take(ctx context.Context) bool {
	if ep.shared == nil {
		return ep.acquire(ctx)
	}
	n := ep.shared.Acquire(ctx)
	if n > 1 {
		ep.shared.Release(n - 1)
	}
	return n > 0
}

// give gives back the slot of take.
func (ep *endpoint) give() {
	if ep.shared != nil {
		ep.shared.Release(1)
		return
	}
	ep.release()
}

// acquire takes a slot of the endpoint's in-process concurrency limit; false when ctx is done first.
func (ep *endpoint) acquire(ctx context.Context) bool {
	select {
	case ep.sem <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

func (ep *endpoint) release() { <-ep.sem }

var _ outbox.Gate = (*endpoint)(nil)

// Acquire takes one slot of the endpoint's concurrency limit, waiting for it, then as many more as
// are free at once: how many jobs one claim of the endpoint's lane may start. It returns 0 when
// ctx is done before the first slot.
func (ep *endpoint) Acquire(ctx context.Context) int {
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

// Release gives back n slots.
func (ep *endpoint) Release(n int) {
	for range n {
		ep.release()
	}
}
