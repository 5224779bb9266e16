package dispatch

import (
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"github.com/mailhook/mailhook/internal/failpoint"
	"github.com/mailhook/mailhook/internal/localhost"
	"github.com/mailhook/mailhook/outbox"
	"github.com/mailhook/mailhook/store"
)

// endpoint is a configured Endpoint with its HTTP client and concurrency slots.
type endpoint struct {
	Endpoint
	log    *slog.Logger
	client *http.Client
	sem    chan struct{}
	shared outbox.Gate       // the concurrency limit shared with other processes (Options.Gates); nil: sem
	scrub  *strings.Replacer // removes URL parts, header values and secrets from error text
	health endpointHealth    // disabled or failing (health.go)
}

func newEndpoint(e Endpoint, log *slog.Logger) *endpoint {
	dialer := &net.Dialer{Timeout: e.Timeout, KeepAlive: 30 * time.Second}
	if !e.AllowLinkLocal {
		dialer.Control = refuseLinkLocal
	}
	tr := &http.Transport{
		Proxy:                 proxyFor(e.AllowLinkLocal, http.ProxyFromEnvironment),
		DialContext:           localhost.Dial(dialer.DialContext),
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   e.Concurrency,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true, // the response body is only counted and discarded
	}
	return &endpoint{
		Endpoint: e,
		log:      log,
		client: &http.Client{
			Transport: tr,
			// One attempt: dial, TLS, request, response headers and the capped body read.
			Timeout: e.Timeout,
			// RFC 9110 §15.4: a redirect is the receiver's to follow, not ours. Following one
			// would re-send a signed body (and the configured headers) to a place nobody configured.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		sem:   make(chan struct{}, e.Concurrency),
		scrub: newScrubber(e),
	}
}

// outcome is the result of one claim's delivery attempts.
type outcome struct {
	status     int           // HTTP status of the last response; 0 when there was none
	err        error         // transport error of the last try; nil with a response
	tries      int           // HTTP requests made, quick retries included
	retryAfter time.Duration // Retry-After of a retryable response, 0 if none
}

// deliver sends one claimed job and returns the outcome.
func (d *Dispatcher) deliver(ctx context.Context, ep *endpoint, j store.Job) outbox.Result {
	log := ep.log.With("job", j.ID, "rule", j.Rule, "account", j.Account, "mailbox", j.Mailbox,
		"uid", j.UID, "attempt", j.Attempts)
	a := store.Attempt{JobID: j.ID, At: d.now()}
	if reason, off := d.isDisabled(ctx, ep); off {
		// Committed before the endpoint was disabled, or requeued by hand: hold it with the rest.
		a.Status, a.Error = "held", "endpoint disabled: "+reason
		log.Info("webhook endpoint disabled; job held", "reason", reason)
		return d.result(log, j, store.StateHeld, time.Time{}, a)
	}
	o := d.send(ctx, ep, j)

	if o.err == nil && o.status >= 200 && o.status <= 299 {
		// Crash tests kill the process here: the receiver has the event, the outbox does not know.
		failpoint.Hit("after_send")
		a.Status = "http " + strconv.Itoa(o.status)
		log.Info("webhook delivered", "status", o.status, "tries", o.tries)
		d.succeeded(ctx, ep)
		return d.result(log, j, store.StateDone, time.Time{}, a)
	}
	if o.err != nil && ctx.Err() != nil {
		// Shutdown cut the request short; the receiver may have it or not. Send it again later.
		a.Status, a.Error = "canceled", "shut down during delivery"
		log.Debug("delivery interrupted by shutdown; job requeued")
		return d.result(log, j, store.StatePending, d.now(), a)
	}

	retry := false
	if o.err != nil {
		var refused *refusedAddrError
		var spoolErr *spoolError
		switch {
		case errors.As(o.err, &refused):
			a.Status = "refused"
		case errors.As(o.err, &spoolErr):
			a.Status, retry = "spool", !spoolErr.missing
		case isTimeout(o.err):
			a.Status, retry = "timeout", true
		default:
			a.Status, retry = "network", true
		}
		a.Error = ep.redact(o.err)
	} else {
		a.Status = "http " + strconv.Itoa(o.status)
		a.Error = fmt.Sprintf("http %d %s", o.status, http.StatusText(o.status))
		switch {
		case retryable(o.status):
			retry = true
			if o.retryAfter > 0 {
				a.Error += fmt.Sprintf(", retry-after %v", o.retryAfter)
			}
		case o.status == http.StatusGone:
			a.Error += ": endpoint gone"
		case o.status >= 300 && o.status <= 399:
			a.Error += ": redirect not followed"
		}
	}
	if o.tries > 1 {
		a.Error += fmt.Sprintf(" (after %d tries)", o.tries)
	}
	// A spool failure is this host's, not the endpoint's: it does not count against it.
	disabled, started := false, false
	if a.Status != "spool" {
		disabled, started = d.failed(ctx, ep, log, o.status)
	}
	if disabled && retry {
		// The endpoint is disabled (now or by another worker): hold the job instead of retrying.
		a.Error += "; endpoint disabled"
		log.Warn("webhook delivery failed; endpoint disabled, job held", "status", a.Status, "err", a.Error)
		return d.result(log, j, store.StateHeld, time.Time{}, a)
	}

	if retry {
		if at, ok := ep.Retry.Next(j.CreatedAt, d.now(), max(j.Attempts-1, 0), o.retryAfter, d.rand()); ok {
			// One warning when the endpoint starts failing (and one Info when it recovers), not
			// one per job and attempt: a backlog to a dead endpoint would flood the log.
			level := slog.LevelDebug
			if started || a.Status == "spool" {
				level = slog.LevelWarn
			}
			log.Log(ctx, level, "webhook delivery failed; will retry", "status", a.Status, "err", a.Error,
				"next_at", at)
			return d.result(log, j, store.StatePending, at, a)
		}
		a.Error += fmt.Sprintf("; gave up after max_age %v", ep.Retry.MaxAge)
	}
	if o.status == http.StatusGone {
		log.Error("webhook endpoint is gone (HTTP 410): every delivery to it will fail until it is fixed or removed")
	}
	log.Error("webhook delivery failed; job dead-lettered", "status", a.Status, "err", a.Error)
	return d.result(log, j, store.StateDead, time.Time{}, a)
}

// send POSTs the job's body, signing each try afresh, with up to d.quick.Max quick retries.
func (d *Dispatcher) send(ctx context.Context, ep *endpoint, j store.Job) outcome {
	var o outcome
	body, err := d.requestBody(ctx, j)
	if err != nil {
		o.err = err
		return o
	}
	defer body.close()
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodPost, ep.URL, body.raw())
	if err != nil {
		o.err = err
		return o
	}
	h := req.Header
	for _, x := range ep.Headers {
		h.Add(x.Name, x.Value)
	}
	h.Set("Content-Type", ep.ContentType)
	h.Set("User-Agent", d.userAgent)
	h.Set(HeaderID, j.ID)
	h.Set("Idempotency-Key", j.ID) // draft-ietf-httpapi-idempotency-key-header
	sign := func(r *http.Request) error {
		ts := d.now()
		sig, err := body.signature(ep.Secrets, j.ID, ts)
		if err != nil {
			return err
		}
		r.Header.Set(HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
		if len(ep.Secrets) > 0 {
			r.Header.Set(HeaderSignature, sig)
		}
		return nil
	}
	if err := sign(req.Request); err != nil { // PrepareRetry runs before retries only
		o.err = err
		return o
	}

	// A quick retry holds a concurrency slot while it waits: when the durable schedule would try
	// again sooner, leave the retry to it and free the slot (see QuickRetry).
	quickMax := d.quick.Max
	if ep.Retry.MinBackoff < d.quick.WaitMin {
		quickMax = 0
	}
	c := &retryablehttp.Client{
		HTTPClient:   ep.client,
		Logger:       nil, // its messages carry the URL
		RetryWaitMin: d.quick.WaitMin,
		RetryWaitMax: d.quick.WaitMax,
		RetryMax:     quickMax,
		CheckRetry: func(ctx context.Context, resp *http.Response, err error) (bool, error) {
			switch {
			case ctx.Err() != nil:
				return false, nil
			case err != nil:
				// A timeout means a slow receiver: leave it to the durable schedule.
				var refused *refusedAddrError
				return !isTimeout(err) && !errors.As(err, &refused), nil
			case !retryable(resp.StatusCode):
				return false, nil
			case parseRetryAfter(resp.Header.Get("Retry-After"), d.now()) > d.quick.WaitMax:
				return false, nil
			}
			// Going to retry: read what the cap allows so retryablehttp reads nothing more.
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, ep.MaxResponseBytes))
			_ = resp.Body.Close()
			resp.Body = http.NoBody
			return true, nil
		},
		Backoff: func(lo, hi time.Duration, n int, resp *http.Response) time.Duration {
			ceiling := hi
			if n < 62 && lo <= hi>>n {
				ceiling = lo << n
			}
			wait := lo + time.Duration(d.rand()*float64(ceiling-lo))
			if resp != nil {
				wait = max(wait, parseRetryAfter(resp.Header.Get("Retry-After"), d.now()))
			}
			return wait
		},
		// Hand back the last response or error as net/http produced it; we classify it.
		ErrorHandler:   retryablehttp.PassthroughErrorHandler,
		PrepareRetry:   sign, // a fresh webhook-timestamp and signature for every try
		RequestLogHook: func(_ retryablehttp.Logger, _ *http.Request, i int) { o.tries = i + 1 },
	}
	resp, err := c.Do(req)
	o.tries = max(o.tries, 1)
	if err != nil {
		if resp != nil {
			_ = resp.Body.Close()
		}
		o.err = err
		return o
	}
	o.status = resp.StatusCode
	if retryable(o.status) {
		o.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), d.now())
	}
	// Read at most MaxResponseBytes, so a small body lets the connection be reused and a huge
	// one costs nothing more; closing an unread body drops the connection.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, ep.MaxResponseBytes))
	_ = resp.Body.Close()
	return o
}

