package watcher_test

import (
	"bufio"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailhook/mailhook/store"
	"github.com/mailhook/mailhook/watcher"
)

// scriptedServer is a minimal IMAP server for behaviour neither imapmemserver nor a stock Dovecot
// shows on demand: it advertises ID (RFC 2971) and answers every UID SEARCH with the mailbox's
// highest UID, as RFC 3501 §6.4.8 allows for "n:*". Its one message, UID 3, fails every UID FETCH
// that asks for BODYSTRUCTURE and answers a minimal one. It records every command line it receives.
// Any command it does not know gets BAD, which makes the watcher's session fail visibly.
type scriptedServer struct {
	ln net.Listener

	mu    sync.Mutex
	lines []string
	// firstPass, when set, writes the answer to a UID FETCH asking for BODYSTRUCTURE instead of
	// the BAD every such fetch gets by default; a write error ends the connection.
	firstPass func(w *bufio.Writer, tag string) error
	// holdSelect makes a connection's first SELECT wait (up to 2 s) for the next command line
	// before answering;
	// behindSelect records those lines: commands a client wrote without waiting for SELECT.
	holdSelect   bool
	behindSelect []string
}

func (s *scriptedServer) setFirstPass(f func(w *bufio.Writer, tag string) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.firstPass = f
}

func startScripted(t *testing.T) *scriptedServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &scriptedServer{ln: ln}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { s.serve(conn) })
		}
	})
	return s
}

func (s *scriptedServer) commands() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.lines...)
}

func (s *scriptedServer) count(prefix string) int {
	n := 0
	for _, l := range s.commands() {
		if strings.HasPrefix(strings.ToUpper(l), prefix) {
			n++
		}
	}
	return n
}

func (s *scriptedServer) serve(conn net.Conn) {
	defer conn.Close()
	const caps = "IMAP4rev1 ID IDLE AUTH=PLAIN"
	r := bufio.NewReader(conn)
	send := func(lines ...string) bool {
		for _, l := range lines {
			if _, err := conn.Write([]byte(l + "\r\n")); err != nil {
				return false
			}
		}
		return true
	}
	send("* OK [CAPABILITY " + caps + "] scripted ready")
	var next string // a line read ahead while SELECT was held
	held := false
	for {
		line := next
		next = ""
		if line == "" {
			var err error
			if line, err = r.ReadString('\n'); err != nil {
				return
			}
		}
		line = strings.TrimRight(line, "\r\n")
		tag, rest, _ := strings.Cut(line, " ")
		s.mu.Lock()
		s.lines = append(s.lines, rest)
		s.mu.Unlock()
		cmd := strings.ToUpper(rest)
		var ok bool
		switch {
		case cmd == "CAPABILITY":
			ok = send("* CAPABILITY "+caps, tag+" OK done")
		case strings.HasPrefix(cmd, "LOGIN ") && strings.Contains(cmd, "QUOTA@"):
			send("* BYE [ALERT] Account exceeded command or bandwidth limits. (Failure)") // Gmail-like
			return
		case strings.HasPrefix(cmd, "LOGIN "):
			ok = send(tag + " OK [CAPABILITY " + caps + "] logged in")
		case strings.HasPrefix(cmd, "ID "):
			ok = send(`* ID ("name" "scripted")`, tag+" OK done")
		case strings.HasPrefix(cmd, "SELECT "):
			s.mu.Lock()
			hold := s.holdSelect && !held
			s.mu.Unlock()
			if hold {
				held = true
				_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
				l, err := r.ReadString('\n')
				_ = conn.SetReadDeadline(time.Time{})
				if err == nil {
					next = l
					s.mu.Lock()
					_, rest, _ := strings.Cut(strings.TrimRight(l, "\r\n"), " ")
					s.behindSelect = append(s.behindSelect, rest)
					s.mu.Unlock()
				}
			}
			ok = send("* 3 EXISTS", "* FLAGS (\\Seen \\Flagged)", "* OK [UIDVALIDITY 7] ok",
				"* OK [UIDNEXT 4] ok", tag+" OK [READ-WRITE] selected")
		case strings.HasPrefix(cmd, "UID SEARCH "):
			ok = send("* SEARCH 3", tag+" OK done") // the highest UID, whatever was asked
		case strings.HasPrefix(cmd, "UID FETCH ") && strings.Contains(cmd, "BODYSTRUCTURE"):
			s.mu.Lock()
			first := s.firstPass
			s.mu.Unlock()
			if first == nil {
				ok = send(tag + " BAD simulated fetch failure") // the full first pass always fails
				break
			}
			bw := bufio.NewWriter(conn)
			ok = first(bw, tag) == nil && bw.Flush() == nil
		case strings.HasPrefix(cmd, "UID FETCH "):
			ok = send(`* 3 FETCH (UID 3 FLAGS (\Flagged) RFC822.SIZE 1234 INTERNALDATE "26-Nov-2026 10:00:00 +0000")`,
				tag+" OK done")
		case strings.HasPrefix(cmd, "UID COPY "):
			// The target exists once created: until then, [TRYCREATE] (RFC 3501 §6.4.7).
			if s.count("CREATE ") == 0 {
				ok = send(tag + " NO [TRYCREATE] no such mailbox")
			} else {
				ok = send(tag + " OK copied")
			}
		case strings.HasPrefix(cmd, "CREATE "), strings.HasPrefix(cmd, "UID STORE "), strings.HasPrefix(cmd, "STORE "),
			strings.HasPrefix(cmd, "UID EXPUNGE "), cmd == "EXPUNGE":
			ok = send(tag + " OK done")
		case cmd == "NOOP":
			ok = send(tag + " OK done")
		case cmd == "IDLE":
			if !send("+ idling") {
				return
			}
			done, err := r.ReadString('\n')
			if err != nil || strings.TrimSpace(strings.ToUpper(done)) != "DONE" {
				return
			}
			ok = send(tag + " OK idle done")
		case cmd == "LOGOUT":
			send("* BYE bye", tag+" OK done")
			return
		default:
			ok = send(tag + " BAD unexpected command")
		}
		if !ok {
			return
		}
	}
}

