package watcher_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailhook/mailhook/internal/testmail"
	"github.com/mailhook/mailhook/watcher"
)

// testClock is a settable clock shared by a Budget and a Watcher.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// TestBudgetRunsOutMidStream: with a budget that runs out part-way through 20
// messages, fetching stops before the budget is exceeded, after a whole message (nothing is
// skipped, the checkpoint stays on the last committed one), the watcher reports throttled with a
// time and a reason and logs it once; when the window moves on, every message is delivered once,
// in order.
func TestBudgetRunsOutMidStream(t *testing.T) {
	srv := testmail.StartMemServer(t, testmail.MemOptions{})
	uids := appendN(t, srv, 0, 20)
	clk := &testClock{t: time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)}
	const limit = 30_000
	budget, err := watcher.NewBudget(context.Background(), "acct", limit, nil,
		watcher.BudgetOptions{Now: clk.Now, Headroom: 1000})
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	st, rec := newFakeState(), newRecorder()
	cfg := baseConfig(srv.Addr(), srv.User(), srv.Password(), logs)
	cfg.Start = watcher.StartAll
	cfg.Plan = watcher.Plan{Text: true, HTML: true}
	cfg.Limits.HeaderBytes = 8 << 10
	cfg.Budget, cfg.Now, cfg.ThrottleCheck = budget, clk.Now, 5*time.Millisecond
	w := mustNew(t, cfg, st, rec)
	runWatcher(t, w, logs)

	waitState(t, w, watcher.StateThrottled)
	status := w.Status()
	got := rec.uids()
	if len(got) == 0 || len(got) >= len(uids) || !slices.Equal(got, uids[:len(got)]) {
		t.Fatalf("handled %v before the pause; want a non-empty proper prefix of %v", got, uids)
	}
	if status.Budget.Used > limit {
		t.Errorf("used %d bytes of a %d-byte budget", status.Budget.Used, limit)
	}
	if status.BytesRead != status.Budget.Used {
		t.Errorf("budget charged %d bytes, connection read %d", status.Budget.Used, status.BytesRead)
	}
	if status.ThrottledUntil.IsZero() || !strings.Contains(status.Reason, "download budget") ||
		!status.ThrottledUntil.Equal(status.Budget.ThrottledUntil) {
		t.Errorf("throttled status: until %v, reason %q, budget %+v", status.ThrottledUntil, status.Reason, status.Budget)
	}
	if cp := st.committedUIDs(); !slices.Equal(cp, got) {
		t.Errorf("committed %v, handled %v", cp, got)
	}
	// Still paused while the clock stands still.
	time.Sleep(50 * time.Millisecond) // not synchronisation: gives a wrongly resumed watcher the chance to fetch
	if n := len(rec.uids()); n != len(got) || w.Status().State != watcher.StateThrottled {
		t.Fatalf("fetched while throttled: %d handled, state %s", n, w.Status().State)
	}

	// Each time the watcher pauses, move the window on by a day: the pauses end and every
	// message is delivered.
	pauses := 0
	eventually(t, "every message delivered", func() bool {
		if w.Status().State == watcher.StateThrottled {
			if n := len(rec.uids()); n == len(uids) {
				t.Fatal("throttled with nothing left to fetch")
			}
			handled := len(rec.uids())
			clk.Add(24*time.Hour + 2*time.Minute)
			pauses++
			// Resumed: it handled more, or it is running. It may fetch what the day allows and pause
			// again within one poll of this loop, so the running state alone can be missed.
			eventually(t, "resumed", func() bool {
				return len(rec.uids()) > handled || w.Status().State != watcher.StateThrottled
			})
		}
		return len(rec.uids()) == len(uids)
	})
	rec.waitUIDs(t, uids...)
	waitState(t, w, watcher.StateIdle)
	for uid, n := range rec.calls {
		if n != 1 {
			t.Errorf("uid %d handled %d times", uid, n)
		}
	}
	if st := w.Status(); !st.ThrottledUntil.IsZero() || st.Reason != "" {
		t.Errorf("after resuming: until %v, reason %q", st.ThrottledUntil, st.Reason)
	}
	if n := strings.Count(logs.String(), "download budget exhausted"); n != pauses {
		t.Errorf("%d pauses logged %d times, want once each", pauses, n)
	}
	if !strings.Contains(logs.String(), "resuming") {
		t.Error("resume not logged")
	}
	st.checkInvariants(t)
}

