package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mailhook/mailhook/internal/fixture"
	"github.com/mailhook/mailhook/internal/testmail"
	"github.com/mailhook/mailhook/store"
)

// These tests run the built binary against a real Dovecot (testmail.StartDovecot: skipped when
// Dovecot is missing, a failure with MAILHOOK_REQUIRE_DOVECOT=1) and a real HTTP receiver.

// ledger tracks what the receiver got, per Message-ID.
type ledger struct {
	recv *testmail.Receiver
}

type delivery struct {
	ID        string
	MessageID string
	Rule      string
	Verified  bool
	Status    int
}

func (l ledger) deliveries(t *testing.T) []delivery {
	var out []delivery
	for _, r := range l.recv.Requests() {
		var p struct {
			ID        string `json:"id"`
			MessageID string `json:"message_id"`
			Rule      string `json:"rule"`
		}
		if err := json.Unmarshal(r.Body, &p); err != nil {
			t.Fatalf("request %d: body is not JSON: %v", r.N, err)
		}
		if p.ID != r.ID() {
			t.Fatalf("request %d: payload id %q != webhook-id %q", r.N, p.ID, r.ID())
		}
		out = append(out, delivery{ID: r.ID(), MessageID: p.MessageID, Rule: p.Rule, Verified: r.Verified, Status: r.Status})
	}
	return out
}

// successes maps each Message-ID that got a 2xx delivery to its webhook-ids (all attempts).
func (l ledger) byMessage(t *testing.T) (ok map[string]bool, ids map[string]map[string]bool) {
	ok, ids = map[string]bool{}, map[string]map[string]bool{}
	for _, d := range l.deliveries(t) {
		if !d.Verified {
			t.Errorf("delivery %s for %s: signature did not verify", d.ID, d.MessageID)
		}
		if ids[d.MessageID] == nil {
			ids[d.MessageID] = map[string]bool{}
		}
		ids[d.MessageID][d.ID] = true
		if d.Status/100 == 2 {
			ok[d.MessageID] = true
		}
	}
	return ok, ids
}

// checkExactlyOnce requires each of want to be delivered successfully, every repeat under the
// same webhook-id, and nothing else delivered. exact also forbids repeats.
func (l ledger) check(t *testing.T, want []string, exact bool) {
	t.Helper()
	ok, ids := l.byMessage(t)
	for _, m := range want {
		if !ok[m] {
			t.Errorf("message %s never delivered", m)
		}
		if len(ids[m]) > 1 {
			t.Errorf("message %s delivered under %d webhook-ids: %v", m, len(ids[m]), ids[m])
		}
	}
	wantSet := map[string]bool{}
	for _, m := range want {
		wantSet[m] = true
	}
	for m := range ids {
		if !wantSet[m] {
			t.Errorf("unexpected delivery for %s", m)
		}
	}
	if exact {
		if n := len(l.recv.Requests()); n != len(want) {
			t.Errorf("%d requests for %d messages; want exactly one each", n, len(want))
		}
	}
}

// waitDelivered waits until every message in want has a successful delivery.
func (l ledger) waitDelivered(t *testing.T, timeout time.Duration, want []string) {
	t.Helper()
	eventually(t, timeout, fmt.Sprintf("%d deliveries", len(want)), func() bool {
		ok, _ := l.byMessage(t)
		for _, m := range want {
			if !ok[m] {
				return false
			}
		}
		return true
	})
}

// mailStream is a stream of sample messages: kinds cycle CI failure, invoice, personal, so two of three match.
type mailStream struct {
	mailbox string // where add appends; "" = INBOX
	mu      sync.Mutex
	base    time.Time
	next    int
	matched []string // Message-IDs expected to be delivered
}

func newMail() *mailStream { return &mailStream{base: time.Now().Truncate(time.Second), next: 1} }

