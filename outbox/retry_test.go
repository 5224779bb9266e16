package outbox

import (
	"testing"
	"time"
)

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
			at, ok := p.Next(created, now, tc.attempts, tc.retryAfter, tc.rnd)
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

func TestRetryPolicyCheck(t *testing.T) {
	for _, tc := range []struct {
		p  RetryPolicy
		ok bool
	}{
		{RetryPolicy{MaxAge: time.Hour, MinBackoff: time.Second, MaxBackoff: time.Minute}, true},
		{RetryPolicy{MaxAge: time.Hour, MinBackoff: time.Minute, MaxBackoff: time.Minute}, true},
		{RetryPolicy{MaxAge: -time.Hour, MinBackoff: time.Second, MaxBackoff: time.Minute}, false},
		{RetryPolicy{MaxAge: time.Hour, MinBackoff: time.Hour, MaxBackoff: time.Minute}, false},
	} {
		if err := tc.p.Check(); (err == nil) != tc.ok {
			t.Errorf("%+v: Check = %v, want ok %v", tc.p, err, tc.ok)
		}
	}
}

func TestRetryPolicyWithDefaults(t *testing.T) {
	def := RetryPolicy{MaxAge: 72 * time.Hour, MinBackoff: time.Minute, MaxBackoff: time.Hour}
	if got := (RetryPolicy{}).WithDefaults(def); got != def {
		t.Errorf("zero policy with defaults = %+v, want %+v", got, def)
	}
	set := RetryPolicy{MaxAge: time.Hour, MinBackoff: time.Second}
	if got, want := set.WithDefaults(def), (RetryPolicy{MaxAge: time.Hour, MinBackoff: time.Second, MaxBackoff: time.Hour}); got != want {
		t.Errorf("with defaults = %+v, want %+v", got, want)
	}
}
