package ops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mailhook/mailhook/watcher"
)

// Health-check constants.
const (
	// livenessSlack is added to twice the longest planned wait of a loop.
	livenessSlack = 60 * time.Second
	// minDispatchLimit is the dispatcher's shortest liveness limit, so that a test-sized
	// idle_refresh does not flag a worker busy with a slow receiver (30 s timeout × 3 tries).
	minDispatchLimit = 5 * time.Minute
	// opsShutdownTimeout bounds how long the listener waits for running requests at exit.
	opsShutdownTimeout = 5 * time.Second
)

// Readiness reasons, in the JSON body of /readyz.
const (
	ReasonAuthFailed   = "auth_failed"  // the server refused the credentials
	ReasonAlert        = "alert"        // the server sent an [ALERT] (RFC 3501 §7.1); detail has its text
	ReasonOverQuota    = "over_quota"   // the server refused for quota or bandwidth
	ReasonThrottled    = "throttled"    // mailhook paused itself (download budget); until says when it resumes
	ReasonReconnecting = "reconnecting" // any other session error; until is the next attempt
	ReasonConnecting   = "connecting"   // dialing, authenticating, selecting
	ReasonStale        = "stale"        // connected, but no IMAP activity within the expected interval
	ReasonStopped      = "stopped"      // the watcher's loop has ended
)

// Heartbeater is a worker pool as the liveness check sees it: the oldest last iteration of its
// running loops, zero when not running. *outbox.Consumer implements it.
type Heartbeater interface{ Heartbeat() time.Time }

// workerLoop is a named heartbeater, such as the webhook dispatcher.
type workerLoop struct {
	name string
	hb   Heartbeater
}

// watchedMailbox is one watcher with the intervals that say what fresh means for it.
type watchedMailbox struct {
	account, mailbox string
	idleRefresh      time.Duration
	pollInterval     time.Duration
	commandTimeout   time.Duration
	status           func() watcher.Status
}

// Ops is the operations side of a running mailhook: metrics, health checks and the listener
// serving them. Watch, AddLoop and Listen are called while the app is built; afterwards it is
// read-only, and safe for concurrent use.
type Ops struct {
	metrics   *metrics
	mailboxes []*watchedMailbox
	loops     []workerLoop // worker pools whose heartbeats /healthz checks (AddLoop)
	outbox    OutboxCounter
	replies   ReplyCounter // nil: no mailhook_replies_sent_24h

	now      func() time.Time
	started  time.Time
	stopping atomic.Bool // set when shutdown begins: readiness fails, liveness does not
	log      *slog.Logger
	ln       net.Listener // nil when http.listen is ""
}

// Options configures New.
type Options struct {
	Version string       // the build_info label
	Logger  *slog.Logger // nil discards
	// Outbox, when set, is read at every scrape for the outbox gauges.
	Outbox OutboxCounter
	// Replies, when set, is read at every scrape for mailhook_replies_sent_24h.
	Replies ReplyCounter
	// Endpoints, when set, is read at every scrape for mailhook_webhook_disabled of each of
	// Webhooks (the configured webhook names, in configuration order).
	Endpoints EndpointLister
	Webhooks  []string
	// Leases, when set (a replica sharing a PostgreSQL store), is read at every scrape for the
	// lease metrics.
	Leases func() LeaseCounts
}

// New creates the metrics registry and the health checks; Watch and AddLoop add what they
// check, Listen binds the listener and Serve serves it.
func New(opts Options) *Ops {
	o := &Ops{metrics: newMetrics(opts.Version), outbox: opts.Outbox, replies: opts.Replies, now: time.Now, log: opts.Logger}
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	o.started = o.now()
	o.metrics.reg.MustRegister(&stateCollector{ops: o})
	if opts.Endpoints != nil {
		o.metrics.reg.MustRegister(&endpointCollector{states: opts.Endpoints, names: opts.Webhooks})
	}
	if opts.Leases != nil {
		o.metrics.reg.MustRegister(&leaseCollector{counts: opts.Leases})
	}
	return o
}

// Mailbox is one watched mailbox with the intervals of its watcher (zero: the watcher's defaults).
type Mailbox struct {
	Account, Mailbox                          string
	IdleRefresh, PollInterval, CommandTimeout time.Duration
	Status                                    func() watcher.Status // (*watcher.Watcher).Status
}

