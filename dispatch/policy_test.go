package dispatch

import (
	"math/rand/v2"
	"net/http"
	"testing"
	"time"

	"github.com/mailhook/mailhook/outbox"
)

// With the default policy a failing job is retried over MaxAge (72h, so at least 24h), with
// every wait inside [MinBackoff, MaxBackoff], and dead-lettered only after the last attempt at
// MaxAge.
func TestDefaultScheduleSpansMaxAge(t *testing.T) {
	p, err := retryDefaults(outbox.RetryPolicy{})
	if err != nil {
		t.Fatal(err)
	}
	if p.MaxAge < 24*time.Hour {
		t.Fatalf("default max age %v under 24h", p.MaxAge)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	created := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	now, attempts, grew := created, 0, false
	var prev time.Duration
	for {
		at, ok := p.Next(created, now, attempts, 0, rng.Float64())
		if !ok {
			break
		}
		delay := at.Sub(now)
		if at != created.Add(p.MaxAge) && (delay < p.MinBackoff || delay > p.MaxBackoff) {
			t.Fatalf("attempt %d: wait %v outside [%v, %v]", attempts, delay, p.MinBackoff, p.MaxBackoff)
		}
		if delay > 4*prev && prev > 0 {
			grew = true
		}
		prev = delay
		now, attempts = at, attempts+1
		if attempts > 10000 {
			t.Fatal("no end to retries")
		}
	}
	if got := now.Sub(created); got != p.MaxAge {
		t.Errorf("last attempt %v after creation, want %v", got, p.MaxAge)
	}
	if !grew || attempts > 200 {
		t.Errorf("%d attempts: the schedule does not look exponential", attempts)
	}
	t.Logf("%d attempts over %v", attempts, now.Sub(created))
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"":    0,
		"0":   0,
		"120": 120 * time.Second,
		" 7 ": 7 * time.Second,
		"-5":  0,
		"1.5": 0,
		"abc": 0,
		now.Add(90 * time.Second).Format(http.TimeFormat):  90 * time.Second,
		now.Add(-90 * time.Second).Format(http.TimeFormat): 0,
		"Thursday, 26-Nov-26 10:01:00 GMT":                 time.Minute, // RFC 850, obsolete but allowed
		"99999999999999999999999":                          1<<63 - 1,
	} {
		if got := parseRetryAfter(in, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestRetryable(t *testing.T) {
	for status := 100; status < 600; status++ {
		want := status == 408 || status == 425 || status == 429 || status >= 500
		if got := retryable(status); got != want {
			t.Errorf("retryable(%d) = %v", status, got)
		}
	}
}
