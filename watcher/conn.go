package watcher

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/mailhook/mailhook/internal/localhost"
)

// countingConn reports every successful read to onRead: the byte budget and the watchdog both
// need to know what arrived and when. Deadlines and Close pass through to the wrapped conn.
type countingConn struct {
	net.Conn
	onRead func(n int, at time.Time)
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.onRead(n, time.Now())
	}
	return n, err
}

// dialTCP dials with TCP keepalive probes after 30 s of silence, every 15 s, 4 times: a dead
// peer behind a NAT is noticed within about 90 s and middleboxes that drop idle flows after
// 4–6 minutes see traffic (keepalive idle at most 60 s).
func dialTCP(ctx context.Context, network, addr string) (net.Conn, error) {
	d := net.Dialer{
		Timeout: 30 * time.Second,
		KeepAliveConfig: net.KeepAliveConfig{
			Enable:   true,
			Idle:     30 * time.Second,
			Interval: 15 * time.Second,
			Count:    4,
		},
	}
	return localhost.Dial(d.DialContext)(ctx, network, addr) // a localhost name never goes to DNS
}

// Watchdog modes.
const (
	dogOff      = iota // nothing outstanding (handler running, waiting to poll)
	dogCommand         // a command was sent: the server owes us bytes within CommandTimeout
	dogIdle            // IDLE: bytes are optional, but silence beyond the idle limit means a dead link
	dogIdleDone        // DONE sent: the idle limit from the last read, or CommandTimeout from DONE, whichever ends first
)

// minRhythm is the shortest gap between reads that may count as a server keepalive; shorter
// gaps are bursts (several untagged responses in a row).
const minRhythm = 10 * time.Second

// watchdog closes a connection that stays silent too long. go-imap has no read deadline while
// it waits for a response, so a half-open TCP connection would otherwise hang a command or an
// IDLE forever (LIBRARIES.md). While idling it learns the server's keepalive rhythm (Dovecot
// sends "* OK Still here" every 2 minutes): after two consecutive gaps between reads agree within
// 20 %, the idle limit becomes that gap plus the slack, when that is tighter than IdleRefresh plus
// the slack.
type watchdog struct {
	cmdTimeout  time.Duration
	idleRefresh time.Duration
	slack       time.Duration

	mu       sync.Mutex
	mode     int
	since    time.Time // when the current mode was entered (command sent, IDLE acknowledged)
	doneAt   time.Time // when DONE was sent (dogIdleDone)
	lastRead time.Time
	idleLast time.Time     // previous read (or IDLE start) in the current IDLE
	prevGap  time.Duration // previous gap in IDLE, 0 when none
	rhythm   time.Duration // learned keepalive period, 0 when unknown
	fired    string        // why the watchdog closed the connection
	close    func()
}

func newWatchdog(cfg *Config, closeConn func()) *watchdog {
	return &watchdog{
		cmdTimeout:  cfg.CommandTimeout,
		idleRefresh: cfg.IdleRefresh,
		slack:       cfg.WatchdogSlack,
		close:       closeConn,
	}
}

// set enters a mode; the silence clock restarts now.
func (d *watchdog) set(mode int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	d.mode, d.since = mode, now
	if mode == dogIdle {
		d.idleLast = now
	}
}

// endIdle marks that DONE is being sent. The idle silence clock keeps running from the last
// read in IDLE, so a blackholed connection is closed at most IdleRefresh plus the slack after its
// last byte; and DONE is a command the server must answer, so an unanswered
// DONE also fails after CommandTimeout, whichever comes first.
func (d *watchdog) endIdle() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.mode == dogIdle {
		d.mode, d.doneAt = dogIdleDone, time.Now()
	}
}

// read records that bytes arrived at t.
func (d *watchdog) read(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.lastRead = t
	if d.mode != dogIdle {
		return
	}
	gap := t.Sub(d.idleLast)
	d.idleLast = t
	if gap < minRhythm {
		return
	}
	if d.prevGap > 0 && similar(gap, d.prevGap) {
		if r := max(gap, d.prevGap); r > d.rhythm {
			d.rhythm = r
		}
	}
	d.prevGap = gap
}

func similar(a, b time.Duration) bool {
	diff := a - b
	if diff < 0 {
		diff = -diff
	}
	return diff*5 <= max(a, b)
}

// idleLimit is the longest silence tolerated in IDLE. Caller holds mu.
func (d *watchdog) idleLimit() time.Duration {
	limit := d.idleRefresh + d.slack
	if d.rhythm > 0 && d.rhythm+d.slack < limit {
		limit = d.rhythm + d.slack
	}
	return limit
}

// check returns why the connection must be closed at now, or "".
func (d *watchdog) check(now time.Time) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	ref := d.since
	if d.lastRead.After(ref) {
		ref = d.lastRead
	}
	silent := now.Sub(ref)
	switch d.mode {
	case dogCommand:
		if silent > d.cmdTimeout {
			return fmt.Sprintf("no response for %v", silent.Round(time.Millisecond))
		}
	case dogIdle, dogIdleDone:
		if limit := d.idleLimit(); silent > limit {
			return fmt.Sprintf("idle connection silent for %v (limit %v)", silent.Round(time.Millisecond), limit)
		}
		if d.mode == dogIdleDone && !d.lastRead.After(d.doneAt) && now.Sub(d.doneAt) > d.cmdTimeout {
			return fmt.Sprintf("no response to DONE for %v", now.Sub(d.doneAt).Round(time.Millisecond))
		}
	}
	return ""
}

// reason returns why the watchdog fired, or "".
func (d *watchdog) reason() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.fired
}

// start runs the watchdog until the returned stop function is called or it fires.
func (d *watchdog) start() (stop func()) {
	tick := min(d.cmdTimeout, d.idleRefresh+d.slack) / 10
	tick = max(min(tick, time.Second), 5*time.Millisecond)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(tick)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				if why := d.check(now); why != "" {
					d.mu.Lock()
					d.fired = why
					d.mu.Unlock()
					d.close()
					return
				}
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
	}
}
