package dispatch

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/mailhook/mailhook/outbox"
	"github.com/mailhook/mailhook/store"
)

// testSecret returns a whsec_ secret of n bytes derived from seed, and its key bytes.
func testSecret(t *testing.T, seed byte, n int) (string, []byte) {
	t.Helper()
	raw := make([]byte, n)
	for i := range raw {
		raw[i] = seed + byte(i)*7
	}
	s := "whsec_" + base64.StdEncoding.EncodeToString(raw)
	key, err := ParseSecret(s)
	if err != nil {
		t.Fatalf("ParseSecret: %v", err)
	}
	return s, key
}

// recorded is one request a test receiver got.
type recorded struct {
	n      int // 1-based arrival number
	header http.Header
	body   []byte
}

// receiver starts an HTTP server that records every request on the returned channel and answers
// with respond (200 when nil).
func receiver(t *testing.T, respond func(w http.ResponseWriter, r *http.Request, n int)) (*httptest.Server, <-chan recorded) {
	t.Helper()
	ch := make(chan recorded, 1000)
	var count atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("receiver: read body: %v", err)
		}
		n := int(count.Add(1))
		ch <- recorded{n: n, header: r.Header.Clone(), body: body}
		if respond != nil {
			respond(w, r, n)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, ch
}

// next returns the next recorded request, failing the test after 10s.
func next(t *testing.T, ch <-chan recorded) recorded {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for a request")
		return recorded{}
	}
}

// noMore fails if a request is waiting on ch. Call it only once the outcome it checks is final.
func noMore(t *testing.T, ch <-chan recorded) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("unexpected request %d for %s", r.n, r.header.Get(HeaderID))
	default:
	}
}

// start runs d until the test ends; the cleanup waits for Run to return.
func start(t *testing.T, d *running) context.CancelFunc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	stop := func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
			done <- nil // let a second stop return at once
		case <-time.After(20 * time.Second):
			t.Error("Run did not return after cancel")
		}
	}
	var once sync.Once
	t.Cleanup(func() { once.Do(stop) })
	return func() { once.Do(stop) }
}

func newJob(id, target string, created time.Time) store.Job {
	return store.Job{
		ID: id, Kind: store.KindWebhook, Target: target, Account: "personal", Mailbox: "INBOX",
		UIDValidity: 7, UID: 42, Rule: "ci-failures", NextAt: created, CreatedAt: created,
		Body: []byte(`{"version":1,"id":"` + id + `","subject":"Grüße <b>&</b>"}`),
	}
}

// running is a Dispatcher as the daemon runs it: its lanes in an outbox.Consumer of an outbox.
type running struct {
	*Dispatcher
	*outbox.Consumer
}