// TestIDAndHighestUIDQuirk: ID is sent with name, version and contact when advertised, and
// (a "UID SEARCH last+1:*" answer holding only UIDs at or below the checkpoint yields no event
// and no FETCH).
func TestIDAndHighestUIDQuirk(t *testing.T) {
	srv := startScripted(t)
	logs := &syncBuffer{}
	st, rec := newFakeState(), newRecorder()
	cfg := baseConfig(srv.ln.Addr().String(), "user@example.test", "secret-pw", logs)
	cfg.IdleRefresh = 20 * time.Millisecond
	cfg.Version = "1.2.3"
	cfg.Contact = "https://example.test/mailhook"
	w := mustNew(t, cfg, st, rec)
	runWatcher(t, w, logs)

	eventually(t, "several catch-ups", func() bool { return srv.count("UID SEARCH") >= 4 })
	var id string
	for _, l := range srv.commands() {
		if strings.HasPrefix(l, "ID ") {
			id = l
		}
	}
	for _, want := range []string{`"name" "mailhook"`, `"version" "1.2.3"`, `"support-url" "https://example.test/mailhook"`} {
		if !strings.Contains(id, want) {
			t.Errorf("ID command %q lacks %s", id, want)
		}
	}
	if n := srv.count("UID FETCH"); n != 0 {
		t.Errorf("sent %d UID FETCH commands for UIDs at or below the checkpoint", n)
	}
	if got := rec.uids(); len(got) != 0 {
		t.Errorf("handled %v", got)
	}
	if st := w.Status(); st.Connects != 1 || st.LastUID != 3 || st.UIDValidity != 7 {
		t.Errorf("status %+v, want one connection, last UID 3, UIDVALIDITY 7", st)
	}
}

