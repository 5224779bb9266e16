package watcher

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

func TestBackoffDelay(t *testing.T) {
	b := Backoff{Min: time.Second, Max: 5 * time.Minute, AuthMin: time.Minute, QuotaMin: time.Hour}
	top := func(n int64) int64 { return n - 1 } // the largest value rand may return
	zero := func(int64) int64 { return 0 }
	tests := []struct {
		name string
		n    int
		kind errKind
		rnd  func(int64) int64
		want time.Duration
	}{
		{"first attempt at most min", 0, errOther, top, time.Second},
		{"doubles", 3, errOther, top, 8 * time.Second},
		{"capped", 12, errOther, top, 5 * time.Minute},
		{"huge attempt capped without overflow", 1000, errOther, top, 5 * time.Minute},
		{"full jitter reaches zero", 5, errOther, zero, 0},
		{"auth floor", 0, errAuth, zero, time.Minute},
		{"auth above floor keeps jitter", 12, errAuth, top, 5 * time.Minute},
		{"quota floor beyond max", 12, errQuota, top, time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := b.delay(tt.n, tt.kind, tt.rnd); got != tt.want {
				t.Errorf("delay(%d, %v) = %v, want %v", tt.n, tt.kind, got, tt.want)
			}
		})
	}
}

// TestBackoffNeverExceedsCap: ordinary reconnect delays stay within [0, Max].
func TestBackoffNeverExceedsCap(t *testing.T) {
	b := Backoff{Min: time.Second, Max: 5 * time.Minute, AuthMin: time.Minute, QuotaMin: time.Hour}
	r := rand.New(rand.NewPCG(1, 2))
	for n := range 200 {
		for range 50 {
			d := b.delay(n, errOther, r.Int64N)
			if d < 0 || d > b.Max {
				t.Fatalf("delay(%d) = %v, outside [0, %v]", n, d, b.Max)
			}
			if a := b.delay(n, errAuth, r.Int64N); a < b.AuthMin {
				t.Fatalf("auth delay(%d) = %v, below %v", n, a, b.AuthMin)
			}
		}
	}
}

func TestClassify(t *testing.T) {
	ierr := func(code imap.ResponseCode, text string) error {
		return fmt.Errorf("login as %q: %w", "u", &imap.Error{Type: imap.StatusResponseTypeNo, Code: code, Text: text})
	}
	tests := []struct {
		name      string
		err       error
		want      errKind
		wantAlert string
	}{
		{"network", io.ErrUnexpectedEOF, errOther, ""},
		{"plain no", ierr("", "mailbox busy"), errOther, ""},
		{"auth failed", ierr(imap.ResponseCodeAuthenticationFailed, "Authentication failed."), errAuth, ""},
		{"alert", ierr(imap.ResponseCodeAlert, "Too many simultaneous connections. (Failure)"), errAuth,
			"Too many simultaneous connections. (Failure)"},
		{"gmail bandwidth alert", ierr(imap.ResponseCodeAlert, "Account exceeded command or bandwidth limits. (Failure)"),
			errQuota, "Account exceeded command or bandwidth limits. (Failure)"},
		{"overquota", ierr(imap.ResponseCodeOverQuota, "Quota exceeded"), errQuota, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := classify(tt.err); got != tt.want {
				t.Errorf("classify = %v, want %v", got, tt.want)
			}
			text, ok := alertText(tt.err)
			if ok != (tt.wantAlert != "") || text != tt.wantAlert {
				t.Errorf("alertText = %q, %v; want %q", text, ok, tt.wantAlert)
			}
		})
	}
	if classify(errors.New("x")) != errOther {
		t.Error("plain error not errOther")
	}
}