// add appends n messages to mailbox through app and records those that should match.
func (m *mailStream) add(t *testing.T, app func(string, []byte) (uint32, error), n int) {
	t.Helper()
	for range n {
		m.mu.Lock()
		i := m.next
		m.next++
		m.mu.Unlock()
		kind := testmail.SampleKind(i % testmail.NumSampleKinds)
		raw := testmail.Sample(i, testmail.SampleOptions{Kind: kind, Date: m.base})
		if _, err := app(cmp.Or(m.mailbox, "INBOX"), raw); err != nil {
			t.Errorf("append %d: %v", i, err)
			return
		}
		if kind != testmail.Personal {
			m.mu.Lock()
			m.matched = append(m.matched, messageID(t, raw))
			m.mu.Unlock()
		}
	}
}

func (m *mailStream) want() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.matched...)
}

// messageID returns the Message-ID header of raw.
func messageID(t *testing.T, raw []byte) string {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil || m.Header.Get("Message-Id") == "" {
		t.Fatalf("sample has no Message-ID: %v", err)
	}
	return m.Header.Get("Message-Id")
}

// startStack starts Dovecot, a receiver and writes a config; the daemon is not started.
func startStack(t *testing.T, dopts testmail.DovecotOptions, ropts testmail.ReceiverOptions, edit func(*cfgParams)) (*testmail.Dovecot, ledger, string, []string) {
	t.Helper()
	if dopts.Password == "" {
		dopts.Password = testIMAPPassword
	}
	dc := testmail.StartDovecot(t, dopts)
	ropts.Secret = testSecret
	recv := testmail.StartReceiver(t, ropts)
	dir := t.TempDir()
	cfg, env := writeConfig(t, dir, dc.Addr(), dc.User(), dc.Password(), recv.URL()+"/hook", edit)
	return dc, ledger{recv: recv}, cfg, env
}

// waitReady waits until the daemon's log shows its watcher waiting for mail, so `start: new`
// has recorded its checkpoint.
func waitReady(t *testing.T, d *daemon) {
	t.Helper()
	eventually(t, 20*time.Second, "the watcher to start waiting for mail", func() bool {
		return strings.Contains(d.out.String(), "session ready")
	})
}

// (a) 100 messages arriving one by one under IDLE: the matching ones delivered exactly once,
// every signature verified with the standard-webhooks library.
func TestDovecotHundredMessagesUnderIdle(t *testing.T) {
	dc, led, cfg, env := startStack(t, testmail.DovecotOptions{}, testmail.ReceiverOptions{}, nil)
	d := startDaemon(t, cfg, env...)
	waitReady(t, d)
	m := newMail()
	for range 100 {
		m.add(t, dc.Append, 1)
		time.Sleep(15 * time.Millisecond) // pacing of the arrivals, not synchronisation
	}
	want := m.want()
	led.waitDelivered(t, 60*time.Second, want)
	d.terminate()
	led.check(t, want, true)
	assertNoSecrets(t, d.out.String())
}

// testIMAPPassword is the Dovecot password of the process tests: distinctive, so a log scan finds it.
const testIMAPPassword = "pw-7Hq2Lr9xVt4s"

// assertNoSecrets fails when a log holds the IMAP password or the webhook secret, whole or its key
// part: no secret ever reaches a log line.
func assertNoSecrets(t *testing.T, log string) {
	t.Helper()
	for _, s := range []string{testIMAPPassword, testSecret, strings.TrimPrefix(testSecret, "whsec_")} {
		if strings.Contains(log, s) {
			t.Errorf("the log contains a secret (%.6s…)", s)
		}
	}
	if !strings.Contains(log, "rule matched") {
		t.Errorf("the log scan saw no delivery lines; is the log captured?")
	}
}