// TestSearchSentWithSelect: with a checkpoint stored, the first catch-up's UID SEARCH is written
// behind SELECT, before its answer (a round trip less per session); when SELECT then shows that
// UIDVALIDITY changed, that answer is dropped and the catch-up searches from the reset
// checkpoint.
func TestSearchSentWithSelect(t *testing.T) {
	for _, tc := range []struct {
		name     string
		stored   store.Checkpoint
		searches []string // the first UID SEARCH commands, in order
	}{
		{"same uidvalidity", store.Checkpoint{UIDValidity: 7, LastUID: 3}, []string{"UID SEARCH UID 4:*", "UID SEARCH UID 4:*"}},
		{"uidvalidity changed", store.Checkpoint{UIDValidity: 5, LastUID: 2}, []string{"UID SEARCH UID 3:*", "UID SEARCH UID 1:*"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startScripted(t)
			srv.holdSelect = true
			logs := &syncBuffer{}
			st, rec := newFakeState(), newRecorder()
			st.cps[""] = tc.stored
			cfg := baseConfig(srv.ln.Addr().String(), "user@example.test", "secret-pw", logs)
			cfg.IdleRefresh = 20 * time.Millisecond
			w := mustNew(t, cfg, st, rec)
			runWatcher(t, w, logs)
			eventually(t, "two catch-ups", func() bool { return srv.count("UID SEARCH") >= 2 })

			srv.mu.Lock()
			behind := slices.Clone(srv.behindSelect)
			srv.mu.Unlock()
			if len(behind) == 0 || behind[0] != tc.searches[0] {
				t.Errorf("written behind SELECT: %q, want %q", behind, tc.searches[0])
			}
			var searches []string
			for _, l := range srv.commands() {
				if strings.HasPrefix(l, "UID SEARCH") {
					searches = append(searches, l)
				}
			}
			if !slices.Equal(searches[:2], tc.searches) {
				t.Errorf("UID SEARCH commands %q, want %q first", searches, tc.searches)
			}
		})
	}
}

// TestFetchFailedDelivered: a message whose fetch fails three times in a row is delivered from
// what a minimal fetch returns, with the "fetch_failed" defect, and the mailbox moves on.
func TestFetchFailedDelivered(t *testing.T) {
	srv := startScripted(t)
	logs := &syncBuffer{}
	st, rec := newFakeState(), newRecorder()
	cfg := baseConfig(srv.ln.Addr().String(), "user@example.test", "secret-pw", logs)
	cfg.Start = watcher.StartAll
	w := mustNew(t, cfg, st, rec)
	runWatcher(t, w, logs)

	rec.waitUIDs(t, 3)
	waitState(t, w, watcher.StateIdle)
	rec.mu.Lock()
	m := rec.events[0].Message
	rec.mu.Unlock()
	if !slices.Contains(m.Defects, "fetch_failed") || m.Size != 1234 {
		t.Errorf("degraded message: defects %v, size %d", m.Defects, m.Size)
	}
	if got := srv.count("UID FETCH"); got != 4 {
		t.Errorf("%d UID FETCH commands, want 3 failed first passes and 1 minimal fetch", got)
	}
	if got := w.Status().Connects; got != 4 {
		t.Errorf("Connects = %d, want 4", got)
	}
	if got := st.committedUIDs(); !slices.Equal(got, []uint32{3}) {
		t.Errorf("committed %v", got)
	}
}

// TestUntaggedAlertBye: an untagged "* BYE [ALERT] …bandwidth limits" (which go-imap does not
// surface) becomes the status reason, is logged at warning level, and holds the next attempt
// back by at least QuotaMin.
func TestUntaggedAlertBye(t *testing.T) {
	srv := startScripted(t)
	logs := &syncBuffer{}
	cfg := baseConfig(srv.ln.Addr().String(), "quota@example.test", "secret-pw", logs)
	w := mustNew(t, cfg, newFakeState(), newRecorder())
	runWatcher(t, w, logs)

	var st watcher.Status
	eventually(t, "quota backoff", func() bool {
		st = w.Status()
		return st.State == watcher.StateBackoff
	})
	if !strings.Contains(st.Reason, "bandwidth limits") {
		t.Errorf("reason %q", st.Reason)
	}
	if d := st.NextAttempt.Sub(st.Since); d < cfg.Backoff.QuotaMin {
		t.Errorf("next attempt after %v, want ≥ QuotaMin %v", d, cfg.Backoff.QuotaMin)
	}
	if n := strings.Count(logs.String(), `msg="server alert"`); n != 1 {
		t.Errorf("alert logged %d times, want once", n)
	}
}
