package dispatch

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/mailhook/mailhook/outbox"
	"github.com/mailhook/mailhook/payload"
)

// Endpoint defaults and limits.
const (
	DefaultTimeout          = 15 * time.Second
	MaxTimeout              = 30 * time.Second
	DefaultConcurrency      = 4
	DefaultMaxResponseBytes = 64 << 10
	DefaultMaxAge           = 72 * time.Hour
	DefaultMinBackoff       = 5 * time.Second
	DefaultMaxBackoff       = time.Hour
)

// The defaults of Endpoint.ContentType and Endpoint.DisableAfter are payload.ContentTypeJSON and
// DefaultDisableAfter (health.go).

// Endpoint is one configured webhook receiver. Zero fields take the documented defaults.
type Endpoint struct {
	// Name identifies the endpoint in configuration, in the outbox (the job target) and in logs.
	Name string
	// URL is where requests are POSTed, http or https. It is never logged: its path, query or
	// userinfo may carry a token.
	URL string
	// Secrets are the signing keys (see ParseSecret); each produces one signature. At least one,
	// unless Unsigned.
	// Several are used while rotating: receivers accept a request when any signature verifies.
	Secrets [][]byte
	// Unsigned allows no Secrets: deliveries then carry a webhook-timestamp but no
	// webhook-signature. For chat destinations (Slack, Discord, Teams), which check no signature.
	Unsigned bool
	// Headers are sent with every request, in addition to the protocol headers (Content-Type,
	// User-Agent, webhook-*, Idempotency-Key), which they cannot replace. Values are never logged.
	Headers []Header
	// Timeout bounds one HTTP attempt, from dialling to the response headers and the capped read
	// of the response body (default 15s, at most 30s).
	Timeout time.Duration
	// Retry is the durable retry schedule (defaults DefaultMaxAge, DefaultMinBackoff,
	// DefaultMaxBackoff).
	Retry outbox.RetryPolicy
	// MaxResponseBytes caps how much of a response body is read (default 64 KiB); the rest is
	// discarded with the connection.
	MaxResponseBytes int64
	// Concurrency is the most requests in flight to this endpoint at once (default 4).
	Concurrency int
	// AllowLinkLocal permits connecting to link-local and cloud metadata addresses
	// (169.254.0.0/16, fe80::/10, their IPv4-mapped forms, fd00:ec2::254, 100.100.100.200),
	// refused by default at dial time so a webhook cannot reach the host's credentials service.
	// Loopback and private ranges are always allowed.
	AllowLinkLocal bool
	// ContentType is the Content-Type of the stored bodies (default application/json; see
	// payload.Formatter.ContentType).
	ContentType string
	// DisableAfter is how long the endpoint may fail without a single success before it is
	// disabled and its jobs held (default DefaultDisableAfter, 5 days). HTTP 410 Gone disables
	// it at once.
	DisableAfter time.Duration
}

// Header is one extra request header.
type Header struct {
	Name  string
	Value string
}

// reserved reports whether the dispatcher sets the header name itself, so Endpoint.Headers may
// not replace it.
func reserved(name string) bool {
	switch http.CanonicalHeaderKey(name) {
	case "Content-Type", "Content-Length", "Content-Encoding", "Transfer-Encoding", "Host",
		"Connection", "User-Agent", "Idempotency-Key", "Webhook-Id", "Webhook-Timestamp",
		"Webhook-Signature":
		return true
	}
	return false
}