func TestWatchdogLimits(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	newDog := func() *watchdog {
		return &watchdog{cmdTimeout: 2 * time.Minute, idleRefresh: 10 * time.Minute, slack: time.Minute, close: func() {}}
	}

	t.Run("command timeout from send, reset by reads", func(t *testing.T) {
		d := newDog()
		d.mode, d.since = dogCommand, t0
		if why := d.check(t0.Add(119 * time.Second)); why != "" {
			t.Fatalf("fired early: %s", why)
		}
		d.read(t0.Add(100 * time.Second))
		if why := d.check(t0.Add(200 * time.Second)); why != "" {
			t.Fatalf("fired despite a read 100s ago: %s", why)
		}
		if why := d.check(t0.Add(221 * time.Second)); why == "" {
			t.Fatal("did not fire after 121s of silence")
		}
	})

	t.Run("off never fires", func(t *testing.T) {
		d := newDog()
		d.mode, d.since = dogOff, t0
		if why := d.check(t0.Add(24 * time.Hour)); why != "" {
			t.Fatalf("fired while off: %s", why)
		}
	})

	t.Run("idle without rhythm uses refresh plus slack", func(t *testing.T) {
		d := newDog()
		d.mode, d.since, d.idleLast = dogIdle, t0, t0
		if why := d.check(t0.Add(10*time.Minute + 59*time.Second)); why != "" {
			t.Fatalf("fired early: %s", why)
		}
		if why := d.check(t0.Add(11*time.Minute + time.Second)); why == "" {
			t.Fatal("did not fire after refresh+slack")
		}
	})

	t.Run("idle learns a keepalive rhythm", func(t *testing.T) {
		d := newDog()
		d.mode, d.since, d.idleLast = dogIdle, t0, t0
		// Dovecot: "* OK Still here" every 2 minutes; a burst of reads in between is ignored.
		d.read(t0.Add(2 * time.Minute))
		d.read(t0.Add(2*time.Minute + 10*time.Millisecond))
		if d.rhythm != 0 {
			t.Fatalf("learned %v from one gap", d.rhythm)
		}
		d.read(t0.Add(4*time.Minute + 2*time.Second))
		if d.rhythm != 2*time.Minute+2*time.Second-10*time.Millisecond {
			t.Fatalf("rhythm = %v, want about 2m", d.rhythm)
		}
		last := t0.Add(4*time.Minute + 2*time.Second)
		if why := d.check(last.Add(3 * time.Minute)); why != "" {
			t.Fatalf("fired within rhythm+slack: %s", why)
		}
		if why := d.check(last.Add(3*time.Minute + 3*time.Second)); why == "" {
			t.Fatal("did not fire after rhythm+slack of silence")
		}
	})

	t.Run("unanswered DONE fails after the command timeout", func(t *testing.T) {
		d := newDog()
		d.mode, d.since, d.idleLast = dogIdle, t0, t0
		d.read(t0.Add(5 * time.Minute))
		d.mode, d.doneAt = dogIdleDone, t0.Add(6*time.Minute) // as endIdle does
		if why := d.check(t0.Add(7*time.Minute + 59*time.Second)); why != "" {
			t.Fatalf("fired before the command timeout: %s", why)
		}
		if why := d.check(t0.Add(8*time.Minute + time.Second)); why == "" {
			t.Fatal("an unanswered DONE did not fire after the command timeout")
		}
		d.read(t0.Add(8 * time.Minute)) // the server answered after all
		if why := d.check(t0.Add(9 * time.Minute)); why != "" {
			t.Fatalf("fired although DONE was answered: %s", why)
		}
	})

	t.Run("irregular pushes teach nothing", func(t *testing.T) {
		d := newDog()
		d.mode, d.since, d.idleLast = dogIdle, t0, t0
		at := t0
		for _, gap := range []time.Duration{30 * time.Second, 90 * time.Second, 20 * time.Second, 4 * time.Minute} {
			at = at.Add(gap)
			d.read(at)
		}
		if d.rhythm != 0 {
			t.Fatalf("learned %v from irregular gaps", d.rhythm)
		}
	})
}

func TestSections(t *testing.T) {
	for _, sec := range []string{"1", "1.2", "2.10.3"} {
		part, specifier, ok := parseSection(sec)
		if !ok || specifier != "" || sectionName(part) != sec {
			t.Errorf("round trip %q: %v %v", sec, part, ok)
		}
	}
	if part, specifier, ok := parseSection("3.2.HEADER"); !ok || specifier != imap.PartSpecifierHeader || sectionName(part) != "3.2" {
		t.Errorf("3.2.HEADER: %v %q %v", part, specifier, ok)
	}
	for _, bad := range []string{"", "0", "1.", "a", "1.TEXT", "HEADER", ".HEADER"} {
		if _, _, ok := parseSection(bad); ok {
			t.Errorf("parseSection(%q) accepted", bad)
		}
	}
}
