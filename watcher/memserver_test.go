package watcher_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailhook/mailhook/internal/testmail"
	"github.com/mailhook/mailhook/store"
	"github.com/mailhook/mailhook/watcher"
)

func appendN(t *testing.T, srv interface {
	Append(string, []byte) (uint32, error)
}, from, n int) []uint32 {
	t.Helper()
	var uids []uint32
	for i := from; i < from+n; i++ {
		uid, err := srv.Append("INBOX", testmail.Sample(i, testmail.SampleOptions{Kind: testmail.SampleKind(i % testmail.NumSampleKinds)}))
		if err != nil {
			t.Fatalf("append sample %d: %v", i, err)
		}
		uids = append(uids, uid)
	}
	return uids
}

func TestStartNewSkipsOldMail(t *testing.T) {
	srv := testmail.StartMemServer(t, testmail.MemOptions{})
	appendN(t, srv, 0, 3)
	logs := &syncBuffer{}
	st, rec := newFakeState(), newRecorder()
	w := mustNew(t, baseConfig(srv.Addr(), srv.User(), srv.Password(), logs), st, rec)
	runWatcher(t, w, logs)

	waitState(t, w, watcher.StateIdle)
	if got := rec.uids(); len(got) != 0 {
		t.Fatalf("start new handled old mail: %v", got)
	}
	new := appendN(t, srv, 3, 2)
	rec.waitUIDs(t, new...)
	eventually(t, "commits", func() bool { return len(st.committedUIDs()) >= len(new) })
	if got := st.committedUIDs(); !slices.Equal(got, new) {
		t.Errorf("committed %v, want %v", got, new)
	}
	if got, want := rec.subjects()[0], "[org/repo] Run failed: build (main) #3"; got != want {
		t.Errorf("subject %q, want %q", got, want)
	}
	st.checkInvariants(t)
	if strings.Contains(logs.String(), srv.Password()) {
		t.Error("password appears in the log")
	}
}

func TestStartAllProcessesInOrder(t *testing.T) {
	srv := testmail.StartMemServer(t, testmail.MemOptions{})
	old := appendN(t, srv, 0, 7)
	logs := &syncBuffer{}
	st, rec := newFakeState(), newRecorder()
	cfg := baseConfig(srv.Addr(), srv.User(), srv.Password(), logs)
	cfg.Start = watcher.StartAll
	cfg.BatchSize = 3 // several first-pass batches
	w := mustNew(t, cfg, st, rec)
	runWatcher(t, w, logs)

	rec.waitUIDs(t, old...)
	more := appendN(t, srv, 7, 1)
	rec.waitUIDs(t, append(old, more...)...)
	eventually(t, "Status.LastUID", func() bool { return w.Status().LastUID == more[0] })
	st.checkInvariants(t)
}

func TestStartDate(t *testing.T) {
	tests := []struct {
		start   string
		wantOld bool
	}{
		{"2000-01-01", true},  // every INTERNALDATE is later: backfill everything
		{"2999-01-01", false}, // nothing that recent: behaves like "new"
	}
	for _, tt := range tests {
		t.Run(tt.start, func(t *testing.T) {
			srv := testmail.StartMemServer(t, testmail.MemOptions{})
			old := appendN(t, srv, 0, 2)
			logs := &syncBuffer{}
			st, rec := newFakeState(), newRecorder()
			cfg := baseConfig(srv.Addr(), srv.User(), srv.Password(), logs)
			cfg.Start = tt.start
			w := mustNew(t, cfg, st, rec)
			runWatcher(t, w, logs)
			waitState(t, w, watcher.StateIdle)
			more := appendN(t, srv, 2, 1)
			want := more
			if tt.wantOld {
				want = append(old, more...)
			}
			rec.waitUIDs(t, want...)
		})
	}
}

