package outbox

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// RetryPolicy is a durable retry schedule. A failed attempt that may succeed later is retried
// after an exponential backoff with full jitter: after the n-th failed attempt (n from 0), a
// uniformly random delay between MinBackoff and min(MaxBackoff, MinBackoff·2ⁿ), and never sooner
// than the response's Retry-After (itself capped at MaxBackoff). A job still failing MaxAge after
// it was created is dead-lettered; its last attempt is made at MaxAge, so a job is tried for at
// least MaxAge. Each kind of job has its own defaults, which its worker fills in.
type RetryPolicy struct {
	MaxAge     time.Duration
	MinBackoff time.Duration
	MaxBackoff time.Duration
}

// WithDefaults returns p with each zero field taken from def.
func (p RetryPolicy) WithDefaults(def RetryPolicy) RetryPolicy {
	if p.MaxAge == 0 {
		p.MaxAge = def.MaxAge
	}
	if p.MinBackoff == 0 {
		p.MinBackoff = def.MinBackoff
	}
	if p.MaxBackoff == 0 {
		p.MaxBackoff = def.MaxBackoff
	}
	return p
}

// Check reports a policy that cannot work: a negative duration, or MinBackoff above MaxBackoff.
func (p RetryPolicy) Check() error {
	switch {
	case p.MaxAge < 0 || p.MinBackoff < 0 || p.MaxBackoff < 0:
		return errors.New("retry durations must not be negative")
	case p.MinBackoff > p.MaxBackoff:
		return fmt.Errorf("retry min_backoff %v exceeds max_backoff %v", p.MinBackoff, p.MaxBackoff)
	}
	return nil
}

// Next returns when to try a job again after its attempt number n (counting from 0) failed at now
// in a way that may succeed later, or ok=false when the job must be dead-lettered because it has
// been tried for MaxAge. retryAfter is the response's Retry-After (0 if none); rnd is a uniform
// random number in [0, 1).
func (p RetryPolicy) Next(created, now time.Time, n int, retryAfter time.Duration, rnd float64) (time.Time, bool) {
	deadline := created.Add(p.MaxAge)
	if !now.Before(deadline) {
		return time.Time{}, false
	}
	ceiling := p.MaxBackoff
	if n < 62 {
		if c := float64(p.MinBackoff) * math.Pow(2, float64(n)); c < float64(ceiling) {
			ceiling = time.Duration(c)
		}
	}
	delay := p.MinBackoff + time.Duration(rnd*float64(ceiling-p.MinBackoff))
	if retryAfter = min(retryAfter, p.MaxBackoff); delay < retryAfter {
		delay = retryAfter
	}
	at := now.Add(delay)
	if at.After(deadline) {
		at = deadline
	}
	return at, true
}
