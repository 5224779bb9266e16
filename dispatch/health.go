package dispatch

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/mailhook/mailhook/store"
)

// DefaultDisableAfter is how long an endpoint may fail continuously, without a single success,
// before it is disabled and reported.
const DefaultDisableAfter = 5 * 24 * time.Hour

// EndpointStates is the part of the store that remembers the health of endpoints across restarts
// and processes: which are disabled, and since when each has been failing (the part of
// store.Endpoints it uses). Another process (`mailhook webhooks enable`) may re-enable an endpoint at any
// time; the dispatcher reads the state again before it holds a job of an endpoint it believes
// disabled.
type EndpointStates interface {
	// Endpoint returns the state of one endpoint; an unknown one is enabled and not failing.
	Endpoint(ctx context.Context, name string) (store.EndpointState, error)
	// SetEndpointFailing records since when the endpoint has been failing; zero means it is not.
	SetEndpointFailing(ctx context.Context, name string, since time.Time) error
	// DisableEndpoint marks the endpoint disabled and holds its pending jobs, returning how many.
	DisableEndpoint(ctx context.Context, name, reason string, at time.Time) (int, error)
}

var _ EndpointStates = store.Endpoints(nil)

// endpointHealth is the dispatcher's view of one endpoint's health, loaded from EndpointStates on
// the first delivery and written through on every change. Its mutex is held across those writes,
// so concurrent workers of the endpoint record transitions in order.
type endpointHealth struct {
	mu           sync.Mutex
	loaded       bool
	disabled     bool
	reason       string
	failingSince time.Time
}

// stateTimeout bounds one EndpointStates call.
const stateTimeout = 10 * time.Second

// loadLocked reads the endpoint's state once; a failed read is retried on the next delivery and
// meanwhile the endpoint counts as enabled and healthy. h.mu must be held.
func (d *Dispatcher) loadLocked(ctx context.Context, ep *endpoint) {
	h := &ep.health
	if h.loaded || d.states == nil {
		h.loaded = true
		return
	}
	ctx, cancel := context.WithTimeout(ctx, stateTimeout)
	defer cancel()
	st, err := d.states.Endpoint(ctx, ep.Name)
	if err != nil {
		ep.log.Warn("cannot read the endpoint's state; assuming it is enabled", "err", err)
		return
	}
	h.loaded, h.disabled, h.reason, h.failingSince = true, st.Disabled(), st.Reason, st.FailingSince
}

// isDisabled reports whether ep is disabled, and why. When this process believes so it asks the
// store again, since `mailhook webhooks enable` may have re-enabled the endpoint meanwhile.
func (d *Dispatcher) isDisabled(ctx context.Context, ep *endpoint) (string, bool) {
	h := &ep.health
	h.mu.Lock()
	defer h.mu.Unlock()
	d.loadLocked(ctx, ep)
	if !h.disabled {
		return "", false
	}
	if d.states != nil {
		sctx, cancel := context.WithTimeout(ctx, stateTimeout)
		st, err := d.states.Endpoint(sctx, ep.Name)
		cancel()
		if err == nil && !st.Disabled() {
			h.disabled, h.reason, h.failingSince = false, "", st.FailingSince
			ep.log.Info("webhook endpoint enabled again; delivering its jobs")
			return "", false
		}
	}
	return h.reason, true
}

// succeeded records a delivery to ep that succeeded: the endpoint is no longer failing.
func (d *Dispatcher) succeeded(ctx context.Context, ep *endpoint) {
	h := &ep.health
	h.mu.Lock()
	defer h.mu.Unlock()
	d.loadLocked(ctx, ep)
	if h.failingSince.IsZero() {
		return
	}
	ep.log.Info("webhook endpoint recovered", "failing_for", d.now().Sub(h.failingSince).Round(time.Second))
	h.failingSince = time.Time{}
	d.writeFailing(ctx, ep, time.Time{})
}

// failed records a failed delivery to ep at now with HTTP status (0 without a response) and
// reports whether the endpoint is disabled as a result: at once for 410 Gone (the receiver says it
// is gone for good), or when it has been failing without a success for Endpoint.DisableAfter.
// Disabling holds the endpoint's pending jobs in the store and is logged at error level. started
// reports whether this failure began the endpoint's failure streak, so callers log a storm of
// retries once.
func (d *Dispatcher) failed(ctx context.Context, ep *endpoint, log *slog.Logger, status int) (disabled, started bool) {
	h := &ep.health
	h.mu.Lock()
	defer h.mu.Unlock()
	d.loadLocked(ctx, ep)
	now := d.now()
	if h.failingSince.IsZero() {
		h.failingSince, started = now, true
		d.writeFailing(ctx, ep, now)
	}
	if h.disabled {
		return true, started
	}
	var reason string
	switch {
	case status == http.StatusGone:
		reason = "http 410 Gone"
	case now.Sub(h.failingSince) >= ep.DisableAfter:
		reason = fmt.Sprintf("failing without a success since %s (disable_after %v)",
			h.failingSince.UTC().Format(time.RFC3339), ep.DisableAfter)
	default:
		return false, started
	}
	h.disabled, h.reason = true, reason
	held := 0
	if d.states != nil {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stateTimeout)
		n, err := d.states.DisableEndpoint(sctx, ep.Name, reason, now)
		cancel()
		if err != nil {
			log.Error("cannot record the endpoint as disabled; it stays disabled until restart", "err", err)
		}
		held = n
	}
	log.Error("webhook endpoint disabled; its jobs are held until it is enabled again",
		"reason", reason, "held", held, "enable_with", "mailhook webhooks enable "+ep.Name)
	return true, started
}

// writeFailing stores the endpoint's failing-since time; errors are logged, the in-memory state
// stays authoritative for this process.
func (d *Dispatcher) writeFailing(ctx context.Context, ep *endpoint, since time.Time) {
	if d.states == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stateTimeout)
	defer cancel()
	if err := d.states.SetEndpointFailing(ctx, ep.Name, since); err != nil {
		ep.log.Warn("cannot record the endpoint's failure streak", "err", err)
	}
}