// (b) SIGKILL and SIGTERM while mail keeps arriving: nothing lost, any repeat has the same webhook-id.
func TestDovecotKillAndTermWhileMailArrives(t *testing.T) {
	dc, led, cfg, env := startStack(t, testmail.DovecotOptions{}, testmail.ReceiverOptions{}, nil)
	m := newMail()
	d := startDaemon(t, cfg, env...)
	waitReady(t, d)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(30 * time.Millisecond):
				m.add(t, dc.Append, 1)
			}
		}
	})
	eventually(t, 30*time.Second, "first deliveries", func() bool { return len(led.recv.Requests()) >= 5 })
	d.kill()
	d = startDaemon(t, cfg, env...)
	eventually(t, 30*time.Second, "deliveries after restart", func() bool { return len(led.recv.Requests()) >= 15 })
	d.terminate()
	d = startDaemon(t, cfg, env...)
	eventually(t, 30*time.Second, "deliveries after second restart", func() bool { return len(led.recv.Requests()) >= 25 })
	close(stop)
	wg.Wait()
	want := m.want()
	led.waitDelivered(t, 60*time.Second, want)
	d.terminate()
	led.check(t, want, false)
	t.Logf("%d messages matched, %d requests", len(want), len(led.recv.Requests()))
}

// (c) The watched mailbox deleted and re-created (new UIDVALIDITY) with the old mail put back
// and new mail added: only the new mail is delivered, and mail keeps flowing afterwards. Dovecot
// refuses to delete INBOX, so this watches another folder.
func TestDovecotUIDValidityChange(t *testing.T) {
	dc, led, cfg, env := startStack(t, testmail.DovecotOptions{Mailboxes: []string{"Work"}}, testmail.ReceiverOptions{},
		func(p *cfgParams) { p.Mailbox, p.IdleRefresh = "Work", "2s" })
	d := startDaemon(t, cfg, env...)
	waitReady(t, d)
	m := newMail()
	m.mailbox = "Work"
	var raws [][]byte
	appendKeep := func(mb string, raw []byte) (uint32, error) {
		raws = append(raws, raw)
		return dc.Append(mb, raw)
	}
	m.add(t, appendKeep, 6)
	first := m.want()
	led.waitDelivered(t, 30*time.Second, first)
	before, err := dc.UIDValidity("Work")
	if err != nil {
		t.Fatal(err)
	}

	if err := dc.DeleteMailbox("Work"); err != nil {
		t.Fatal(err)
	}
	if err := dc.CreateMailbox("Work"); err != nil {
		t.Fatal(err)
	}
	// The daemon's session still has the old Work selected: AppendRecreated allows for Dovecot's
	// "deleted under us" while it tears that down.
	for _, raw := range raws {
		if _, err := dc.AppendRecreated("Work", raw); err != nil {
			t.Fatal(err)
		}
	}
	after, err := dc.UIDValidity("Work")
	if err != nil {
		t.Fatal(err)
	}
	if after == before {
		t.Fatalf("UIDVALIDITY did not change (%d)", after)
	}
	m.add(t, dc.AppendRecreated, 6)
	want := m.want()
	led.waitDelivered(t, 60*time.Second, want)
	m.add(t, dc.AppendRecreated, 3)
	want = m.want()
	led.waitDelivered(t, 30*time.Second, want)
	d.terminate()
	led.check(t, want, true)
}

// (d1) A proxy that cuts every connection every few seconds: everything still arrives.
func TestDovecotConnectionCuts(t *testing.T) {
	dc := testmail.StartDovecot(t, testmail.DovecotOptions{})
	proxy := testmail.StartProxy(t, dc.Addr())
	recv := testmail.StartReceiver(t, testmail.ReceiverOptions{Secret: testSecret})
	led := ledger{recv: recv}
	cfg, env := writeConfig(t, t.TempDir(), proxy.Addr(), dc.User(), dc.Password(), recv.URL()+"/hook", nil)
	d := startDaemon(t, cfg, env...)
	waitReady(t, d)
	m := newMail()
	for round := range 5 {
		m.add(t, dc.Append, 6)
		time.Sleep(time.Duration(500+round*300) * time.Millisecond) // let the cuts land at varied points
		proxy.CutAll()
	}
	want := m.want()
	led.waitDelivered(t, 60*time.Second, want)
	d.terminate()
	led.check(t, want, false)
	if proxy.TotalConnections() < 3 {
		t.Errorf("only %d connections through the proxy; the cuts did not force reconnects", proxy.TotalConnections())
	}
}