// TestCommitFailureRetries injects commit failures (a crash between handling and commit): the
// session aborts, nothing is skipped, order stays ascending and the checkpoint never goes back.
func TestCommitFailureRetries(t *testing.T) {
	srv := testmail.StartMemServer(t, testmail.MemOptions{})
	logs := &syncBuffer{}
	st, rec := newFakeState(), newRecorder()
	w := mustNew(t, baseConfig(srv.Addr(), srv.User(), srv.Password(), logs), st, rec)
	runWatcher(t, w, logs)
	waitState(t, w, watcher.StateIdle)

	uids := appendN(t, srv, 0, 1)
	rec.waitUIDs(t, uids...)
	st.mu.Lock()
	st.failCommits[uids[0]+1] = 2
	st.mu.Unlock()
	more := appendN(t, srv, 1, 3)
	eventually(t, "all commits", func() bool { return len(st.committedUIDs()) == 4 })
	if got, want := st.committedUIDs(), append(uids, more...); !slices.Equal(got, want) {
		t.Fatalf("committed %v, want %v", got, want)
	}
	rec.mu.Lock()
	calls := rec.calls[more[0]]
	rec.mu.Unlock()
	if calls != 3 {
		t.Errorf("uid %d handled %d times, want 3 (two failed commits, then success)", more[0], calls)
	}
	if got := w.Status().Connects; got < 3 {
		t.Errorf("Connects = %d, want ≥ 3 (a reconnect per failed commit)", got)
	}
	st.checkInvariants(t)
}

// TestLeaseLostStopsAtOnce: a commit refused because another replica took the mailbox over
// (store.ErrLeaseLost) ends Run at once with that error: no reconnect, no retry of the commit.
func TestLeaseLostStopsAtOnce(t *testing.T) {
	srv := testmail.StartMemServer(t, testmail.MemOptions{})
	logs := &syncBuffer{}
	st, rec := newFakeState(), newRecorder()
	w := mustNew(t, baseConfig(srv.Addr(), srv.User(), srv.Password(), logs), st, rec)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	waitState(t, w, watcher.StateIdle)
	st.mu.Lock()
	st.commitErr = fmt.Errorf("commit: %w", store.ErrLeaseLost)
	st.mu.Unlock()
	appendN(t, srv, 0, 1)
	select {
	case err := <-done:
		if !errors.Is(err, store.ErrLeaseLost) {
			t.Fatalf("Run returned %v, want store.ErrLeaseLost", err)
		}
	case <-time.After(waitTimeout):
		t.Fatalf("Run did not return within %v of a lost lease\n%s", waitTimeout, logs.String())
	}
	if s := w.Status(); s.State != watcher.StateStopped || s.Connects != 1 || !strings.Contains(s.Reason, "lease lost") {
		t.Errorf("status after a lost lease = %+v, want stopped after one session with the reason", s)
	}
	if got := st.committedUIDs(); len(got) != 0 {
		t.Errorf("committed %v after the lease was lost", got)
	}
}

// TestExistsDuringCommand: without IDLE and with a poll interval far beyond the test,
// a message appended while the watcher is busy is only noticed through the EXISTS that arrives
// in the middle of a later command.
func TestExistsDuringCommand(t *testing.T) {
	srv := testmail.StartMemServer(t, testmail.MemOptions{NoIdle: true})
	first := appendN(t, srv, 0, 3)
	logs := &syncBuffer{}
	st, rec := newFakeState(), newRecorder()
	appended := make(chan uint32, 1)
	rec.hook = func(ev *watcher.Event) {
		if ev.UID == first[0] {
			appended <- appendN(t, srv, 3, 1)[0]
		}
	}
	cfg := baseConfig(srv.Addr(), srv.User(), srv.Password(), logs)
	cfg.Start = watcher.StartAll
	// One message per batch: the second one's first pass is sent ahead, before the first is
	// handled; the third one's is sent after the append.
	cfg.BatchSize = 1
	cfg.PollInterval = time.Hour // polling cannot be what finds the fourth message
	w := mustNew(t, cfg, st, rec)
	runWatcher(t, w, logs)

	rec.waitUIDs(t, first[0], first[1], first[2], <-appended)
	if got := w.Status().Idles; got != 0 {
		t.Errorf("issued %d IDLE commands to a server without IDLE", got)
	}
}