// Watch adds the watcher of one (account, mailbox) to the health checks and metrics.
func (o *Ops) Watch(m Mailbox) {
	o.mailboxes = append(o.mailboxes, &watchedMailbox{
		account: m.Account, mailbox: m.Mailbox,
		idleRefresh:    cmpDuration(m.IdleRefresh, watcher.DefaultIdleRefresh),
		pollInterval:   cmpDuration(m.PollInterval, watcher.DefaultPollInterval),
		commandTimeout: cmpDuration(m.CommandTimeout, watcher.DefaultCommandTimeout),
		status:         m.Status,
	})
}

// AddLoop adds a worker pool (the webhook dispatcher, the reply dispatcher) to the liveness check.
func (o *Ops) AddLoop(name string, hb Heartbeater) {
	o.loops = append(o.loops, workerLoop{name: name, hb: hb})
}

func cmpDuration(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// MailboxHealth is one mailbox in the /readyz body.
type MailboxHealth struct {
	Account string    `json:"account"`
	Mailbox string    `json:"mailbox"`
	Ready   bool      `json:"ready"`
	State   string    `json:"state"`
	Since   time.Time `json:"since"`
	Reason  string    `json:"reason,omitempty"` // one of the reason* constants
	// Detail is a short text for Reason, scrubbed (see scrubbedDetail): never the server's own
	// words, which can name the user; the full error is in the log.
	Detail       string     `json:"detail,omitempty"`
	Until        *time.Time `json:"until,omitempty"` // next connection attempt, or end of throttling
	LastActivity *time.Time `json:"last_activity,omitempty"`
}

// readiness judges one mailbox from its status at now.
func (m *watchedMailbox) readiness(st watcher.Status, now time.Time) MailboxHealth {
	h := MailboxHealth{Account: m.account, Mailbox: m.mailbox, State: st.State, Since: st.Since.UTC()}
	if !st.LastActivity.IsZero() {
		t := st.LastActivity.UTC()
		h.LastActivity = &t
	}
	if until := plannedWake(st); until.After(now) {
		t := until.UTC()
		h.Until = &t
	}
	var window time.Duration
	switch st.State {
	case watcher.StateIdle:
		window = m.idleRefresh + livenessSlack // the watcher's IDLE watchdog's own limit
	case watcher.StatePolling:
		window = m.pollInterval + livenessSlack
	case watcher.StateFetching:
		window = m.commandTimeout + livenessSlack
	case watcher.StateConnecting:
		h.Reason = ReasonConnecting
		return h
	case watcher.StateBackoff:
		h.Reason = backoffReason(st.Reason)
		h.Detail = scrubbedDetail(h.Reason, st.Reason)
		return h
	case watcher.StateThrottled:
		h.Reason = ReasonThrottled
		return h
	case watcher.StateStopped:
		h.Reason = ReasonStopped
		return h
	case watcher.StateStandby: // another replica watches it: a standby is healthy
		h.Ready = true
		return h
	default: // a state added later
		h.Reason = st.State
		return h
	}
	last := st.Since
	if st.LastActivity.After(last) {
		last = st.LastActivity
	}
	if quiet := now.Sub(last); quiet > window {
		h.Reason = ReasonStale
		h.Detail = fmt.Sprintf("no IMAP activity for %v in state %s (expected within %v)",
			quiet.Round(time.Second), st.State, window)
		return h
	}
	h.Ready = true
	if strings.HasPrefix(st.Reason, "alert: ") { // an [ALERT] of the current session
		h.Detail = scrubbedDetail(ReasonAlert, st.Reason)
	}
	return h
}

// scrubbedDetail is the detail /readyz shows for a mailbox backing off for reason (classified from
// the watcher's error err): a fixed text per reason, and for reconnecting the kind of network
// failure. Server responses ([ALERT] text, NO/BAD text) and error strings are left out: they can
// carry a user name or an address, and the probe endpoints are often reachable beyond the host
// (the shipped manifests bind 0.0.0.0). The log has the whole error.
func scrubbedDetail(reason, err string) string {
	switch reason {
	case ReasonAuthFailed:
		return "the server refused the credentials (the log has its answer)"
	case ReasonAlert:
		return "the server sent an [ALERT] (the log has its text)"
	case ReasonOverQuota:
		return "the server refused for quota or bandwidth (the log has its answer)"
	}
	lower := strings.ToLower(err)
	for _, k := range []struct{ contains, says string }{
		{"connection refused", "connection refused"},
		{"no such host", "DNS lookup failed"},
		{"i/o timeout", "timed out"},
		{"deadline exceeded", "timed out"},
		{"watchdog", "timed out (no answer from the server)"},
		{"certificate", "TLS certificate not accepted"},
		{"tls", "TLS failed"},
		{"connection reset", "connection reset"},
		{"eof", "connection closed by the server"},
		{"bye", "connection closed by the server"},
		{"select", "the mailbox could not be selected"},
	} {
		if strings.Contains(lower, k.contains) {
			return k.says + " (the log has the error)"
		}
	}
	return "the session failed (the log has the error)"
}

// backoffReason classifies the error a watcher is backing off from, by the RFC 5530 response code
// or the watcher's "alert: " prefix.
func backoffReason(reason string) string {
	upper := strings.ToUpper(reason)
	switch {
	case strings.HasPrefix(reason, "alert: "):
		return ReasonAlert
	case strings.Contains(upper, "[AUTHENTICATIONFAILED]"), strings.Contains(upper, "[AUTHORIZATIONFAILED]"),
		strings.Contains(upper, "[EXPIRED]"), strings.HasPrefix(reason, "login as"),
		strings.HasPrefix(reason, "authenticate"):
		return ReasonAuthFailed
	case strings.Contains(upper, "[OVERQUOTA]"), strings.Contains(upper, "QUOTA"), strings.Contains(upper, "BANDWIDTH"):
		return ReasonOverQuota
	}
	return ReasonReconnecting
}

// ReadyReport is the /readyz body.
type ReadyReport struct {
	Ready     bool            `json:"ready"`
	Stopping  bool            `json:"stopping,omitempty"`
	Mailboxes []MailboxHealth `json:"mailboxes"`
}

// readiness judges every mailbox; the process is ready when all are and it is not stopping.
func (o *Ops) readiness(now time.Time) ReadyReport {
	r := ReadyReport{Ready: true, Stopping: o.stopping.Load(), Mailboxes: []MailboxHealth{}}
	for _, mb := range o.mailboxes {
		h := mb.readiness(mb.status(), now)
		r.Ready = r.Ready && h.Ready
		r.Mailboxes = append(r.Mailboxes, h)
	}
	r.Ready = r.Ready && !r.Stopping
	return r
}

// StalledLoop is one loop in the /healthz body that has not gone round in time.
type StalledLoop struct {
	Loop          string    `json:"loop"` // "watcher", or the name of a worker pool ("dispatch")
	Account       string    `json:"account,omitempty"`
	Mailbox       string    `json:"mailbox,omitempty"`
	LastIteration time.Time `json:"last_iteration"`
	Limit         string    `json:"limit"`
}

// LiveReport is the /healthz body.
type LiveReport struct {
	Live    bool          `json:"live"`
	Stalled []StalledLoop `json:"stalled,omitempty"`
}

// liveness checks that every loop went round recently enough.
func (o *Ops) liveness(now time.Time) LiveReport {
	r := LiveReport{Live: true}
	stopping := o.stopping.Load()
	maxRefresh := time.Duration(0)
	for _, mb := range o.mailboxes {
		maxRefresh = max(maxRefresh, mb.idleRefresh)
		st := mb.status()
		if st.State == watcher.StateStopped && stopping {
			continue
		}
		if last, limit, stalled := mb.stalled(st, now); stalled {
			r.Stalled = append(r.Stalled, StalledLoop{Loop: "watcher", Account: mb.account, Mailbox: mb.mailbox,
				LastIteration: last.UTC(), Limit: limit.String()})
		}
	}
	for _, l := range o.loops {
		if stopping {
			break
		}
		limit := max(2*maxRefresh+livenessSlack, minDispatchLimit)
		last := l.hb.Heartbeat()
		if last.IsZero() || last.Before(o.started) { // not started yet, or Run ended
			last = o.started
		}
		if now.Sub(last) > limit {
			r.Stalled = append(r.Stalled, StalledLoop{Loop: l.name, LastIteration: last.UTC(), Limit: limit.String()})
		}
	}
	r.Live = len(r.Stalled) == 0
	return r
}

// stalled reports whether the watcher's loop has made no iteration for longer than its limit:
// 2 × its planned wait (idle_refresh, or poll_interval while polling) + 60 s from the last
// heartbeat, or, while it sleeps until a planned time (backoff, throttling), 60 s past that time.
// While it talks to the server (connecting, fetching) bytes read count as progress too.
func (m *watchedMailbox) stalled(st watcher.Status, now time.Time) (last time.Time, limit time.Duration, stalled bool) {
	if st.State == watcher.StateStandby {
		return st.Since, 0, false
	}
	if st.State == watcher.StateStopped {
		return st.Since, 0, true
	}
	wait := m.idleRefresh
	if st.State == watcher.StatePolling {
		wait = max(wait, m.pollInterval)
	}
	limit = 2*wait + livenessSlack
	last = st.Heartbeat
	switch st.State {
	case watcher.StateConnecting, watcher.StateFetching, watcher.StateThrottled:
		if st.LastActivity.After(last) {
			last = st.LastActivity
		}
	}
	deadline := last.Add(limit)
	if wake := plannedWake(st); !wake.IsZero() && wake.Add(livenessSlack).After(deadline) {
		deadline = wake.Add(livenessSlack)
	}
	return last, limit, now.After(deadline)
}

// plannedWake is when a watcher that sleeps on purpose plans to go on: the next connection attempt
// in backoff, the end of the pause when throttled; zero in the other states.
func plannedWake(st watcher.Status) time.Time {
	switch st.State {
	case watcher.StateBackoff:
		return st.NextAttempt
	case watcher.StateThrottled:
		return st.ThrottledUntil
	}
	return time.Time{}
}

// handler serves /healthz, /readyz and /metrics.
func (o *Ops) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		r := o.liveness(o.now())
		writeJSON(w, r.Live, r)
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		r := o.readiness(o.now())
		writeJSON(w, r.Ready, r)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(o.metrics.reg, promhttp.HandlerOpts{
		ErrorLog:      promLogger{o.log},
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      o.metrics.reg, // promhttp_metric_handler_errors_total
	}))
	return mux
}