// (d2) A proxy that freezes the connection (a blackhole: no FIN, no RST): the watchdog closes
// it and mailhook reconnects, so mail that arrives meanwhile is still delivered.
func TestDovecotBlackhole(t *testing.T) {
	dc := testmail.StartDovecot(t, testmail.DovecotOptions{})
	proxy := testmail.StartProxy(t, dc.Addr())
	recv := testmail.StartReceiver(t, testmail.ReceiverOptions{Secret: testSecret})
	led := ledger{recv: recv}
	cfg, env := writeConfig(t, t.TempDir(), proxy.Addr(), dc.User(), dc.Password(), recv.URL()+"/hook", func(p *cfgParams) {
		p.IdleRefresh, p.CommandTimeout = "2s", "3s"
	})
	d := startDaemon(t, cfg, env...)
	waitReady(t, d)
	m := newMail()
	m.add(t, dc.Append, 3)
	led.waitDelivered(t, 30*time.Second, m.want())

	proxy.Freeze()
	m.add(t, dc.Append, 3) // arrives while the connection is a blackhole
	eventually(t, 30*time.Second, "a new connection after the freeze", func() bool { return proxy.TotalConnections() >= 2 })
	proxy.Unfreeze()
	want := m.want()
	led.waitDelivered(t, 30*time.Second, want)
	d.terminate()
	led.check(t, want, false)
}