// mustNew builds a Dispatcher for eps and the consumer that runs its lanes over o, with the
// dispatcher's clock and logger, as the daemon wires them.
func mustNew(t *testing.T, o outbox.Store, eps []Endpoint, opts Options) *running {
	t.Helper()
	d, err := New(eps, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return &running{Dispatcher: d, Consumer: consumer(o, d, opts)}
}

// consumer returns the outbox consumer of d's lanes over o, wired as the daemon wires it.
func consumer(o outbox.Store, d *Dispatcher, opts Options) *outbox.Consumer {
	return outbox.New(o, d.Lanes(), outbox.Options{Name: "dispatcher", Logger: opts.Logger, Now: opts.Now,
		Stopped: d.CloseIdleConnections})
}

var noQuick = QuickRetry{Max: -1}

// fastRetry makes durable retries wait milliseconds of real time.
var fastRetry = outbox.RetryPolicy{MinBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond}

// An Unsigned endpoint (a chat destination without a secret) gets the body and the id, and no
// signature.
func TestDeliverUnsigned(t *testing.T) {
	srv, reqs := receiver(t, nil)
	out := newFakeOutbox()
	d := mustNew(t, out, []Endpoint{{Name: "slack", URL: srv.URL + "/hooks/mail", Unsigned: true}}, Options{})
	start(t, d)
	j := newJob("msg_UNSG", "slack", time.Now())
	out.add(j)
	r := next(t, reqs)
	out.waitState(t, j.ID, store.StateDone)
	if !bytes.Equal(r.body, j.Body) || r.header.Get(HeaderID) != j.ID {
		t.Errorf("body %q, webhook-id %q", r.body, r.header.Get(HeaderID))
	}
	if sig, ok := r.header[http.CanonicalHeaderKey(HeaderSignature)]; ok {
		t.Errorf("webhook-signature %q sent without a secret", sig)
	}
}

func TestDeliverSigned(t *testing.T) {
	s1, k1 := testSecret(t, 1, 32)
	s2, k2 := testSecret(t, 100, 24)
	srv, reqs := receiver(t, nil)
	out := newFakeOutbox()
	d := mustNew(t, out, []Endpoint{{
		Name: "ci", URL: srv.URL + "/hooks/mail", Secrets: [][]byte{k1, k2},
		Headers: []Header{{Name: "Authorization", Value: "Bearer tok"}, {Name: "X-Env", Value: "test"}},
	}}, Options{Version: "1.2.3"})
	start(t, d)

	j := newJob("msg_AAAA", "ci", time.Now())
	out.add(j)
	r := next(t, reqs)
	out.waitState(t, j.ID, store.StateDone)

	if !bytes.Equal(r.body, j.Body) {
		t.Errorf("body = %q, want the stored bytes %q", r.body, j.Body)
	}
	for name, want := range map[string]string{
		"Content-Type": "application/json", "webhook-id": j.ID, "Idempotency-Key": j.ID,
		"User-Agent": "mailhook/1.2.3", "Authorization": "Bearer tok", "X-Env": "test",
	} {
		if got := r.header.Get(name); got != want {
			t.Errorf("header %s = %q, want %q", name, got, want)
		}
	}
	// One v1 signature per secret, space separated, each verifying on its own.
	if sigs := strings.Split(r.header.Get(HeaderSignature), " "); len(sigs) != 2 ||
		!strings.HasPrefix(sigs[0], "v1,") || !strings.HasPrefix(sigs[1], "v1,") {
		t.Errorf("webhook-signature = %q, want two v1 signatures", r.header.Get(HeaderSignature))
	}
	for _, s := range []string{s1, s2} {
		wh, err := standardwebhooks.NewWebhook(s)
		if err != nil {
			t.Fatal(err)
		}
		if err := wh.Verify(r.body, r.header); err != nil {
			t.Errorf("official library rejects the request: %v", err)
		}
	}
	other, _ := testSecret(t, 50, 32)
	wh, _ := standardwebhooks.NewWebhook(other)
	if err := wh.Verify(r.body, r.header); err == nil {
		t.Error("a request verifies with a secret that was not configured")
	}
	tampered := append(bytes.Clone(r.body), ' ')
	if wh, _ := standardwebhooks.NewWebhook(s1); wh.Verify(tampered, r.header) == nil {
		t.Error("a modified body verifies")
	}
	h := out.history(j.ID)
	if len(h) != 1 || h[0].Status != "http 200" || h[0].Error != "" {
		t.Errorf("history = %+v, want one http 200", h)
	}
}

// The id stays, timestamp and signature change, on quick (in-process) and durable retries.
func TestRetryKeepsIDResigns(t *testing.T) {
	for _, tc := range []struct {
		name     string
		quick    QuickRetry
		finishes int // Finish calls until done
	}{
		{"quick", QuickRetry{Max: 2, WaitMin: time.Millisecond, WaitMax: 2 * time.Millisecond}, 1},
		{"durable", noQuick, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			secret, key := testSecret(t, 9, 32)
			srv, reqs := receiver(t, func(w http.ResponseWriter, _ *http.Request, n int) {
				if n <= 2 {
					w.WriteHeader(http.StatusServiceUnavailable)
				}
			})
			clk := &clock{t: time.Unix(1_800_000_000, 0), step: time.Second}
			out := newFakeOutbox()
			d := mustNew(t, out, []Endpoint{{Name: "ci", URL: srv.URL, Secrets: [][]byte{key}, Retry: fastRetry}},
				Options{Now: clk.Now, Quick: tc.quick})
			start(t, d)
			j := newJob("msg_RETRY", "ci", clk.Now())
			out.add(j)

			wh, _ := standardwebhooks.NewWebhook(secret)
			seenTS, seenSig := map[string]bool{}, map[string]bool{}
			for range 3 {
				r := next(t, reqs)
				if got := r.header.Get(HeaderID); got != j.ID {
					t.Errorf("try %d: webhook-id = %q, want %q", r.n, got, j.ID)
				}
				if err := wh.VerifyIgnoringTimestamp(r.body, r.header); err != nil {
					t.Errorf("try %d: signature does not verify: %v", r.n, err)
				}
				ts, sig := r.header.Get(HeaderTimestamp), r.header.Get(HeaderSignature)
				if seenTS[ts] || seenSig[sig] {
					t.Errorf("try %d reuses timestamp %s or its signature", r.n, ts)
				}
				seenTS[ts], seenSig[sig] = true, true
			}
			h := out.waitFinished(t, j.ID, tc.finishes)
			if last := h[len(h)-1]; last.State != store.StateDone || len(h) != tc.finishes {
				t.Errorf("history = %+v, want done after %d finishes", h, tc.finishes)
			}
			if tc.name == "durable" && (h[0].State != store.StatePending || h[0].Status != "http 503") {
				t.Errorf("first finish = %+v, want pending after http 503", h[0])
			}
			noMore(t, reqs)
		})
	}
}

