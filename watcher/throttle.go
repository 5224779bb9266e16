package watcher

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/mailhook/mailhook/message"
)

// DefaultMaxMessageSize is Config.MaxMessageSize when zero: 25 MB (10⁶ bytes per MB), Gmail's
// own limit for a received message.
const DefaultMaxMessageSize = 25_000_000

// DefaultThrottleCheck is Config.ThrottleCheck when zero.
const DefaultThrottleCheck = time.Minute

// Cost estimates for reservations. What a FETCH reads is known before it is sent except for the
// first pass: the header section is bounded by its partial fetch (Limits.HeaderBytes), but the
// BODYSTRUCTURE is not, so the first pass reserves structureAllowance for it. Each message's
// FETCH response adds fetchOverhead of syntax (UID, FLAGS, RFC822.SIZE, INTERNALDATE, literal
// markers), each body section sectionOverhead, and each command its tagged completion.
const (
	structureAllowance = 8 << 10
	fetchOverhead      = 512
	sectionOverhead    = 64
)

// DefectTooLarge marks a message whose RFC822.SIZE exceeds Config.MaxMessageSize: it was never
// fetched in full and is delivered with Truncated set.
const DefectTooLarge = "too_large"

// errLiteralTooLarge: the server announced a literal larger than the command asked for or than
// MaxMessageSize. The connection is closed rather than the literal read.
var errLiteralTooLarge = errors.New("server literal larger than requested")

// firstPassCost is the most a first-pass FETCH of n messages is expected to read.
func (w *Watcher) firstPassCost(n int) int64 {
	return int64(n) * (int64(w.cfg.Limits.HeaderBytes) + structureAllowance + fetchOverhead)
}

// admitFirstPass reserves the budget for a first pass over up to n messages and returns how many
// may be fetched now, shrinking the batch to what the budget allows. 0 means throttled:
// s.throttle says until when.
func (s *session) admitFirstPass(ctx context.Context, n int) (int, error) {
	return s.admitPrefix(ctx, n, s.w.firstPassCost)
}

// admitParts reserves, in one hold, the second pass of the longest prefix of plans that the
// budget grants now, and returns its length (0: throttled, s.throttle says until when).
func (s *session) admitParts(ctx context.Context, plans []partsPlan) (int, error) {
	return s.admitPrefix(ctx, len(plans), func(n int) int64 {
		var c int64
		for _, pp := range plans[:n] {
			c += pp.cost
		}
		return c
	})
}

// admitPrefix reserves cost(k) for the largest k ≤ n that the budget grants now, in one hold,
// and returns k. Only a single item waits for the window: 0 means throttled (s.throttle says
// until when).
func (s *session) admitPrefix(ctx context.Context, n int, cost func(int) int64) (int, error) {
	w := s.w
	if w.cfg.Budget == nil || n == 0 || cost(n) == 0 {
		return n, nil
	}
	for {
		h, th, err := w.cfg.Budget.Reserve(ctx, cost(n), w.fence)
		if err != nil {
			return 0, err
		}
		if h != nil {
			s.hold.Store(h)
			w.resumed()
			return n, nil
		}
		if n > 1 { // shrink to what fits now
			m := n - 1
			for m > 1 && cost(m) > th.Available {
				m--
			}
			n = m
			continue
		}
		if th.Busy {
			if err := s.pause(ctx); err != nil {
				return 0, err
			}
			continue
		}
		s.throttle = th
		return 0, nil
	}
}

// admit reserves cost bytes for one FETCH; false means throttled (s.throttle says until when).
func (s *session) admit(ctx context.Context, cost int64) (bool, error) {
	w := s.w
	if w.cfg.Budget == nil {
		return true, nil
	}
	for {
		h, th, err := w.cfg.Budget.Reserve(ctx, cost, w.fence)
		if err != nil {
			return false, err
		}
		if h != nil {
			s.hold.Store(h)
			w.resumed()
			return true, nil
		}
		if !th.Busy {
			s.throttle = th
			return false, nil
		}
		if err := s.pause(ctx); err != nil {
			return false, err
		}
	}
}

// endFetch releases the reservation of the FETCH that just ended.
func (s *session) endFetch() {
	if h := s.hold.Swap(nil); h != nil {
		h.Release()
	}
}