// isTimeout reports whether err is an attempt running out of time.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// redact returns err's text without the endpoint's URL, header values or secrets. net/http
// wraps its errors in *url.Error, whose text quotes the whole URL (only a password is masked):
// keep its operation and cause, drop the URL; then scrub what is left, in case a cause quotes
// the URL again.
func (ep *endpoint) redact(err error) string {
	msg := err.Error()
	if ue, ok := errors.AsType[*url.Error](err); ok {
		msg = strings.ToLower(ue.Op) + ": " + ue.Err.Error()
	}
	return ep.scrub.Replace(msg)
}

// newScrubber returns a replacer for the secret-bearing strings of e: the URL in its forms, its
// userinfo, path and query, the configured header values and the secrets in base64.
func newScrubber(e Endpoint) *strings.Replacer {
	var words []string
	if u, err := url.Parse(e.URL); err == nil {
		words = append(words, u.String(), u.Redacted(), u.User.String(), u.User.Username(),
			u.EscapedPath(), u.Path, u.RawQuery, u.Fragment, u.Host+u.EscapedPath())
		if p, ok := u.User.Password(); ok {
			words = append(words, p)
		}
		for _, vs := range u.Query() {
			words = append(words, vs...)
		}
	}
	words = append(words, e.URL)
	for _, h := range e.Headers {
		words = append(words, h.Value)
		if _, v, ok := strings.Cut(h.Value, " "); ok { // "Bearer <token>"
			words = append(words, v)
		}
	}
	for _, s := range e.Secrets {
		words = append(words, base64.StdEncoding.EncodeToString(s), base64.RawStdEncoding.EncodeToString(s))
	}
	// Longest first, so a whole URL goes before its parts; short words are not secrets but
	// would mangle ordinary text.
	words = slices.DeleteFunc(words, func(w string) bool { return len(w) < 4 })
	slices.SortFunc(words, func(a, b string) int { return cmp.Compare(len(b), len(a)) })
	words = slices.Compact(words)
	pairs := make([]string, 0, 2*len(words))
	for _, w := range words {
		pairs = append(pairs, w, "[redacted]")
	}
	return strings.NewReplacer(pairs...)
}