// TestBudgetSharedByMailboxes: two mailboxes of one account draw on one budget; together they
// never exceed it.
func TestBudgetSharedByMailboxes(t *testing.T) {
	srv := testmail.StartMemServer(t, testmail.MemOptions{Mailboxes: []string{"Work"}})
	appendN(t, srv, 0, 10)
	for i := range 10 {
		if _, err := srv.Append("Work", testmail.Sample(100+i, testmail.SampleOptions{})); err != nil {
			t.Fatal(err)
		}
	}
	clk := &testClock{t: time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)}
	const limit = 30_000
	budget, err := watcher.NewBudget(context.Background(), "acct", limit, nil,
		watcher.BudgetOptions{Now: clk.Now, Headroom: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var ws []*watcher.Watcher
	var recs []*recorder
	for _, mb := range []string{"INBOX", "Work"} {
		logs := &syncBuffer{}
		cfg := baseConfig(srv.Addr(), srv.User(), srv.Password(), logs)
		cfg.Mailbox, cfg.Start = mb, watcher.StartAll
		cfg.Plan = watcher.Plan{Text: true}
		cfg.Limits.HeaderBytes = 8 << 10
		cfg.Budget, cfg.Now, cfg.ThrottleCheck = budget, clk.Now, 5*time.Millisecond
		rec := newRecorder()
		w := mustNew(t, cfg, newFakeState(), rec)
		runWatcher(t, w, logs)
		ws, recs = append(ws, w), append(recs, rec)
	}
	// The budget stops the account: every watcher is throttled, except one that may have finished
	// its whole mailbox before the other drew the budget down (the two race for it).
	eventually(t, "the budget to stop the account", func() bool {
		throttled := 0
		for i, w := range ws {
			switch w.Status().State {
			case watcher.StateThrottled:
				throttled++
			case watcher.StateIdle:
				if len(recs[i].uids()) != 10 {
					return false
				}
			default:
				return false
			}
		}
		return throttled > 0
	})
	read := ws[0].Status().BytesRead + ws[1].Status().BytesRead
	if u := budget.Usage(); u.Used > limit || u.Used != read {
		t.Errorf("budget used %d of %d; the two connections read %d", u.Used, limit, read)
	}
	if n := len(recs[0].uids()) + len(recs[1].uids()); n == 0 || n >= 20 {
		t.Errorf("handled %d of 20 before the pause", n)
	}
	eventually(t, "all 20 messages", func() bool {
		if ws[0].Status().State == watcher.StateThrottled || ws[1].Status().State == watcher.StateThrottled {
			clk.Add(time.Hour) // the window moves on an hour at a time
		}
		return len(recs[0].uids())+len(recs[1].uids()) == 20
	})
}

// TestTooLargeMessageTruncated on Dovecot: a 40 MB message with a 25 MB cap is
// delivered with Truncated and the too_large defect, and only its header, structure and a
// capped text part are read.
func TestTooLargeMessageTruncated(t *testing.T) {
	srv := testmail.StartDovecot(t, testmail.DovecotOptions{})
	m := bigMessage(1, 40_000_000)
	uid, err := srv.Append("INBOX", m.raw)
	if err != nil {
		t.Fatal(err)
	}
	small := bigMessage(2, 1000)
	uid2, err := srv.Append("INBOX", small.raw)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	st, rec := newFakeState(), newRecorder()
	cfg := baseConfig(srv.Addr(), srv.User(), srv.Password(), logs)
	cfg.Start = watcher.StartAll
	cfg.Plan = watcher.Plan{Text: true, HTML: true}
	cfg.MaxMessageSize = 25_000_000
	w := mustNew(t, cfg, st, rec)
	runWatcher(t, w, logs)

	rec.waitUIDs(t, uid, uid2)
	rec.mu.Lock()
	big, ok := rec.events[0].Message, rec.events[1].Message
	rec.mu.Unlock()
	if !big.Truncated || !slices.Contains(big.Defects, watcher.DefectTooLarge) || big.Size != int64(len(m.raw)) ||
		!strings.Contains(big.Text, "scanned documents") || big.Subject == "" {
		t.Errorf("40 MB message: truncated %v, defects %v, size %d, subject %q, text %d bytes",
			big.Truncated, big.Defects, big.Size, big.Subject, len(big.Text))
	}
	if ok.Truncated || slices.Contains(ok.Defects, watcher.DefectTooLarge) {
		t.Errorf("small message: truncated %v, defects %v", ok.Truncated, ok.Defects)
	}
	if read := w.Status().BytesRead; read > 1<<20 {
		t.Errorf("read %d bytes for a %d-byte message", read, len(m.raw))
	}
}

// literalServer is a minimal IMAP server whose first-pass FETCH answer announces a literal of
// size bytes (in the header section, or in a BODYSTRUCTURE string), then sends chunk bytes of it
// and waits: a client that reads it all hangs or allocates, one that guards drops the connection.
func literalServer(t *testing.T, size int64, inStructure bool) (addr string, fetches func() int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	n := 0
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	serve := func(conn net.Conn) {
		defer conn.Close()
		r := bufio.NewReader(conn)
		send := func(s string) bool { _, err := conn.Write([]byte(s)); return err == nil }
		send("* OK [CAPABILITY IMAP4rev1 IDLE] literal server\r\n")
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			tag, rest, _ := strings.Cut(strings.TrimRight(line, "\r\n"), " ")
			cmd := strings.ToUpper(rest)
			switch {
			case strings.HasPrefix(cmd, "LOGIN "), cmd == "CAPABILITY", cmd == "NOOP":
				send("* CAPABILITY IMAP4rev1 IDLE\r\n" + tag + " OK done\r\n")
			case strings.HasPrefix(cmd, "SELECT "):
				send("* 1 EXISTS\r\n* OK [UIDVALIDITY 5] ok\r\n* OK [UIDNEXT 2] ok\r\n" + tag + " OK [READ-WRITE] done\r\n")
			case strings.HasPrefix(cmd, "UID SEARCH "):
				send("* SEARCH 1\r\n" + tag + " OK done\r\n")
			case strings.HasPrefix(cmd, "UID FETCH "):
				mu.Lock()
				n++
				mu.Unlock()
				var head string
				if inStructure {
					head = fmt.Sprintf(`* 1 FETCH (UID 1 RFC822.SIZE 10 BODYSTRUCTURE ("text" "plain" ("name" {%d}`, size)
				} else {
					head = fmt.Sprintf("* 1 FETCH (UID 1 RFC822.SIZE 10 BODY[HEADER]<0> {%d}", size)
				}
				if !send(head+"\r\n") || !send(strings.Repeat("x", 64<<10)) {
					return
				}
				r.ReadString('\n') // block until the client gives up
				return
			default:
				send(tag + " BAD unexpected\r\n")
			}
		}
	}
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { serve(conn) })
		}
	})
	return ln.Addr().String(), func() int { mu.Lock(); defer mu.Unlock(); return n }
}

