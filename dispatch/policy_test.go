package dispatch

import (
	"math/rand/v2"
	"net/http"
	"testing"
	"time"
)

// D76: with the default policy a failing job is retried over MaxAge (72h, so at least 24h), with
// every wait inside [MinBackoff, MaxBackoff], and dead-lettered only after the last attempt at
// MaxAge.
func TestDefaultScheduleSpansMaxAge(t *testing.T) {
	p, err := RetryPolicy{}.withDefaults()
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
		at, ok := p.next(created, now, attempts, 0, rng.Float64())
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

func TestRetryPolicyNext(t *testing.T) {
	p := RetryPolicy{MaxAge: 72 * time.Hour, MinBackoff: 5 * time.Second, MaxBackoff: time.Hour}
	created := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name       string
		age        time.Duration
		attempts   int
		retryAfter time.Duration
		rnd        float64
		want       time.Duration // from now; -1 means dead
	}{
		{"first, no jitter", 0, 0, 0, 0, 5 * time.Second},
		{"first, full jitter", 0, 0, 0, 0.999, 5 * time.Second},
		{"fourth, half jitter", time.Minute, 3, 0, 0.5, 5*time.Second + 17500*time.Millisecond},
		{"capped at max", time.Hour, 40, 0, 0.5, 5*time.Second + (time.Hour-5*time.Second)/2},
		{"huge attempt count", time.Hour, 1 << 30, 0, 0, 5 * time.Second},
		{"retry-after wins", 0, 0, 2 * time.Minute, 0.5, 2 * time.Minute},
		{"retry-after capped", 0, 0, 5 * time.Hour, 0, time.Hour},
		{"clamped to max age", 72*time.Hour - time.Minute, 10, 0, 0.9, time.Minute},
		{"at max age", 72 * time.Hour, 10, 0, 0, -1},
		{"past max age", 100 * time.Hour, 10, 0, 0, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := created.Add(tc.age)
			at, ok := p.next(created, now, tc.attempts, tc.retryAfter, tc.rnd)
			switch {
			case tc.want < 0 && ok:
				t.Errorf("retry at +%v, want dead", at.Sub(now))
			case tc.want >= 0 && !ok:
				t.Errorf("dead, want retry at +%v", tc.want)
			case ok && at.Sub(now) != tc.want:
				t.Errorf("retry at +%v, want +%v", at.Sub(now), tc.want)
			}
		})
	}
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
