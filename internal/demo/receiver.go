package demo

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// ReceiverOptions configures a Receiver. The zero value answers 200 to everything and verifies
// nothing.
type ReceiverOptions struct {
	// Secret is the Standard Webhooks signing secret ("whsec_" + base64). When set, each Request
	// says whether its webhook-signature verifies. It is never logged.
	Secret string
	// IgnoreTimestamp verifies signatures without the Standard Webhooks 5-minute timestamp
	// tolerance, for senders driven by a fake clock.
	IgnoreTimestamp bool
	// Handler, when set, answers the n-th request (1-based) instead of the plain 200: it may
	// delay, hang until r.Context() ends, or write any header and body. r.Body yields the full
	// raw body, which the Request holds as well.
	Handler func(n int, w http.ResponseWriter, r *http.Request)
	// OnRequest is called with each request after it has been answered, on the request's
	// goroutine. The demo prints deliveries with it.
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
		return errInvalidSecret
	}
	return wh.Verify(r.Body, r.Header)
}

// errInvalidSecret says a signing secret is not valid base64, without repeating the secret.
var errInvalidSecret = errors.New("load webhook secret: invalid encoding")

// Receiver is a loopback HTTP server that receives webhook deliveries and verifies their
// Standard Webhooks signatures. Any path is accepted.
type Receiver struct {
	opts   ReceiverOptions
	wh     *standardwebhooks.Webhook // nil without a secret
	url    string
	srv    *http.Server
	served chan struct{}  // closed when srv.Serve has returned
	conns  sync.WaitGroup // connections not yet closed (counted through ConnState)

	mu sync.Mutex
	n  int // requests begun, numbers them

	closeOnce sync.Once
}

// NewReceiver starts a Receiver on a new 127.0.0.1 port. Call Close when done. A Secret that is
// not valid base64 makes every request unverified, with a VerifyErr saying so.
func NewReceiver(opts ReceiverOptions) (*Receiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for webhooks: %w", err)
	}
	r := &Receiver{opts: opts, url: "http://" + ln.Addr().String(), served: make(chan struct{})}
	if opts.Secret != "" {
		r.wh, _ = standardwebhooks.NewWebhook(opts.Secret)
	}
	r.srv = &http.Server{
		Handler:           http.HandlerFunc(r.serveHTTP),
		ReadHeaderTimeout: time.Minute,
		ConnState:         r.track,
	}
	go func() {
		defer close(r.served)
		_ = r.srv.Serve(ln)
	}()
	return r, nil
}

// URL returns the receiver's base URL, "http://127.0.0.1:port"; any path is accepted.
func (r *Receiver) URL() string { return r.url }

// Close shuts the server down: it closes the listener and every client connection (which ends
// the requests' contexts), then waits for the handlers to return; a Handler that hangs must
// watch r.Context(). It is safe to call more than once.
func (r *Receiver) Close() {
	r.closeOnce.Do(func() {
		_ = r.srv.Close()
		<-r.served // no connection is accepted, hence counted, after this
		r.conns.Wait()
	})
}

// track counts connections: net/http reports StateNew from its accept loop, before Serve can
// return, and StateClosed once the connection's last handler has returned.
func (r *Receiver) track(_ net.Conn, state http.ConnState) {
	switch state {
	case http.StateNew:
		r.conns.Add(1)
	case http.StateHijacked, http.StateClosed:
		r.conns.Done()
	}
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
		req.VerifyErr = errInvalidSecret
	case r.opts.IgnoreTimestamp:
		req.VerifyErr = r.wh.VerifyIgnoringTimestamp(body, hr.Header)
	default:
		req.VerifyErr = r.wh.Verify(body, hr.Header)
	}
	req.Verified = r.opts.Secret != "" && req.VerifyErr == nil

	sw := &statusWriter{ResponseWriter: w}
	if r.opts.Handler != nil {
		r.opts.Handler(n, sw, hr)
	} else {
		WriteStatus(sw, http.StatusOK)
	}
	req.Status = sw.status
	if req.Status == 0 {
		req.Status = http.StatusOK
	}

	if r.opts.OnRequest != nil {
		r.opts.OnRequest(req)
	}
}

// WriteStatus answers with status and a one-line plain-text body naming it ("200 OK").
func WriteStatus(w http.ResponseWriter, status int) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	_, _ = fmt.Fprintf(w, "%d %s\n", status, http.StatusText(status))
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

// Summarize writes one line about the delivery: its id, the payload's rule, sender, subject,
// attachment count and extracted fields, and whether its signature verified.
func (r Request) Summarize(w io.Writer) {
	var p struct {
		Rule    string `json:"rule"`
		Subject string `json:"subject"`
		From    struct {
			Address string `json:"address"`
		} `json:"from"`
		Attachments []struct {
			Filename string `json:"filename"`
		} `json:"attachments"`
		Fields json.RawMessage `json:"fields"`
	}
	_ = json.Unmarshal(r.Body, &p)
	sig := "signature verified"
	if !r.Verified {
		sig = fmt.Sprintf("signature NOT verified: %v", r.VerifyErr)
	}
	fields := ""
	if p.Fields != nil {
		fields = "  fields=" + string(p.Fields)
	}
	fmt.Fprintf(w, "webhook %s  rule=%s  from=%s  subject=%q  attachments=%d%s  %s\n",
		r.ID(), p.Rule, p.From.Address, p.Subject, len(p.Attachments), fields, sig)
}