// TestPollingWithoutIdle: a server without IDLE is polled, and mail still arrives.
func TestPollingWithoutIdle(t *testing.T) {
	srv := testmail.StartMemServer(t, testmail.MemOptions{NoIdle: true})
	logs := &syncBuffer{}
	st, rec := newFakeState(), newRecorder()
	cfg := baseConfig(srv.Addr(), srv.User(), srv.Password(), logs)
	cfg.PollInterval = 50 * time.Millisecond
	w := mustNew(t, cfg, st, rec)
	runWatcher(t, w, logs)

	waitState(t, w, watcher.StatePolling)
	uids := appendN(t, srv, 0, 2)
	rec.waitUIDs(t, uids...)
	if got := w.Status().Idles; got != 0 {
		t.Errorf("issued %d IDLE commands to a server without IDLE", got)
	}
}

// TestReIdle: IDLE is ended and re-issued every IdleRefresh, and mail still flows.
func TestReIdle(t *testing.T) {
	srv := testmail.StartMemServer(t, testmail.MemOptions{})
	logs := &syncBuffer{}
	st, rec := newFakeState(), newRecorder()
	cfg := baseConfig(srv.Addr(), srv.User(), srv.Password(), logs)
	cfg.IdleRefresh = 30 * time.Millisecond
	w := mustNew(t, cfg, st, rec)
	runWatcher(t, w, logs)

	eventually(t, "five IDLE cycles", func() bool { return w.Status().Idles >= 5 })
	uids := appendN(t, srv, 0, 1)
	rec.waitUIDs(t, uids...)
	if st := w.Status(); st.Connects != 1 {
		t.Errorf("Connects = %d, want 1: re-IDLE must not reconnect (reason %q)", st.Connects, st.Reason)
	}
	// One connection per watcher, however many IDLE cycles and fetches.
	if got := srv.MaxConnections(); got != 1 {
		t.Errorf("server saw %d simultaneous connections, want 1", got)
	}
}

// TestWatchdogClosesFrozenConnection: a blackholed IDLE connection is closed after
// IdleRefresh + slack of silence, and the watcher reconnects and processes later mail.
func TestWatchdogClosesFrozenConnection(t *testing.T) {
	srv := testmail.StartMemServer(t, testmail.MemOptions{})
	proxy := testmail.StartProxy(t, srv.Addr())
	logs := &syncBuffer{}
	st, rec := newFakeState(), newRecorder()
	cfg := baseConfig(proxy.Addr(), srv.User(), srv.Password(), logs)
	cfg.IdleRefresh = 2 * time.Second
	cfg.WatchdogSlack = 200 * time.Millisecond
	cfg.CommandTimeout = time.Hour // only the IDLE limit may fire
	w := mustNew(t, cfg, st, rec)
	runWatcher(t, w, logs)

	waitState(t, w, watcher.StateIdle)
	before := appendN(t, srv, 0, 1)
	rec.waitUIDs(t, before...)
	// Freeze only once the server has acknowledged the next IDLE: frozen earlier, the IDLE command
	// itself would be unanswered, which is the command watchdog's case (disabled here). The
	// refresh is long enough that no new IDLE command is in flight right after an acknowledgement.
	idles := w.Status().Idles
	eventually(t, "IDLE re-entered after the message", func() bool { return w.Status().Idles > idles })

	proxy.Freeze()
	eventually(t, "watchdog reason", func() bool {
		st := w.Status()
		return st.Connects >= 2 && strings.Contains(st.Reason, "watchdog")
	})
	proxy.Unfreeze()
	after := appendN(t, srv, 1, 1)
	rec.waitUIDs(t, before[0], after[0])
	st.checkInvariants(t)
}

// TestWatchdogCommandTimeout: a command that gets no answer is cut after CommandTimeout.
func TestWatchdogCommandTimeout(t *testing.T) {
	srv := testmail.StartMemServer(t, testmail.MemOptions{NoIdle: true})
	proxy := testmail.StartProxy(t, srv.Addr())
	logs := &syncBuffer{}
	st, rec := newFakeState(), newRecorder()
	cfg := baseConfig(proxy.Addr(), srv.User(), srv.Password(), logs)
	cfg.PollInterval = 20 * time.Millisecond
	cfg.CommandTimeout = 200 * time.Millisecond
	w := mustNew(t, cfg, st, rec)
	runWatcher(t, w, logs)

	waitState(t, w, watcher.StatePolling)
	proxy.Freeze()
	eventually(t, "command watchdog", func() bool {
		return strings.Contains(w.Status().Reason, "no response for")
	})
	proxy.Unfreeze()
	uids := appendN(t, srv, 0, 1)
	rec.waitUIDs(t, uids...)
}