func TestRetryableStatuses(t *testing.T) {
	for _, status := range []int{408, 425, 429, 500, 502, 503, 504} {
		t.Run(strconv.Itoa(status), func(t *testing.T) {
			_, key := testSecret(t, 1, 32)
			srv, reqs := receiver(t, func(w http.ResponseWriter, _ *http.Request, _ int) { w.WriteHeader(status) })
			clk := &clock{t: time.Unix(1_800_000_000, 0)}
			out := newFakeOutbox()
			start(t, mustNew(t, out, []Endpoint{{Name: "ci", URL: srv.URL, Secrets: [][]byte{key}}},
				Options{Now: clk.Now, Quick: noQuick}))
			j := newJob("msg_X", "ci", clk.Now())
			out.add(j)
			h := out.waitFinished(t, j.ID, 1)
			now := clk.Now()
			if h[0].State != store.StatePending || h[0].Status != "http "+strconv.Itoa(status) {
				t.Fatalf("finish = %+v, want pending", h[0])
			}
			// Default policy: the first retry comes 5s to 10s later.
			if d := h[0].NextAt.Sub(now); d < DefaultMinBackoff || d > 2*DefaultMinBackoff {
				t.Errorf("next attempt in %v, want within [5s, 10s]", d)
			}
			next(t, reqs)
			noMore(t, reqs)
		})
	}
}

// Retry-After (seconds or date) delays the next attempt at least that long, capped at
// MaxBackoff; a Retry-After longer than the quick-retry wait skips the quick retries.
func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		status     int
		retryAfter string
		want       time.Duration
	}{
		{429, "120", 120 * time.Second},
		{503, now.Add(300 * time.Second).Format(http.TimeFormat), 300 * time.Second},
		{429, "99999999999999999999", time.Hour}, // capped at MaxBackoff
		{503, "garbage", DefaultMinBackoff},
	} {
		t.Run(tc.retryAfter, func(t *testing.T) {
			_, key := testSecret(t, 1, 32)
			srv, reqs := receiver(t, func(w http.ResponseWriter, _ *http.Request, _ int) {
				w.Header().Set("Retry-After", tc.retryAfter)
				w.WriteHeader(tc.status)
			})
			clk := &clock{t: now}
			out := newFakeOutbox()
			// Quick retries stay on with short waits: a long Retry-After must bypass them.
			start(t, mustNew(t, out, []Endpoint{{Name: "ci", URL: srv.URL, Secrets: [][]byte{key}}},
				Options{Now: clk.Now, Quick: QuickRetry{Max: 2, WaitMin: time.Millisecond, WaitMax: 10 * time.Millisecond}}))
			j := newJob("msg_RA", "ci", now)
			out.add(j)
			h := out.waitFinished(t, j.ID, 1)
			got := h[0].NextAt.Sub(now)
			if h[0].State != store.StatePending || got < tc.want || got > max(tc.want, 2*DefaultMinBackoff) {
				t.Errorf("finish = %+v: next attempt in %v, want at least %v", h[0], got, tc.want)
			}
			next(t, reqs)
			if tc.status != 503 || tc.retryAfter != "garbage" {
				noMore(t, reqs) // no quick retry past a long Retry-After
			}
		})
	}
}