// (e) A receiver answering 503 then 200 gets the retry under the same id; a 400 is dead-lettered
// at once and later messages are unaffected.
func TestDovecotRetryAndDeadLetter(t *testing.T) {
	var mu sync.Mutex
	attempts := map[string]int{} // webhook-id → attempts so far
	handler := func(n int, w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var p struct {
			Subject string `json:"subject"`
		}
		_ = json.Unmarshal(body, &p)
		mu.Lock()
		attempts[r.Header.Get("webhook-id")]++
		k := attempts[r.Header.Get("webhook-id")]
		mu.Unlock()
		switch {
		case strings.HasSuffix(p.Subject, "#1") && k == 1:
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
		case strings.HasSuffix(p.Subject, "#3"):
			w.WriteHeader(http.StatusBadRequest)
		default:
			w.WriteHeader(http.StatusOK)
		}
	}
	dc, led, cfg, env := startStack(t, testmail.DovecotOptions{}, testmail.ReceiverOptions{Handler: handler}, nil)
	d := startDaemon(t, cfg, env...)
	waitReady(t, d)
	m := newMail()
	m.add(t, dc.Append, 5) // #1 invoice (503 then 200), #2 personal, #3 CI (400), #4 invoice, #5 personal
	want := m.want()
	deliveredWant := []string{want[0], want[2]}
	led.waitDelivered(t, 30*time.Second, deliveredWant)
	// The receiver has answered; wait for the daemon to record the answers too, or SIGTERM may
	// interrupt the retry between the receiver's 200 and its record, and the job is rightly
	// requeued (at least once) instead of done. Seen once under load.
	eventually(t, 10*time.Second, "both deliveries and the dead letter recorded", func() bool {
		out := d.out.String()
		return strings.Count(out, `msg="webhook delivered"`) == 2 && strings.Contains(out, "job dead-lettered")
	})
	d.terminate()

	ok, ids := led.byMessage(t)
	if ok[want[1]] {
		t.Errorf("the 400 message was accepted?")
	}
	if len(ids[want[0]]) != 1 || len(ids[want[1]]) != 1 {
		t.Errorf("webhook-ids per message: %v; want one each", ids)
	}
	st := openState(t, cfg)
	for id := range ids[want[1]] {
		job, tries, err := st.Job(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if job.State != store.StateDead || len(tries) != 1 {
			t.Errorf("400 job: state %s after %d attempts; want dead after 1", job.State, len(tries))
		}
		if !strings.Contains(job.LastError, "400") {
			t.Errorf("400 job: last error %q does not name the status", job.LastError)
		}
	}
	for id := range ids[want[0]] {
		job, _, err := st.Job(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if job.State != store.StateDone {
			t.Errorf("503-then-200 job: state %s, want done", job.State)
		}
	}
	var tries int
	for _, d := range led.deliveries(t) {
		if d.MessageID == want[0] {
			tries++
		}
	}
	if tries != 2 {
		t.Errorf("503-then-200 message: %d requests, want 2", tries)
	}
}

// (f) A server without IDLE: polling still delivers.
func TestDovecotWithoutIdlePolls(t *testing.T) {
	dc, led, cfg, env := startStack(t, testmail.DovecotOptions{NoIdle: true}, testmail.ReceiverOptions{}, nil)
	d := startDaemon(t, cfg, env...)
	eventually(t, 20*time.Second, "the watcher to poll", func() bool { return strings.Contains(d.out.String(), "idle=false") })
	m := newMail()
	m.add(t, dc.Append, 2)
	want := m.want()
	led.waitDelivered(t, 45*time.Second, want) // poll_interval is 30s, the floor for any server
	d.terminate()
	led.check(t, want, true)
}

// (g) A crash at each point that matters: after the fetch, after the commit and
// after the webhook was sent but before it was marked done. Nothing is lost and a repeat keeps its
// webhook-id.
func TestDovecotFailpoints(t *testing.T) {
	for _, point := range []string{"after_fetch", "after_commit", "after_send"} {
		t.Run(point, func(t *testing.T) {
			dc, led, cfg, env := startStack(t, testmail.DovecotOptions{}, testmail.ReceiverOptions{}, nil)
			d := startDaemon(t, cfg, env...)
			waitReady(t, d)
			d.terminate() // the checkpoint exists now; the crash run starts from it
			d = startDaemon(t, cfg, append(env, "MAILHOOK_FAILPOINT="+point)...)
			m := newMail()
			m.add(t, dc.Append, 3)
			err, exited := d.wait(30 * time.Second)
			if !exited {
				t.Fatalf("failpoint %s never hit", point)
			}
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("process ended with %v; want killed by SIGKILL at %s", err, point)
			}
			before := len(led.recv.Requests())
			d = startDaemon(t, cfg, env...)
			// The requests in flight at the kill may all have arrived already: wait until the new
			// process is up, so the SIGTERM below does not come before its handler.
			waitReady(t, d)
			want := m.want()
			led.waitDelivered(t, 30*time.Second, want)
			d.terminate()
			led.check(t, want, false)
			if point == "after_send" && before == 0 {
				t.Errorf("after_send: nothing was sent before the crash")
			}
			t.Logf("%s: %d requests before the crash, %d in all, for %d messages", point, before, len(led.recv.Requests()), len(want))
		})
	}
}

// A crash in the middle of a batch: twelve messages wait when the daemon starts, so the catch-up
// handles them as one batch with one commit; the process is killed after the sixth was handled
// (after_fetch, nothing committed) or after the sixth webhook was sent (after_send). After a
// restart every message arrives, each under one stable webhook-id; with nothing committed before
// the crash, each arrives exactly once.
func TestDovecotFailpointMidBatch(t *testing.T) {
	for _, point := range []string{"after_fetch", "after_send"} {
		t.Run(point, func(t *testing.T) {
			dc, led, cfg, env := startStack(t, testmail.DovecotOptions{}, testmail.ReceiverOptions{}, nil)
			d := startDaemon(t, cfg, env...)
			waitReady(t, d)
			d.terminate() // the checkpoint exists now; the messages below wait as a backlog
			m := newMail()
			m.add(t, dc.Append, 12)
			d = startDaemon(t, cfg, append(env, "MAILHOOK_FAILPOINT="+point, "MAILHOOK_FAILPOINT_SKIP=5")...)
			err, exited := d.wait(60 * time.Second)
			if !exited {
				t.Fatalf("failpoint %s never hit", point)
			}
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("process ended with %v; want killed by SIGKILL at %s", err, point)
			}
			before := len(led.recv.Requests())
			d = startDaemon(t, cfg, env...)
			// The requests in flight at the kill may all have arrived already: wait until the new
			// process is up, so the SIGTERM below does not come before its handler.
			waitReady(t, d)
			want := m.want()
			led.waitDelivered(t, 60*time.Second, want)
			d.terminate()
			led.check(t, want, point == "after_fetch")
			if point == "after_fetch" && before != 0 {
				t.Errorf("after_fetch: %d webhooks sent before the crash, though nothing was committed", before)
			}
			t.Logf("%s: %d requests before the crash, %d in all, for %d messages", point, before, len(led.recv.Requests()), len(want))
		})
	}
}

