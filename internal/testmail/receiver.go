package testmail

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"

	"github.com/mailhook/mailhook/internal/demo"
)

// ReceiverOptions configures a Receiver. The zero value answers 200 to everything and verifies
// nothing.
type ReceiverOptions struct {
	// Secret is the Standard Webhooks signing secret ("whsec_" + base64). When set, each recorded
	// request says whether its webhook-signature verifies. It is never logged.
	Secret string
	// IgnoreTimestamp verifies signatures without the Standard Webhooks 5-minute timestamp
	// tolerance, for senders driven by a fake clock.
	IgnoreTimestamp bool
	// Status scripts the answers: the n-th request (1-based) gets Status[n-1]; requests beyond the
	// script get 200. Ignored when Respond or Handler is set.
	Status []int
	// Respond, when set, chooses the status of the n-th request (1-based). r.Body is already read;
	// the raw body is in the recorded Request.
	Respond func(n int, r *http.Request) int
	// RetryAfter, when set, is sent as the Retry-After header (RFC 9110 §10.2.3) with every 429
	// and 503 answer, e.g. "2" or an HTTP date.
	RetryAfter string
	// Handler, when set, answers instead of Status/Respond/RetryAfter: it may delay, hang until
	// r.Context() ends, or write any header and body. r.Body still yields the full raw body.
	Handler func(n int, w http.ResponseWriter, r *http.Request)
	// OnRequest is called with each request after it has been answered and before it is
	// recorded, on the request's goroutine: what it does happens before WaitFor counts the
	// request.
	OnRequest func(Request)
}

// Request is one request a Receiver answered (the demo receiver's record of it).
type Request = demo.Request

// Receiver is the demo's webhook receiver (demo.Receiver: loopback HTTP, Standard Webhooks
// verification) with what tests add: scripted answers, and a record of every request to read
// and wait for.
type Receiver struct {
	*demo.Receiver
	opts ReceiverOptions

	mu      sync.Mutex
	reqs    []Request
	changed chan struct{} // closed and replaced whenever reqs grows
}

// NewReceiver starts a Receiver on 127.0.0.1. Call Close when done. A Secret that is not valid
// base64 makes every request unverified, with a VerifyErr saying so.
func NewReceiver(opts ReceiverOptions) (*Receiver, error) {
	r := &Receiver{opts: opts, changed: make(chan struct{})}
	handler := opts.Handler
	if handler == nil {
		handler = r.answer
	}
	recv, err := demo.NewReceiver(demo.ReceiverOptions{
		Secret:          opts.Secret,
		IgnoreTimestamp: opts.IgnoreTimestamp,
		Handler:         handler,
		OnRequest:       r.record,
	})
	if err != nil {
		return nil, err
	}
	r.Receiver = recv
	return r, nil
}

// StartReceiver starts a Receiver and closes it when the test ends.
func StartReceiver(t testing.TB, opts ReceiverOptions) *Receiver {
	t.Helper()
	r, err := NewReceiver(opts)
	if err != nil {
		t.Fatalf("start webhook receiver: %v", err)
	}
	t.Cleanup(r.Close)
	return r
}

// Requests returns a copy of the requests answered so far, in the order they were answered.
func (r *Receiver) Requests() []Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Request, len(r.reqs))
	copy(out, r.reqs)
	return out
}

// Len returns how many requests have been answered.
func (r *Receiver) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.reqs)
}

// WaitFor blocks until at least n requests have been answered and recorded (their OnRequest
// calls returned), or ctx ends.
func (r *Receiver) WaitFor(ctx context.Context, n int) error {
	for {
		r.mu.Lock()
		got, changed := len(r.reqs), r.changed
		r.mu.Unlock()
		if got >= n {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("wait for %d webhook requests (have %d): %w", n, got, ctx.Err())
		}
	}
}

// UniqueIDs returns the set of distinct webhook-id values received.
func (r *Receiver) UniqueIDs() map[string]struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	ids := make(map[string]struct{}, len(r.reqs))
	for _, req := range r.reqs {
		ids[req.ID()] = struct{}{}
	}
	return ids
}

// record runs OnRequest, then adds req to the record: what OnRequest does happens before
// WaitFor counts the request.
func (r *Receiver) record(req Request) {
	if r.opts.OnRequest != nil {
		r.opts.OnRequest(req)
	}
	r.mu.Lock()
	r.reqs = append(r.reqs, req)
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
}

// answer gives the n-th request its scripted status.
func (r *Receiver) answer(n int, w http.ResponseWriter, hr *http.Request) {
	status := http.StatusOK
	switch {
	case r.opts.Respond != nil:
		status = r.opts.Respond(n, hr)
	case n <= len(r.opts.Status):
		status = r.opts.Status[n-1]
	}
	if r.opts.RetryAfter != "" && (status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable) {
		w.Header().Set("Retry-After", r.opts.RetryAfter)
	}
	demo.WriteStatus(w, status)
}