// pause waits a moment (real time: busyRetry, or ThrottleCheck when shorter) while other
// mailboxes' fetches in flight hold the rest of the budget; their reservations end with them.
func (s *session) pause(ctx context.Context) error {
	s.dog.set(dogOff)
	t := time.NewTimer(min(busyRetry, s.w.cfg.ThrottleCheck))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-s.c.Closed():
		return errors.New("connection closed while waiting for the download budget")
	case <-t.C:
		return nil
	}
}

// waitBudget pauses the account's fetching for this mailbox until the window allows the refused
// fetch: the session stays connected, sending a NOOP every IdleRefresh so the
// server does not log it out (RFC 3501 §5.4), and reads nothing else. The checkpoint stays where
// the last committed message left it, so nothing is skipped. Logged once per pause.
func (s *session) waitBudget(ctx context.Context) error {
	w := s.w
	th := s.throttle
	s.throttle = Throttle{}
	now := time.Now()
	w.mu.Lock()
	logIt := !w.throttled
	w.throttled = true
	if w.status.State != StateThrottled {
		w.status.State, w.status.Since = StateThrottled, now
	}
	w.status.ThrottledUntil, w.status.Reason = th.Until, th.Reason
	w.mu.Unlock()
	if logIt {
		w.log.Warn("download budget exhausted; pausing after the current message",
			"until", th.Until.Format(time.RFC3339), "reason", th.Reason)
	}
	s.dog.set(dogOff)
	lastCmd := time.Now()
	for {
		d := th.Until.Sub(w.cfg.Now())
		if d <= 0 {
			return nil
		}
		keepalive := w.cfg.IdleRefresh - time.Since(lastCmd)
		t := time.NewTimer(max(0, min(d, w.cfg.ThrottleCheck, keepalive)))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-s.c.Closed():
			t.Stop()
			return errors.New("connection closed while throttled")
		case <-t.C:
		}
		if time.Since(lastCmd) >= w.cfg.IdleRefresh {
			s.begin()
			if err := s.c.Noop().Wait(); err != nil {
				return fmt.Errorf("noop while throttled: %w", err)
			}
			s.dog.set(dogOff)
			lastCmd = time.Now()
		}
	}
}

// resumed clears the throttle status once a reservation is granted again.
func (w *Watcher) resumed() {
	w.mu.Lock()
	was := w.throttled
	w.throttled = false
	if was {
		w.status.ThrottledUntil = time.Time{}
		w.status.Reason = ""
	}
	w.mu.Unlock()
	if was {
		w.log.Info("download budget allows fetching again; resuming")
	}
}

// partsCost is what a second-pass FETCH of sections reads at most.
func partsCost(items []*imap.FetchItemBodySection, sizes map[string]int64) int64 {
	cost := int64(fetchOverhead)
	for _, it := range items {
		n := sizes[sectionName(it.Part)]
		if it.Partial != nil && (n == 0 || it.Partial.Size < n) {
			n = it.Partial.Size
		}
		cost += n + sectionOverhead
	}
	return cost
}

// markTooLarge records that a message above MaxMessageSize was not fetched in full.
func (w *Watcher) markTooLarge(m *message.Message, size int64) {
	if size <= w.cfg.MaxMessageSize {
		return
	}
	m.Truncated = true
	if !slices.Contains(m.Defects, DefectTooLarge) {
		m.Defects = append(m.Defects, DefectTooLarge)
		slices.Sort(m.Defects)
	}
}

// oversized is called by the response sniffer, on the reader goroutine, when the server announces
// a literal larger than MaxMessageSize: the connection is closed before the library reads (and
// buffers) it, and the session ends with an error saying why.
func (s *session) oversized(n int64) {
	if s.oversize.CompareAndSwap(0, n) {
		s.conn.Close()
	}
}

// oversizeErr wraps a session error with the oversized literal that caused it, if any.
func (s *session) oversizeErr(err error) error {
	if n := s.oversize.Load(); n > 0 {
		return fmt.Errorf("server announced a %d-byte literal, more than max_message_size %d; connection dropped: %w: %w",
			n, s.w.cfg.MaxMessageSize, errLiteralTooLarge, err)
	}
	return err
}