// withDefaults returns e with its zero fields set to the defaults, or an error naming the field
// that is invalid. Errors never quote the URL or a header value.
func (e Endpoint) withDefaults() (Endpoint, error) {
	if e.Name == "" {
		return e, errors.New("webhook endpoint without a name")
	}
	fail := func(format string, args ...any) (Endpoint, error) {
		return e, fmt.Errorf("webhook %q: %s", e.Name, fmt.Sprintf(format, args...))
	}
	u, err := url.Parse(e.URL)
	if err != nil {
		return fail("url does not parse") // url.Error would quote the URL
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fail("url scheme must be http or https")
	}
	if u.Host == "" {
		return fail("url has no host")
	}
	if len(e.Secrets) == 0 && !e.Unsigned {
		return fail("no secret")
	}
	for i, s := range e.Secrets {
		if len(s) < minSecretBytes || len(s) > maxSecretBytes {
			return fail("secret %d is %d bytes, want %d to %d", i+1, len(s), minSecretBytes, maxSecretBytes)
		}
	}
	for _, h := range e.Headers {
		if !validFieldName(h.Name) {
			return fail("header name %q is not a valid field name", h.Name)
		}
		if !validFieldValue(h.Value) {
			return fail("value of header %s holds a control character", h.Name)
		}
		if reserved(h.Name) {
			return fail("header %s is set by mailhook and cannot be configured", h.Name)
		}
	}
	switch {
	case e.Timeout == 0:
		e.Timeout = DefaultTimeout
	case e.Timeout < 0 || e.Timeout > MaxTimeout:
		return fail("timeout %v outside (0, %v]", e.Timeout, MaxTimeout)
	}
	switch {
	case e.Concurrency == 0:
		e.Concurrency = DefaultConcurrency
	case e.Concurrency < 0:
		return fail("concurrency %d is negative", e.Concurrency)
	}
	switch {
	case e.MaxResponseBytes == 0:
		e.MaxResponseBytes = DefaultMaxResponseBytes
	case e.MaxResponseBytes < 0:
		return fail("max response bytes %d is negative", e.MaxResponseBytes)
	}
	switch {
	case e.ContentType == "":
		e.ContentType = payload.ContentTypeJSON
	case !validFieldValue(e.ContentType):
		return fail("content type holds a control character")
	}
	switch {
	case e.DisableAfter == 0:
		e.DisableAfter = DefaultDisableAfter
	case e.DisableAfter < 0:
		return fail("disable_after %v is negative", e.DisableAfter)
	}
	if e.Retry, err = retryDefaults(e.Retry); err != nil {
		return fail("%v", err)
	}
	return e, nil
}

// retryDefaults returns p with its zero fields set to the webhook defaults, or an error when it
// cannot work.
func retryDefaults(p outbox.RetryPolicy) (outbox.RetryPolicy, error) {
	p = p.WithDefaults(outbox.RetryPolicy{MaxAge: DefaultMaxAge, MinBackoff: DefaultMinBackoff, MaxBackoff: DefaultMaxBackoff})
	return p, p.Check()
}

// retryable reports whether an HTTP status may succeed if the same request is sent later: 408
// Request Timeout, 425 Too Early, 429 Too Many Requests and every 5xx (RFC 9110 §15.5.9, §15.6;
// RFC 8470 §5.2; RFC 6585 §4).
func retryable(status int) bool {
	switch {
	case status == http.StatusRequestTimeout, status == http.StatusTooEarly,
		status == http.StatusTooManyRequests:
		return true
	case status >= 500 && status <= 599:
		return true
	}
	return false
}

// parseRetryAfter reads a Retry-After value (RFC 9110 §10.2.3): delay-seconds or an HTTP-date,
// relative to now. A missing, malformed or past value gives 0.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := parseDigits(v); err == nil {
		if n > int64(math.MaxInt64/int64(time.Second)) {
			return time.Duration(math.MaxInt64)
		}
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// parseDigits parses a non-empty run of ASCII digits, saturating instead of overflowing.
func parseDigits(s string) (int64, error) {
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, errors.New("not a number")
		}
		if n > (math.MaxInt64-9)/10 {
			return math.MaxInt64, nil
		}
		n = n*10 + int64(c-'0')
	}
	return n, nil
}

// validFieldName reports whether s is a token (RFC 9110 §5.6.2), as a field name must be (§5.1).
func validFieldName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// validFieldValue reports whether s holds no control character other than HTAB (RFC 9110 §5.5),
// so it cannot split the header section.
func validFieldValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}