// refusedAddrError is returned by the dialer for an address Endpoint.AllowLinkLocal guards.
type refusedAddrError struct{ addr netip.Addr }

func (e *refusedAddrError) Error() string {
	return fmt.Sprintf("connection to %s refused: link-local or cloud metadata address (allow_link_local is off)", e.addr)
}

// refuseLinkLocal is a net.Dialer Control function: it runs after name resolution, on the address
// about to be dialled, so a host name that resolves to a guarded address is refused too.
func refuseLinkLocal(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return err
	}
	if guardedAddr(ip) {
		return &refusedAddrError{addr: ip}
	}
	return nil
}

// guardedAddr reports whether ip is link-local (169.254.0.0/16, fe80::/10; RFC 3927, RFC 4291
// §2.5.6), a cloud instance-metadata address outside those ranges (AWS's IPv6 fd00:ec2::254,
// Google Cloud's IPv6 fd20:ce::254, Azure's WireServer 168.63.129.16, Alibaba Cloud's
// 100.100.100.200), or one of these in IPv4-mapped or NAT64 (64:ff9b::/96, RFC 6052 §2.1) form.
func guardedAddr(ip netip.Addr) bool {
	ip = ip.WithZone("").Unmap()
	if netip.MustParsePrefix("64:ff9b::/96").Contains(ip) {
		ip = netip.AddrFrom4([4]byte(ip.AsSlice()[12:]))
	}
	return ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() || slices.Contains(metadataAddrs, ip)
}

