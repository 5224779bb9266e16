package testmail

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
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
	// request. The demo prints deliveries with it.
	OnRequest func(Request)
}

// Request is one request a Receiver answered.
type Request struct {
	N        int         // 1-based arrival order
	Method   string      // e.g. POST
	Path     string      // URL path, e.g. /hook
	Header   http.Header // as received
	Body     []byte      // raw body, exactly the bytes sent
	Received time.Time   // when the handler began
	Status   int         // status the receiver answered
	// Verified reports whether webhook-signature verifies against ReceiverOptions.Secret, per the
	// Standard Webhooks library. VerifyErr holds the reason when it does not (or nil).
	Verified  bool
	VerifyErr error
}

// ID returns the request's webhook-id header.
func (r Request) ID() string { return r.Header.Get(standardwebhooks.HeaderWebhookID) }

// Verify checks the request's signature against secret with the Standard Webhooks library
// (timestamp tolerance included), e.g. to check each secret of a rotation separately.
func (r Request) Verify(secret string) error {
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		return fmt.Errorf("load webhook secret: invalid encoding")
	}
	return wh.Verify(r.Body, r.Header)
}

// Receiver is a loopback HTTP server (httptest.Server) that records webhook deliveries.
type Receiver struct {
	opts ReceiverOptions
	wh   *standardwebhooks.Webhook // nil without a secret
	srv  *httptest.Server

	mu      sync.Mutex
	n       int // requests begun, numbers them
	reqs    []Request
	changed chan struct{} // closed and replaced whenever reqs grows
}

// NewReceiver starts a Receiver on 127.0.0.1. Call Close when done. A Secret that is not valid
// base64 makes every request unverified, with a VerifyErr saying so.
func NewReceiver(opts ReceiverOptions) *Receiver {
	r := &Receiver{opts: opts, changed: make(chan struct{})}
	if opts.Secret != "" {
		r.wh, _ = standardwebhooks.NewWebhook(opts.Secret)
	}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serveHTTP))
	return r
}

// StartReceiver starts a Receiver and closes it when the test ends.
func StartReceiver(t testing.TB, opts ReceiverOptions) *Receiver {
	t.Helper()
	r := NewReceiver(opts)
	t.Cleanup(r.Close)
	return r
}

// URL returns the receiver's base URL, "http://127.0.0.1:port"; any path is accepted.
func (r *Receiver) URL() string { return r.srv.URL }

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

// Close shuts the server down, waiting for handlers to return; a Handler that hangs must watch
// r.Context(). Close closes client connections first, which ends those contexts.
func (r *Receiver) Close() {
	r.srv.CloseClientConnections()
	r.srv.Close()
}

func (r *Receiver) serveHTTP(w http.ResponseWriter, hr *http.Request) {
	received := time.Now()
	body, readErr := io.ReadAll(hr.Body)
	hr.Body = io.NopCloser(bytes.NewReader(body))

	r.mu.Lock()
	r.n++
	n := r.n
	r.mu.Unlock()

	req := Request{
		N:        n,
		Method:   hr.Method,
		Path:     hr.URL.Path,
		Header:   hr.Header.Clone(),
		Body:     body,
		Received: received,
	}
	switch {
	case readErr != nil:
		req.VerifyErr = fmt.Errorf("read body: %w", readErr)
	case r.opts.Secret == "":
	case r.wh == nil:
		req.VerifyErr = fmt.Errorf("load webhook secret: invalid encoding")
	case r.opts.IgnoreTimestamp:
		req.VerifyErr = r.wh.VerifyIgnoringTimestamp(body, hr.Header)
	default:
		req.VerifyErr = r.wh.Verify(body, hr.Header)
	}
	req.Verified = r.opts.Secret != "" && req.VerifyErr == nil

	sw := &statusWriter{ResponseWriter: w}
	r.answer(n, sw, hr)
	req.Status = sw.status
	if req.Status == 0 {
		req.Status = http.StatusOK
	}

	if r.opts.OnRequest != nil {
		r.opts.OnRequest(req)
	}

	r.mu.Lock()
	r.reqs = append(r.reqs, req)
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
}

func (r *Receiver) answer(n int, w http.ResponseWriter, hr *http.Request) {
	if r.opts.Handler != nil {
		r.opts.Handler(n, w, hr)
		return
	}
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
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, strconv.Itoa(status)+" "+http.StatusText(status)+"\n")
}

// statusWriter remembers the status a handler answered.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the underlying writer (Flush, deadlines).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