// TestCutReconnects: after a reset the watcher reconnects with backoff and
// processes everything that arrived meanwhile, once each.
func TestCutReconnects(t *testing.T) {
	srv := testmail.StartMemServer(t, testmail.MemOptions{})
	proxy := testmail.StartProxy(t, srv.Addr())
	logs := &syncBuffer{}
	st, rec := newFakeState(), newRecorder()
	cfg := baseConfig(proxy.Addr(), srv.User(), srv.Password(), logs)
	cfg.Backoff.Min, cfg.Backoff.Max = 100*time.Millisecond, 200*time.Millisecond
	w := mustNew(t, cfg, st, rec)
	runWatcher(t, w, logs)

	waitState(t, w, watcher.StateIdle)
	var want []uint32
	for round := range 3 {
		want = append(want, appendN(t, srv, round*10, 1)...)
		rec.waitUIDs(t, want...)
		waitState(t, w, watcher.StateIdle)
		proxy.Refuse(true)
		if proxy.CutAll() == 0 {
			t.Fatal("nothing to cut")
		}
		eventually(t, "backoff after cut", func() bool { return w.Status().State == watcher.StateBackoff })
		want = append(want, appendN(t, srv, round*10+1, 2)...) // arrives while disconnected
		proxy.Refuse(false)
	}
	rec.waitUIDs(t, want...)
	rec.mu.Lock()
	for uid, n := range rec.calls {
		if n != 1 {
			t.Errorf("uid %d handled %d times", uid, n)
		}
	}
	rec.mu.Unlock()
	st.checkInvariants(t)
	if got := w.Status().Connects; got < 4 {
		t.Errorf("Connects = %d, want ≥ 4", got)
	}
}

// TestAlertBackoff: "[ALERT] Too many simultaneous connections" is kept as the
// status reason and the next attempt waits at least AuthMin.
func TestAlertBackoff(t *testing.T) {
	srv := testmail.StartMemServer(t, testmail.MemOptions{ConnLimit: 1})
	hog, err := net.Dial("tcp", srv.Addr()) // occupies the only allowed connection
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "hog connection counted", func() bool { return srv.Connections() == 1 })
	logs := &syncBuffer{}
	st, rec := newFakeState(), newRecorder()
	cfg := baseConfig(srv.Addr(), srv.User(), srv.Password(), logs)
	w := mustNew(t, cfg, st, rec)
	runWatcher(t, w, logs)

	var got watcher.Status
	eventually(t, "alert backoff", func() bool {
		got = w.Status()
		return got.State == watcher.StateBackoff && strings.Contains(got.Reason, "Too many simultaneous connections")
	})
	if !strings.HasPrefix(got.Reason, "alert: ") {
		t.Errorf("reason %q does not name the alert", got.Reason)
	}
	if d := got.NextAttempt.Sub(got.Since); d < cfg.Backoff.AuthMin {
		t.Errorf("next attempt after %v, want ≥ AuthMin %v", d, cfg.Backoff.AuthMin)
	}
	if !strings.Contains(logs.String(), "level=WARN msg=\"server alert\"") {
		t.Errorf("alert not logged at warn:\n%s", logs.String())
	}
	hog.Close()
	waitState(t, w, watcher.StateIdle)
	if r := w.Status().Reason; r != "" {
		t.Errorf("reason %q kept after a healthy session started", r)
	}
}

func TestAuthFailureBackoff(t *testing.T) {
	srv := testmail.StartMemServer(t, testmail.MemOptions{})
	logs := &syncBuffer{}
	const wrong = "not-the-password-x9"
	cfg := baseConfig(srv.Addr(), srv.User(), wrong, logs)
	w := mustNew(t, cfg, newFakeState(), newRecorder())
	runWatcher(t, w, logs)

	var got watcher.Status
	eventually(t, "auth failure backoff", func() bool {
		got = w.Status()
		return got.State == watcher.StateBackoff && got.Reason != ""
	})
	if d := got.NextAttempt.Sub(got.Since); d < cfg.Backoff.AuthMin {
		t.Errorf("next attempt after %v, want ≥ AuthMin %v (reason %q)", d, cfg.Backoff.AuthMin, got.Reason)
	}
	if containsAny(got.Reason+logs.String(), wrong) {
		t.Errorf("password leaked into reason or log")
	}
}