// A second instance on the same state directory exits non-zero before opening any IMAP connection
// (one process per state directory).
func TestSecondInstanceRefused(t *testing.T) {
	mem := testmail.StartMemServer(t, testmail.MemOptions{})
	recv := testmail.StartReceiver(t, testmail.ReceiverOptions{Secret: testSecret})
	cfg, env := writeConfig(t, t.TempDir(), mem.Addr(), mem.User(), mem.Password(), recv.URL(), nil)
	d := startDaemon(t, cfg, env...)
	waitReady(t, d)
	conns := mem.TotalConnections()

	second := startDaemon(t, cfg, env...)
	err, exited := second.wait(20 * time.Second)
	if !exited {
		t.Fatal("second instance still running")
	}
	if err == nil {
		t.Fatal("second instance exited 0")
	}
	if !strings.Contains(second.out.String(), "lock") {
		t.Errorf("second instance output does not mention the lock:\n%s", second.out.String())
	}
	if got := mem.TotalConnections(); got != conns {
		t.Errorf("second instance opened %d IMAP connections", got-conns)
	}
	d.terminate()
}

// openState opens the state directory of a stopped daemon, for assertions on the outbox.
func openState(t *testing.T, cfg string) store.Backend {
	t.Helper()
	st, err := openStore(context.Background(), filepath.Join(filepath.Dir(cfg), "state"), false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// A bounce, a complaint and an invitation reach the daemon through Dovecot: the rule on
// bounce.kind fires for the bounce only (nothing is sent for the other two), and its payload
// carries the parsed report, read from the report part and the returned header.
func TestDovecotReportsDelivered(t *testing.T) {
	dc, led, cfg, env := startStack(t, testmail.DovecotOptions{}, testmail.ReceiverOptions{}, nil)
	d := startDaemon(t, cfg, env...)
	waitReady(t, d)
	for _, name := range []string{"bounce-postfix.eml", "arf-complaint.eml", "invite-google.eml"} {
		raw, err := os.ReadFile(fixture.Path(name))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := dc.Append("INBOX", raw); err != nil {
			t.Fatal(err)
		}
	}
	// Then a sample invoice, so that once it is delivered the three before it were handled.
	m := newMail()
	m.next = 2 // an invoice
	m.add(t, dc.Append, 1)
	want := append([]string{"<20261202081407.4QxY2Z1abc@mx1.example.net>"}, m.want()...)
	led.waitDelivered(t, 30*time.Second, want)
	d.terminate()
	led.check(t, want, true)
	var p struct {
		Rule   string `json:"rule"`
		Bounce *struct {
			Kind              string `json:"kind"`
			OriginalMessageID string `json:"original_message_id"`
			Recipients        []struct{ Address, Status string }
		} `json:"bounce"`
	}
	for _, r := range led.recv.Requests() {
		if err := json.Unmarshal(r.Body, &p); err != nil {
			t.Fatal(err)
		}
		if p.Rule == "hard-bounces" {
			break
		}
	}
	if b := p.Bounce; p.Rule != "hard-bounces" || b == nil || b.Kind != "hard" ||
		b.OriginalMessageID != "<inv-2026-0042.1764663245@shop.example.com>" || len(b.Recipients) != 1 ||
		b.Recipients[0].Address != "jane.doe@example.org" || b.Recipients[0].Status != "5.1.1" {
		t.Errorf("bounce payload %+v", p)
	}
}