// 3xx and 4xx other than 408/425/429 are dead at once, redirects are not followed,
// and later jobs are delivered. (410 also disables the endpoint: TestGoneDisablesEndpoint.)
func TestPermanentFailures(t *testing.T) {
	for _, tc := range []struct {
		status int
		want   string
	}{
		{400, "http 400 Bad Request"},
		{401, "http 401 Unauthorized"},
		{404, "http 404 Not Found"},
		{422, "http 422 Unprocessable Entity"},
		{301, "http 301 Moved Permanently: redirect not followed"},
		{302, "http 302 Found: redirect not followed"},
		{307, "http 307 Temporary Redirect: redirect not followed"},
		{308, "http 308 Permanent Redirect: redirect not followed"},
	} {
		t.Run(strconv.Itoa(tc.status), func(t *testing.T) {
			_, key := testSecret(t, 1, 32)
			var redirected atomic.Int64
			mux := http.NewServeMux()
			mux.HandleFunc("/elsewhere", func(http.ResponseWriter, *http.Request) { redirected.Add(1) })
			srv, reqs := receiver(t, func(w http.ResponseWriter, r *http.Request, _ int) {
				if r.Header.Get(HeaderID) != "msg_1" {
					return // 200
				}
				if tc.status/100 == 3 {
					http.Redirect(w, r, "/elsewhere", tc.status)
					return
				}
				w.WriteHeader(tc.status)
			})
			other := httptest.NewServer(mux)
			t.Cleanup(other.Close)
			out := newFakeOutbox()
			// Concurrency 1: the later jobs queue behind the failing one.
			start(t, mustNew(t, out, []Endpoint{{Name: "ci", URL: srv.URL, Secrets: [][]byte{key}, Concurrency: 1}},
				Options{Logger: slog.New(slog.DiscardHandler)}))
			t0 := time.Now()
			out.add(newJob("msg_1", "ci", t0), newJob("msg_2", "ci", t0.Add(time.Millisecond)),
				newJob("msg_3", "ci", t0.Add(2*time.Millisecond)))
			j := out.waitState(t, "msg_1", store.StateDead)
			out.waitState(t, "msg_2", store.StateDone)
			out.waitState(t, "msg_3", store.StateDone)
			if j.LastError != tc.want {
				t.Errorf("last error = %q, want %q", j.LastError, tc.want)
			}
			if h := out.history("msg_1"); len(h) != 1 {
				t.Errorf("msg_1 finished %d times, want once: %+v", len(h), h)
			}
			if n := redirected.Load(); n != 0 {
				t.Errorf("redirect followed %d times", n)
			}
			count := 0
			for range 3 {
				if next(t, reqs).header.Get(HeaderID) == "msg_1" {
					count++
				}
			}
			noMore(t, reqs)
			if count != 1 {
				t.Errorf("msg_1 sent %d times, want 1", count)
			}
		})
	}
}

// The retry age limit end to end: a job older than MaxAge that fails retryably is dead-lettered.
func TestDeadAfterMaxAge(t *testing.T) {
	_, key := testSecret(t, 1, 32)
	srv, _ := receiver(t, func(w http.ResponseWriter, _ *http.Request, _ int) { w.WriteHeader(503) })
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	out := newFakeOutbox()
	start(t, mustNew(t, out, []Endpoint{{Name: "ci", URL: srv.URL, Secrets: [][]byte{key}}},
		Options{Now: clk.Now, Quick: noQuick}))
	out.add(newJob("msg_OLD", "ci", clk.Now().Add(-DefaultMaxAge-time.Second)))
	j := out.waitState(t, "msg_OLD", store.StateDead)
	if want := "http 503 Service Unavailable; gave up after max_age 72h0m0s"; j.LastError != want {
		t.Errorf("last error = %q, want %q", j.LastError, want)
	}
}

// The per-attempt timeout cancels the request; a timeout is retried later, not in process.
func TestAttemptTimeout(t *testing.T) {
	_, key := testSecret(t, 1, 32)
	cancelled := make(chan struct{}, 10)
	srv, reqs := receiver(t, func(_ http.ResponseWriter, r *http.Request, _ int) {
		select {
		case <-r.Context().Done():
			cancelled <- struct{}{}
		case <-time.After(10 * time.Second):
		}
	})
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	out := newFakeOutbox()
	start(t, mustNew(t, out, []Endpoint{{Name: "ci", URL: srv.URL, Secrets: [][]byte{key}, Timeout: 100 * time.Millisecond}},
		Options{Now: clk.Now}))
	out.add(newJob("msg_SLOW", "ci", clk.Now()))
	h := out.waitFinished(t, "msg_SLOW", 1)
	if h[0].State != store.StatePending || h[0].Status != "timeout" {
		t.Errorf("finish = %+v, want pending after timeout", h[0])
	}
	if !strings.Contains(h[0].Error, "Client.Timeout exceeded") || strings.Contains(h[0].Error, srv.URL) {
		t.Errorf("error = %q, want a timeout without the URL", h[0].Error)
	}
	select {
	case <-cancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("the receiver never saw the request cancelled")
	}
	next(t, reqs)
	noMore(t, reqs)
}