func TestNewValidates(t *testing.T) {
	good := watcher.Config{Account: "a", Mailbox: "INBOX", Addr: "127.0.0.1:993", Username: "u"}
	tests := []struct {
		name string
		mod  func(c *watcher.Config)
	}{
		{"no account", func(c *watcher.Config) { c.Account = "" }},
		{"bad addr", func(c *watcher.Config) { c.Addr = "imap.example.com" }},
		{"bad security", func(c *watcher.Config) { c.Security = "ssl" }},
		{"bad start", func(c *watcher.Config) { c.Start = "yesterday" }},
		{"no user", func(c *watcher.Config) { c.Username = "" }},
	}
	if _, err := watcher.New(good, newFakeState(), newRecorder()); err != nil {
		t.Fatalf("valid config rejected: %v", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good
			tt.mod(&cfg)
			if _, err := watcher.New(cfg, newFakeState(), newRecorder()); err == nil {
				t.Error("accepted")
			}
		})
	}
}

// TestPeekKeepsFlags on imapmemserver: fetching headers and both body kinds never
// sets \Seen (see TestDovecotPeekKeepsFlags for a real server).
func TestPeekKeepsFlags(t *testing.T) {
	srv := testmail.StartMemServer(t, testmail.MemOptions{})
	uids := appendN(t, srv, 0, 3)
	before := map[uint32][]string{}
	for _, uid := range uids {
		f, err := srv.Flags("INBOX", uid)
		if err != nil {
			t.Fatal(err)
		}
		before[uid] = f
	}
	logs := &syncBuffer{}
	st, rec := newFakeState(), newRecorder()
	cfg := baseConfig(srv.Addr(), srv.User(), srv.Password(), logs)
	cfg.Start = watcher.StartAll
	cfg.Plan = watcher.Plan{Text: true, HTML: true}
	w := mustNew(t, cfg, st, rec)
	runWatcher(t, w, logs)

	rec.waitUIDs(t, uids...)
	for _, uid := range uids {
		after, err := srv.Flags("INBOX", uid)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(after, before[uid]) {
			t.Errorf("uid %d flags %v → %v", uid, before[uid], after)
		}
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	ci := rec.events[0].Message // CI failure: multipart/alternative text + HTML
	if !ci.TextFetched || !ci.HTMLFetched || ci.Text == "" || ci.HTML == "" {
		t.Errorf("CI sample: text fetched %v (%d bytes), html fetched %v (%d bytes)",
			ci.TextFetched, len(ci.Text), ci.HTMLFetched, len(ci.HTML))
	}
}

// TestHeaderOnlyPlan: without Text/HTML in the plan, no body part is fetched.
func TestHeaderOnlyPlan(t *testing.T) {
	srv := testmail.StartMemServer(t, testmail.MemOptions{})
	uids := appendN(t, srv, 0, 2)
	logs := &syncBuffer{}
	st, rec := newFakeState(), newRecorder()
	cfg := baseConfig(srv.Addr(), srv.User(), srv.Password(), logs)
	cfg.Start = watcher.StartAll
	w := mustNew(t, cfg, st, rec)
	runWatcher(t, w, logs)

	rec.waitUIDs(t, uids...)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, ev := range rec.events {
		if m := ev.Message; m.Text != "" || m.HTML != "" || m.Subject == "" {
			t.Errorf("uid %d: text %q, html %q, subject %q", ev.UID, m.Text, m.HTML, m.Subject)
		}
	}
	// The CI sample has both a text and an HTML part: neither may have been available.
	if ci := rec.events[0].Message; ci.TextFetched || ci.HTMLFetched {
		t.Errorf("CI sample: text fetched %v, html fetched %v", ci.TextFetched, ci.HTMLFetched)
	}
}

// TestLargeBodyFetchedPartially: a text part far beyond the cap is fetched only up to
// Limits.TextPartBytes (BODY.PEEK[1]<0.n>), and the message says it was truncated.
func TestLargeBodyFetchedPartially(t *testing.T) {
	srv := testmail.StartMemServer(t, testmail.MemOptions{})
	body := strings.Repeat("All work and no play makes Jack a dull boy.\r\n", 20000) // ~900 KB
	raw := "From: Jack <jack@example.test>\r\nTo: demo@example.test\r\nSubject: big\r\n" +
		"Message-ID: <big@example.test>\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\n" +
		"Content-Type: text/plain; charset=us-ascii\r\n\r\n" + body
	logs := &syncBuffer{}
	st, rec := newFakeState(), newRecorder()
	cfg := baseConfig(srv.Addr(), srv.User(), srv.Password(), logs)
	cfg.Plan = watcher.Plan{Text: true}
	cfg.Limits.TextBytes = 1000
	w := mustNew(t, cfg, st, rec)
	runWatcher(t, w, logs)
	waitState(t, w, watcher.StateIdle)
	before := w.Status().BytesRead

	uid, err := srv.Append("INBOX", []byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	rec.waitUIDs(t, uid)
	rec.mu.Lock()
	m := rec.events[0].Message
	rec.mu.Unlock()
	if !m.Truncated || len(m.Text) == 0 || len(m.Text) > 1000 || m.Size != int64(len(raw)) {
		t.Errorf("truncated %v, text %d bytes, size %d; want a truncated text of at most 1000 bytes",
			m.Truncated, len(m.Text), m.Size)
	}
	if read := w.Status().BytesRead - before; read > 64<<10 {
		t.Errorf("read %d bytes for a %d-byte message with a 1000-byte text cap", read, len(raw))
	}
}

// TestCancelWhileFrozen: cancelling Run ends it even when the connection is blackholed and no
// watchdog limit is near (runWatcher's cleanup fails the test if Run does not return).
func TestCancelWhileFrozen(t *testing.T) {
	srv := testmail.StartMemServer(t, testmail.MemOptions{})
	proxy := testmail.StartProxy(t, srv.Addr())
	logs := &syncBuffer{}
	cfg := baseConfig(proxy.Addr(), srv.User(), srv.Password(), logs)
	cfg.IdleRefresh = 20 * time.Millisecond // soon blocked in DONE or SELECT on the frozen link
	cfg.CommandTimeout = time.Hour
	cfg.WatchdogSlack = time.Hour
	w := mustNew(t, cfg, newFakeState(), newRecorder())
	runWatcher(t, w, logs)
	waitState(t, w, watcher.StateIdle)
	proxy.Freeze()
	// Stuck means the IDLE count stops changing. It is compared with the previous poll, not with a
	// count read right after Freeze: the watcher reports StateIdle before IDLE's continuation is
	// read, so one IDLE already past the proxy may still be counted after the freeze.
	idles := w.Status().Idles
	eventually(t, "watcher stuck on the frozen link", func() bool {
		s := w.Status()
		stable := s.Idles == idles
		idles = s.Idles
		return stable && time.Since(s.LastActivity) > 100*time.Millisecond
	})
}

// A retry storm with one cause logs one warning; the same cause again is debug, and a server that
// comes back is one "session ready" line (issue 7: one line per state change).
func TestReconnectStormLogsOnce(t *testing.T) {
	srv := testmail.StartMemServer(t, testmail.MemOptions{})
	proxy := testmail.StartProxy(t, srv.Addr())
	proxy.Refuse(true) // the server is down: every connection is reset
	logs := &syncBuffer{}
	st, rec := newFakeState(), newRecorder()
	cfg := baseConfig(proxy.Addr(), srv.User(), srv.Password(), logs)
	w := mustNew(t, cfg, st, rec)
	runWatcher(t, w, logs)

	eventually(t, "five failed attempts", func() bool { return w.Status().Connects >= 5 })
	failures := strings.Count(logs.String(), `msg="session ended; reconnecting"`)
	warned := strings.Count(logs.String(), `level=WARN msg="session ended; reconnecting"`)
	if failures < 4 || warned > 2 { // one per distinct cause (a reset can fail at dial or at greeting)
		t.Errorf("%d failures logged, %d of them at warn; want one warning per cause", failures, warned)
	}
	proxy.Refuse(false)
	waitState(t, w, watcher.StateIdle)
	if n := strings.Count(logs.String(), `msg="session ready"`); n != 1 {
		t.Errorf("%d session ready lines, want 1", n)
	}
}