// TestOversizedLiteralDropsConnection: a literal announced larger than
// max_message_size, in a body section or in a BODYSTRUCTURE string (which go-imap would buffer
// whole), makes the watcher drop the connection with an error naming the cause, without
// allocating the announced size; and one larger than the partial fetch asked for is refused too.
func TestOversizedLiteralDropsConnection(t *testing.T) {
	for _, tc := range []struct {
		name        string
		size        int64
		inStructure bool
		want        string
	}{
		{"header literal over max_message_size", 1 << 30, false, "more than max_message_size"},
		{"structure literal over max_message_size", 1 << 30, true, "more than max_message_size"},
		{"header literal over the partial asked for", 5 << 20, false, "asked for at most"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, fetches := literalServer(t, tc.size, tc.inStructure)
			logs := &syncBuffer{}
			cfg := baseConfig(addr, "user", "pw", logs)
			cfg.Start = watcher.StartAll
			cfg.MaxMessageSize = 25_000_000
			cfg.Backoff.Min, cfg.Backoff.Max = time.Minute, time.Minute // one attempt is enough
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			w := mustNew(t, cfg, newFakeState(), newRecorder())
			runWatcher(t, w, logs)
			waitState(t, w, watcher.StateBackoff)
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			st := w.Status()
			if !strings.Contains(st.Reason, tc.want) || !strings.Contains(st.Reason, "literal") {
				t.Errorf("reason %q, want it to contain %q", st.Reason, tc.want)
			}
			if fetches() != 1 {
				t.Errorf("%d fetches", fetches())
			}
			if grown := int64(after.TotalAlloc - before.TotalAlloc); grown > 64<<20 {
				t.Errorf("allocated %d bytes while refusing a %d-byte literal", grown, tc.size)
			}
			if st.BytesRead > 1<<20 {
				t.Errorf("read %d bytes of a refused literal", st.BytesRead)
			}
		})
	}
}