// writeJSON answers 200 when ok, else 503, with v as an indented JSON body.
func writeJSON(w http.ResponseWriter, ok bool, v any) {
	body, err := json.MarshalIndent(v, "", "  ")
	if err != nil { // cannot happen with these types
		http.Error(w, "encode: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if ok {
		w.WriteHeader(http.StatusOK)
	} else {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_, _ = w.Write(append(body, '\n'))
}

// promLogger passes promhttp's error lines to slog.
type promLogger struct{ log *slog.Logger }

func (l promLogger) Println(v ...any) {
	l.log.Warn("metrics scrape problem", "err", strings.TrimSpace(fmt.Sprintln(v...)))
}

// Listen binds http.listen ("" leaves the listener off). The daemon calls it after taking the
// state directory lock, so a second instance fails on the lock, not on the port.
func (o *Ops) Listen(addr string) error {
	if addr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("http.listen %s: %w", addr, err)
	}
	o.ln = ln
	return nil
}

// Serve serves the listener until the returned stop is called. When ctx is done, readiness starts
// failing (stopping), so a load balancer drains this instance while the loops wind down; stop
// then closes the listener, letting running requests finish for a few seconds.
func (o *Ops) Serve(ctx context.Context) (stop func()) {
	unhook := context.AfterFunc(ctx, func() { o.stopping.Store(true) })
	if o.ln == nil {
		return func() { unhook() }
	}
	srv := &http.Server{
		Handler:           o.handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		ErrorLog:          slog.NewLogLogger(o.log.Handler(), slog.LevelWarn),
	}
	done := make(chan struct{})
	o.log.Info("http listening", "addr", o.ln.Addr().String(), "paths", "/healthz /readyz /metrics")
	go func() {
		defer close(done)
		if err := srv.Serve(o.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			o.log.Error("http listener failed; health and metrics are unavailable", "err", err)
		}
	}()
	return func() {
		unhook()
		ctx, cancel := context.WithTimeout(context.Background(), opsShutdownTimeout)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			_ = srv.Close()
		}
		<-done
	}
}