// At most MaxResponseBytes of a response body is read.
func TestResponseBodyCap(t *testing.T) {
	_, key := testSecret(t, 1, 32)
	const total = 256 << 20
	written := make(chan int64, 1)
	srv, _ := receiver(t, func(w http.ResponseWriter, _ *http.Request, _ int) {
		chunk := bytes.Repeat([]byte("x"), 32<<10)
		var n int64
		for n < total {
			m, err := w.Write(chunk)
			n += int64(m)
			if err != nil {
				break
			}
		}
		written <- n
	})
	out := newFakeOutbox()
	start(t, mustNew(t, out, []Endpoint{{Name: "ci", URL: srv.URL, Secrets: [][]byte{key}, MaxResponseBytes: 1024}}, Options{}))
	out.add(newJob("msg_BIG", "ci", time.Now()))
	out.waitState(t, "msg_BIG", store.StateDone)
	select {
	case n := <-written:
		// The kernel buffers some megabytes of a loopback connection; reading the body would
		// take all 256 MiB.
		if n >= total/4 {
			t.Errorf("receiver wrote %d bytes: the body was read far past the cap", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the receiver kept writing: the connection was not closed")
	}
}

// A hanging endpoint holds neither another endpoint nor shutdown; shutdown requeues its jobs.
func TestEndpointIsolationAndShutdown(t *testing.T) {
	_, key := testSecret(t, 1, 32)
	hung := make(chan struct{}, 100)
	slow, _ := receiver(t, func(_ http.ResponseWriter, r *http.Request, _ int) {
		hung <- struct{}{}
		<-r.Context().Done()
	})
	fast, fastReqs := receiver(t, nil)
	out := newFakeOutbox()
	stop := start(t, mustNew(t, out, []Endpoint{
		{Name: "slow", URL: slow.URL, Secrets: [][]byte{key}, Timeout: MaxTimeout, Concurrency: 2},
		{Name: "fast", URL: fast.URL, Secrets: [][]byte{key}},
	}, Options{}))

	t0 := time.Now()
	for i := range 6 {
		out.add(newJob(fmt.Sprintf("msg_S%d", i), "slow", t0))
	}
	for range 2 {
		select {
		case <-hung:
		case <-time.After(10 * time.Second):
			t.Fatal("the slow endpoint got no requests")
		}
	}
	for i := range 10 {
		out.add(newJob(fmt.Sprintf("msg_F%d", i), "fast", t0))
	}
	for i := range 10 {
		out.waitState(t, fmt.Sprintf("msg_F%d", i), store.StateDone)
		next(t, fastReqs)
	}
	for i := range 6 {
		if s := out.job(fmt.Sprintf("msg_S%d", i)).State; s == store.StateDone || s == store.StateDead {
			t.Errorf("slow job %d is %s", i, s)
		}
	}

	stop()
	inFlight := 0
	for i := range 6 {
		id := fmt.Sprintf("msg_S%d", i)
		j := out.job(id)
		if j.State != store.StatePending {
			t.Errorf("%s is %s after shutdown, want pending", id, j.State)
		}
		if h := out.history(id); len(h) > 0 {
			inFlight++
			if h[0].Status != "canceled" {
				t.Errorf("%s: history %+v, want canceled", id, h)
			}
		}
	}
	if inFlight < 2 {
		t.Errorf("%d slow jobs requeued by shutdown, want at least the 2 in flight", inFlight)
	}
}

// No more than Concurrency requests are in flight to an endpoint, the any-target worker
// included.
func TestConcurrencyLimit(t *testing.T) {
	_, key := testSecret(t, 1, 32)
	const limit, jobs = 2, 12
	var inFlight, peak atomic.Int64
	arrived, release := make(chan struct{}, jobs), make(chan struct{}, jobs)
	srv, _ := receiver(t, func(_ http.ResponseWriter, r *http.Request, _ int) {
		n := inFlight.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		arrived <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
		inFlight.Add(-1)
	})
	out := newFakeOutbox()
	start(t, mustNew(t, out, []Endpoint{{Name: "ci", URL: srv.URL, Secrets: [][]byte{key}, Concurrency: limit}}, Options{}))
	t0 := time.Now()
	for i := range jobs {
		out.add(newJob(fmt.Sprintf("msg_%02d", i), "ci", t0))
	}
	// Release one request at a time, each time only after the limit is reached and a short
	// window has passed in which a dispatcher exceeding the limit would send one more. (The window
	// only gives a bug the chance to show; a correct dispatcher passes however short it is.)
	got := 0
	for released := 0; released < jobs; released++ {
		for got-released < min(limit, jobs-released) {
			select {
			case <-arrived:
				got++
			case <-time.After(10 * time.Second):
				t.Fatalf("%d requests arrived, %d released; want %d in flight", got, released, limit)
			}
		}
		window := time.After(20 * time.Millisecond)
	observe:
		for {
			select {
			case <-arrived:
				got++
			case <-window:
				break observe
			}
		}
		release <- struct{}{}
	}
	for i := range jobs {
		out.waitState(t, fmt.Sprintf("msg_%02d", i), store.StateDone)
	}
	if p := peak.Load(); p != limit {
		t.Errorf("peak concurrency %d, want %d", p, limit)
	}
}

func TestWebhookRemoved(t *testing.T) {
	_, key := testSecret(t, 1, 32)
	srv, reqs := receiver(t, nil)
	out := newFakeOutbox()
	start(t, mustNew(t, out, []Endpoint{{Name: "ci", URL: srv.URL, Secrets: [][]byte{key}}}, Options{}))
	t0 := time.Now()
	out.add(newJob("msg_OLD1", "old", t0), newJob("msg_OK", "ci", t0), newJob("msg_OLD2", "old", t0))
	for _, id := range []string{"msg_OLD1", "msg_OLD2"} {
		j := out.waitState(t, id, store.StateDead)
		if j.LastError != "webhook_removed" {
			t.Errorf("%s: last error %q, want webhook_removed", id, j.LastError)
		}
	}
	out.waitState(t, "msg_OK", store.StateDone)
	if r := next(t, reqs); r.header.Get(HeaderID) != "msg_OK" {
		t.Errorf("sent %s", r.header.Get(HeaderID))
	}
	noMore(t, reqs)
}

func TestNoEndpoints(t *testing.T) {
	out := newFakeOutbox()
	start(t, mustNew(t, out, nil, Options{}))
	out.add(newJob("msg_A", "ci", time.Now()))
	if j := out.waitState(t, "msg_A", store.StateDead); j.LastError != "webhook_removed" {
		t.Errorf("last error %q", j.LastError)
	}
}

// A job that becomes due later is picked up by the timer, without a new commit.
func TestWaitsForNextDue(t *testing.T) {
	_, key := testSecret(t, 1, 32)
	srv, _ := receiver(t, nil)
	out := newFakeOutbox()
	start(t, mustNew(t, out, []Endpoint{{Name: "ci", URL: srv.URL, Secrets: [][]byte{key}}}, Options{}))
	j := newJob("msg_LATER", "ci", time.Now())
	j.NextAt = time.Now().Add(200 * time.Millisecond)
	out.add(j)
	out.waitState(t, j.ID, store.StateDone)
}

// The store failing for a while delays delivery but does not stop the workers.
func TestClaimErrorRecovers(t *testing.T) {
	_, key := testSecret(t, 1, 32)
	srv, _ := receiver(t, nil)
	out := newFakeOutbox()
	out.claimErr = fmt.Errorf("database is locked")
	start(t, mustNew(t, out, []Endpoint{{Name: "ci", URL: srv.URL, Secrets: [][]byte{key}, Concurrency: 1}}, Options{}))
	out.add(newJob("msg_A", "ci", time.Now()))
	out.waitState(t, "msg_A", store.StateDone)
}

// Link-local and metadata addresses are refused at dial time, and the job is dead.
func TestLinkLocalRefused(t *testing.T) {
	_, key := testSecret(t, 1, 32)
	out := newFakeOutbox()
	start(t, mustNew(t, out, []Endpoint{
		{Name: "meta", URL: "http://169.254.169.254/latest/meta-data/", Secrets: [][]byte{key}},
		{Name: "mapped", URL: "http://[::ffff:169.254.169.254]:80/", Secrets: [][]byte{key}},
	}, Options{}))
	out.add(newJob("msg_M", "meta", time.Now()), newJob("msg_MM", "mapped", time.Now()))
	for _, id := range []string{"msg_M", "msg_MM"} {
		j := out.waitState(t, id, store.StateDead)
		if h := out.history(id); h[0].Status != "refused" || !strings.Contains(j.LastError, "allow_link_local") {
			t.Errorf("%s: %+v", id, h)
		}
	}
}

func TestGuardedAddr(t *testing.T) {
	for addr, want := range map[string]bool{
		"169.254.169.254": true, "169.254.0.1": true, "::ffff:169.254.169.254": true,
		"fe80::1": true, "fe80::1%eth0": true, "64:ff9b::a9fe:a9fe": true, "fd00:ec2::254": true,
		"100.100.100.200": true, "ff02::1": true, "fd20:ce::254": true, "168.63.129.16": true,
		"::ffff:168.63.129.16": true, "64:ff9b::a83f:8110": true,
		"127.0.0.1": false, "::1": false, "10.0.0.1": false, "192.168.1.1": false, "172.16.0.1": false,
		"fd00::1": false, "8.8.8.8": false, "2001:db8::1": false, "64:ff9b::808:808": false,
	} {
		ip, err := netip.ParseAddr(addr)
		if err != nil {
			t.Fatal(err)
		}
		if got := guardedAddr(ip); got != want {
			t.Errorf("guardedAddr(%s) = %v, want %v", addr, got, want)
		}
	}
}

// Nothing logged or recorded carries the URL, its userinfo, path or query, a header value
// or a secret, whatever the outcome.
func TestNoSecretsLeak(t *testing.T) {
	secret, key := testSecret(t, 77, 32)
	const (
		user, pass = "hookuser", "pa55w0rdSecret"
		path       = "/hooks/s3cr3tPathToken"
		query      = "T0kenInTheQuery"
		bearer     = "BearerTokenValue123"
	)
	srv, _ := receiver(t, func(w http.ResponseWriter, r *http.Request, _ int) {
		switch r.Header.Get(HeaderID) {
		case "msg_retry":
			w.WriteHeader(503)
		case "msg_bad":
			w.WriteHeader(400)
		case "msg_gone":
			w.WriteHeader(410)
		case "msg_redir":
			http.Redirect(w, r, r.URL.String(), http.StatusFound)
		case "msg_slow":
			<-r.Context().Done()
		}
	})
	closed := func() string { // a port nobody listens on
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}()
	withSecrets := func(host string) string {
		return "http://" + user + ":" + pass + "@" + host + path + "?token=" + query
	}
	srvURL := withSecrets(strings.TrimPrefix(srv.URL, "http://"))
	deadURL := withSecrets(closed)
	metaURL := withSecrets("169.254.169.254")

	// The raw net/http error would leak: the test is only meaningful if redaction is needed.
	if _, err := http.Post(deadURL, "application/json", nil); err == nil || !strings.Contains(err.Error(), query) {
		t.Fatalf("expected net/http's error to quote the URL, got %v", err)
	}

	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	hdr := []Header{{Name: "Authorization", Value: "Bearer " + bearer}}
	ep := func(name, u string) Endpoint {
		return Endpoint{Name: name, URL: u, Secrets: [][]byte{key}, Headers: hdr, Timeout: 200 * time.Millisecond}
	}
	out := newFakeOutbox()
	// The 410 goes to an endpoint of its own, since it disables the endpoint.
	stop := start(t, mustNew(t, out, []Endpoint{ep("srv", srvURL), ep("gone", srvURL), ep("dead", deadURL), ep("meta", metaURL)},
		Options{Logger: logger, Quick: QuickRetry{Max: 1, WaitMin: time.Millisecond, WaitMax: 2 * time.Millisecond}}))
	t0 := time.Now()
	ids := []string{"msg_ok", "msg_retry", "msg_bad", "msg_gone", "msg_redir", "msg_slow", "msg_dead", "msg_meta"}
	for _, id := range ids[:6] {
		target := "srv"
		if id == "msg_gone" {
			target = "gone"
		}
		out.add(newJob(id, target, t0))
	}
	out.add(newJob("msg_dead", "dead", t0), newJob("msg_meta", "meta", t0))
	for _, id := range ids {
		out.waitFinished(t, id, 1)
	}
	stop()

	var recordedText strings.Builder
	for _, id := range ids {
		for _, h := range out.history(id) {
			fmt.Fprintln(&recordedText, h.Status, h.Error)
		}
	}
	for where, text := range map[string]string{"log": logs.String(), "attempts": recordedText.String()} {
		for _, forbidden := range []string{pass, user + ":", path, "s3cr3tPathToken", query, bearer, secret,
			strings.TrimPrefix(secret, "whsec_"), srvURL, deadURL, metaURL, url.QueryEscape(query)} {
			if strings.Contains(text, forbidden) {
				t.Errorf("%s contains %q:\n%s", where, forbidden, text)
			}
		}
	}
	// The outcomes themselves were recorded, so the scan looked at something.
	for _, want := range []string{"webhook=srv", "webhook=dead", "connection refused", "http 503", "endpoint gone",
		"redirect not followed", "timeout", "allow_link_local"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
}

func TestNewValidates(t *testing.T) {
	_, key := testSecret(t, 1, 32)
	ok := Endpoint{Name: "ci", URL: "https://user:pw@example.com/x?token=abc", Secrets: [][]byte{key}}
	for _, tc := range []struct {
		name string
		mod  func(e *Endpoint)
		want string
	}{
		{"no name", func(e *Endpoint) { e.Name = "" }, "without a name"},
		{"scheme", func(e *Endpoint) { e.URL = "ftp://example.com/?token=abc" }, "http or https"},
		{"unparsable", func(e *Endpoint) { e.URL = "http://exa mple.com/?token=abc" }, "does not parse"},
		{"no host", func(e *Endpoint) { e.URL = "http:///x?token=abc" }, "no host"},
		{"no secret", func(e *Endpoint) { e.Secrets = nil }, "no secret"},
		{"short secret", func(e *Endpoint) { e.Secrets = [][]byte{key[:23]} }, "secret 1 is 23 bytes"},
		{"timeout", func(e *Endpoint) { e.Timeout = 31 * time.Second }, "timeout"},
		{"concurrency", func(e *Endpoint) { e.Concurrency = -1 }, "concurrency"},
		{"backoff", func(e *Endpoint) { e.Retry.MinBackoff = 2 * time.Hour }, "min_backoff"},
		{"reserved header", func(e *Endpoint) { e.Headers = []Header{{Name: "webhook-signature", Value: "x"}} }, "set by mailhook"},
		{"bad header name", func(e *Endpoint) { e.Headers = []Header{{Name: "X Y", Value: "x"}} }, "not a valid field name"},
		{"header injection", func(e *Endpoint) { e.Headers = []Header{{Name: "X-A", Value: "abc\r\nX-B: 1"}} }, "control character"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := ok
			tc.mod(&e)
			_, err := New([]Endpoint{e}, Options{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "token=abc") || strings.Contains(err.Error(), "pw@") {
				t.Errorf("error quotes the URL: %v", err)
			}
		})
	}
	if _, err := New([]Endpoint{ok, ok}, Options{}); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("duplicate name: err = %v", err)
	}
	if _, err := New([]Endpoint{ok}, Options{}); err != nil {
		t.Errorf("valid endpoint: %v", err)
	}
}

// A backlog to a failing endpoint logs one warning when the endpoint starts failing and one line
// when it recovers, not one per job and attempt (issue 7: one line per state change).
func TestFailingEndpointLogsOnce(t *testing.T) {
	_, key := testSecret(t, 1, 32)
	var mu sync.Mutex
	failing := true
	srv, _ := receiver(t, func(w http.ResponseWriter, _ *http.Request, _ int) {
		mu.Lock()
		defer mu.Unlock()
		if failing {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	var logs bytes.Buffer
	var logMu sync.Mutex
	logger := slog.New(slog.NewTextHandler(lockedWriter{&logMu, &logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	out := newFakeOutbox()
	start(t, mustNew(t, out, []Endpoint{{Name: "ci", URL: srv.URL, Secrets: [][]byte{key}}},
		Options{Now: clk.Now, Quick: noQuick, Logger: logger}))
	for i := range 10 {
		out.add(newJob(fmt.Sprintf("msg_%d", i), "ci", clk.Now()))
	}
	for i := range 10 {
		out.waitFinished(t, fmt.Sprintf("msg_%d", i), 1)
	}
	mu.Lock()
	failing = false
	mu.Unlock()
	clk.Advance(time.Minute) // every retry is due
	for i := range 10 {
		out.waitFinished(t, fmt.Sprintf("msg_%d", i), 2)
	}
	logMu.Lock()
	text := logs.String()
	logMu.Unlock()
	if n := strings.Count(text, `msg="webhook delivery failed; will retry"`); n != 10 {
		t.Errorf("%d retry lines, want 10 (one per job, at debug)", n)
	}
	if n := strings.Count(text, `level=WARN msg="webhook delivery failed; will retry"`); n != 1 {
		t.Errorf("%d retry warnings, want 1 for the start of the failure streak", n)
	}
	if n := strings.Count(text, `msg="webhook endpoint recovered"`); n != 1 {
		t.Errorf("%d recovery lines, want 1", n)
	}
}

// lockedWriter serialises a logger's writes for a test that reads them.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// The endpoint's ContentType (a template's content_type) is what is sent; application/json by
// default.
func TestContentTypeSent(t *testing.T) {
	_, key := testSecret(t, 9, 32)
	srv, reqs := receiver(t, nil)
	out := newFakeOutbox()
	start(t, mustNew(t, out, []Endpoint{
		{Name: "json", URL: srv.URL, Secrets: [][]byte{key}},
		{Name: "text", URL: srv.URL, Secrets: [][]byte{key}, ContentType: "text/plain; charset=utf-8"},
	}, Options{Quick: noQuick}))
	t0 := time.Now()
	out.add(newJob("msg_json", "json", t0))
	r := next(t, reqs)
	if got := r.header.Get("Content-Type"); got != "application/json" {
		t.Errorf("default Content-Type %q", got)
	}
	out.add(newJob("msg_text", "text", t0))
	r = next(t, reqs)
	if got := r.header.Get("Content-Type"); got != "text/plain; charset=utf-8" {
		t.Errorf("configured Content-Type %q", got)
	}
	if _, err := New([]Endpoint{{Name: "bad", URL: srv.URL, Secrets: [][]byte{key}, ContentType: "text/plain\r\nX: y"}}, Options{}); err == nil {
		t.Error("a Content-Type with CR LF was accepted")
	}
}