// metadataAddrs are cloud instance-metadata addresses outside the link-local ranges.
var metadataAddrs = []netip.Addr{
	netip.MustParseAddr("fd00:ec2::254"),   // AWS, IPv6
	netip.MustParseAddr("fd20:ce::254"),    // Google Cloud, IPv6
	netip.MustParseAddr("168.63.129.16"),   // Azure WireServer
	netip.MustParseAddr("100.100.100.200"), // Alibaba Cloud
}

// proxyFor wraps the transport's proxy choice (HTTP_PROXY, HTTPS_PROXY, NO_PROXY). A request
// through a proxy is dialled by the proxy: the dial-time address check sees the proxy's address,
// not the webhook's, and the proxy resolves the webhook's name itself. So localhost names and
// loopback addresses always go direct (to the loopback: see package localhost), and unless
// allowLinkLocal a URL whose host is a guarded address literal is refused before any proxy sees
// it. A name that the proxy resolves to a guarded address cannot be seen here: the proxy's own
// policy must refuse it.
func proxyFor(allowLinkLocal bool, fromEnv func(*http.Request) (*url.URL, error)) func(*http.Request) (*url.URL, error) {
	return func(r *http.Request) (*url.URL, error) {
		host := r.URL.Hostname()
		if localhost.IsName(host) {
			return nil, nil
		}
		if ip, err := netip.ParseAddr(host); err == nil {
			if ip.Unmap().IsLoopback() {
				return nil, nil
			}
			if !allowLinkLocal && guardedAddr(ip) {
				return nil, &refusedAddrError{addr: ip.WithZone("")}
			}
		}
		return fromEnv(r)
	}
}
