package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailhook/mailhook/internal/ops"
	"github.com/mailhook/mailhook/internal/testmail"
	"github.com/mailhook/mailhook/store"
)

// These process tests run the built binary with http.listen on a free loopback port and check
// /healthz, /readyz and /metrics from outside, as a kubelet or Prometheus would (issue 7).

var listeningRE = regexp.MustCompile(`msg="http listening" addr=(\S+)`)

// adminURL waits for the daemon to log its HTTP listener and returns its base URL.
func adminURL(t *testing.T, d *daemon) string {
	t.Helper()
	var addr string
	eventually(t, 20*time.Second, "the http listener", func() bool {
		m := listeningRE.FindStringSubmatch(d.out.String())
		if m != nil {
			addr = m[1]
		}
		return m != nil
	})
	return "http://" + addr
}

// probe GETs base+path and returns the status code and body ("" and 0 when unreachable).
func probe(t *testing.T, base, path string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// readyz GETs /readyz and decodes it.
func readyz(t *testing.T, base string) (int, ops.ReadyReport) {
	t.Helper()
	code, body := probe(t, base, "/readyz")
	var r ops.ReadyReport
	if code != 0 {
		if err := json.Unmarshal([]byte(body), &r); err != nil {
			t.Fatalf("/readyz body is not JSON: %v\n%s", err, body)
		}
	}
	return code, r
}

// mustLive fails unless /healthz answers 200.
func mustLive(t *testing.T, base string) {
	t.Helper()
	if code, body := probe(t, base, "/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz = %d, want 200:\n%s", code, body)
	}
}

// With Dovecot stopped, /readyz turns 503 naming the mailbox and its reason,
// while /healthz stays 200; when Dovecot returns, /readyz is 200 again.
func TestDovecotReadinessFollowsOutage(t *testing.T) {
	dc, _, cfg, env := startStack(t, testmail.DovecotOptions{}, testmail.ReceiverOptions{},
		func(p *cfgParams) { p.HTTPListen = "127.0.0.1:0" })
	d := startDaemon(t, cfg, env...)
	base := adminURL(t, d)
	eventually(t, 20*time.Second, "/readyz 200", func() bool {
		code, _ := readyz(t, base)
		return code == http.StatusOK
	})
	mustLive(t, base)

	if err := dc.Stop(); err != nil {
		t.Fatal(err)
	}
	var down ops.ReadyReport
	eventually(t, 30*time.Second, "/readyz 503 during the outage", func() bool {
		mustLive(t, base) // liveness never wavers during the outage
		code, r := readyz(t, base)
		down = r
		return code == http.StatusServiceUnavailable
	})
	if len(down.Mailboxes) != 1 {
		t.Fatalf("/readyz during the outage names %d mailboxes: %+v", len(down.Mailboxes), down)
	}
	mb := down.Mailboxes[0]
	if mb.Account != "test" || mb.Mailbox != "INBOX" || mb.Ready ||
		(mb.Reason != ops.ReasonReconnecting && mb.Reason != ops.ReasonConnecting) {
		t.Errorf("/readyz during the outage: %+v; want test/INBOX not ready, reconnecting or connecting", mb)
	}
	if mb.Reason == ops.ReasonReconnecting && (mb.Until == nil || mb.Detail == "") {
		t.Errorf("reconnecting without its next attempt or error: %+v", mb)
	}
	// Liveness holds over several reconnect attempts, not just the first.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		mustLive(t, base)
		time.Sleep(200 * time.Millisecond) // pacing of the probes, as a kubelet's period
	}

	if err := dc.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "/readyz 200 after the outage", func() bool {
		mustLive(t, base)
		code, _ := readyz(t, base)
		return code == http.StatusOK
	})
	d.terminate()
}

// Metrics move as expected across a delivery, a retry and a dead letter (scraped and parsed with
// the Prometheus text parser).
func TestMetricsAcrossDeliveryRetryDeadLetter(t *testing.T) {
	var mu sync.Mutex
	attempts := map[string]int{}
	handler := func(_ int, w http.ResponseWriter, r *http.Request) {
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
			// Retry-After beyond the in-process retry window: a durable retry, after
			// min(Retry-After, max_backoff 1s).
			w.Header().Set("Retry-After", "30")
			w.WriteHeader(http.StatusServiceUnavailable)
		case strings.HasSuffix(p.Subject, "#3"):
			w.WriteHeader(http.StatusBadRequest)
		default:
			w.WriteHeader(http.StatusOK)
		}
	}
	mem := testmail.StartMemServer(t, testmail.MemOptions{})
	recv := testmail.StartReceiver(t, testmail.ReceiverOptions{Secret: testSecret, Handler: handler})
	led := ledger{recv: recv}
	cfg, env := writeConfig(t, t.TempDir(), mem.Addr(), mem.User(), mem.Password(), recv.URL()+"/hook",
		func(p *cfgParams) { p.HTTPListen = "127.0.0.1:0" })
	d := startDaemon(t, cfg, env...)
	base := adminURL(t, d)
	waitReady(t, d)

	const mb = `{account="test",mailbox="INBOX"}`
	before := testmail.Scrape(t, base)
	for _, series := range []string{`mailhook_imap_sessions_total` + mb, `mailhook_outbox_depth`, `mailhook_dead_letter_depth`,
		`mailhook_imap_state{account="test",mailbox="INBOX",state="idle"}`} {
		if _, ok := before[series]; !ok {
			t.Errorf("%s missing before any mail", series)
		}
	}

	m := newMail()
	m.add(t, mem.Append, 5) // #1 invoice (503, then 200), #2 personal, #3 CI failure (400), #4 invoice, #5 personal
	want := m.want()
	led.waitDelivered(t, 30*time.Second, []string{want[0], want[2]})
	var after map[string]float64
	eventually(t, 20*time.Second, "the dead letter and an empty outbox in the metrics", func() bool {
		after = testmail.Scrape(t, base)
		return after["mailhook_dead_letter_depth"] == 1 && after["mailhook_outbox_depth"] == 0 &&
			after[`mailhook_webhook_deliveries_total{outcome="delivered",webhook="receiver"}`] == 2
	})
	for _, tc := range []struct {
		series string
		delta  float64
	}{
		{`mailhook_messages_seen_total` + mb, 5},
		{`mailhook_messages_matched_total` + mb, 3},
		{`mailhook_rule_matches_total{rule="invoices"}`, 2},
		{`mailhook_rule_matches_total{rule="ci-failures"}`, 1},
		{`mailhook_webhook_deliveries_total{outcome="delivered",webhook="receiver"}`, 2},
		{`mailhook_webhook_deliveries_total{outcome="retry",webhook="receiver"}`, 1},
		{`mailhook_webhook_deliveries_total{outcome="dead",webhook="receiver"}`, 1},
		{`mailhook_webhook_retries_total{webhook="receiver"}`, 1},
		{`mailhook_dead_letters_total{reason="rejected",webhook="receiver"}`, 1},
		{`mailhook_dead_letter_depth`, 1},
		{`mailhook_outbox_depth`, 0},
		{`mailhook_imap_reconnects_total` + mb, 0},
	} {
		if got := after[tc.series] - before[tc.series]; got != tc.delta {
			t.Errorf("%s moved by %v (%v → %v), want %v", tc.series, got, before[tc.series], after[tc.series], tc.delta)
		}
	}
	if after[`mailhook_imap_downloaded_bytes_total`+mb] <= before[`mailhook_imap_downloaded_bytes_total`+mb] {
		t.Error("IMAP bytes did not grow although five messages were fetched")
	}
	if _, ok := after[`mailhook_imap_seconds_since_last_activity`+mb]; !ok {
		t.Error("no seconds-since-last-activity series")
	}
	if after["mailhook_live"] != 1 || after[`mailhook_mailbox_ready`+mb] != 1 {
		t.Errorf("live %v ready %v, want 1 and 1", after["mailhook_live"], after[`mailhook_mailbox_ready`+mb])
	}
	code, body := probe(t, base, "/metrics")
	if code != http.StatusOK || strings.Contains(body, testIMAPPassword) || strings.Contains(body, mem.Password()) ||
		strings.Contains(body, strings.TrimPrefix(testSecret, "whsec_")) || strings.Contains(body, recv.URL()) {
		t.Errorf("/metrics (%d) exposes a secret or the webhook URL", code)
	}
	d.terminate()
}

// SIGTERM while mail streams in and deliveries are in flight exits 0 within 20 s,
// leaves no job in flight, and the next start delivers everything, under the same webhook-ids.
func TestSigtermMidStreamLosesNothing(t *testing.T) {
	slow := func(_ int, w http.ResponseWriter, r *http.Request) {
		select { // a slow receiver keeps deliveries in flight when SIGTERM lands
		case <-time.After(300 * time.Millisecond):
		case <-r.Context().Done():
		}
		w.WriteHeader(http.StatusOK)
	}
	mem := testmail.StartMemServer(t, testmail.MemOptions{})
	recv := testmail.StartReceiver(t, testmail.ReceiverOptions{Secret: testSecret, Handler: slow})
	led := ledger{recv: recv}
	dir := t.TempDir()
	cfg, env := writeConfig(t, dir, mem.Addr(), mem.User(), mem.Password(), recv.URL()+"/hook",
		func(p *cfgParams) { p.HTTPListen = "127.0.0.1:0" })
	d := startDaemon(t, cfg, env...)
	waitReady(t, d)

	m := newMail()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(40 * time.Millisecond): // pacing of the arrivals
				m.add(t, mem.Append, 1)
			}
		}
	})
	eventually(t, 30*time.Second, "deliveries under way", func() bool { return len(recv.Requests()) >= 4 })
	d.terminate() // exit 0 within 20 s, or the test fails
	out := d.out.String()
	if !strings.Contains(out, "mailhook stopped") {
		t.Errorf("no clean stop line in the log")
	}

	st, err := openStore(context.Background(), filepath.Join(dir, "state"), false)
	if err != nil {
		t.Fatal(err)
	}
	counts, err := st.Counts(context.Background())
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	if counts[store.StateInFlight] != 0 {
		t.Errorf("%d jobs left in flight after SIGTERM: %v", counts[store.StateInFlight], counts)
	}
	t.Logf("outbox after SIGTERM: %v", counts)

	d = startDaemon(t, cfg, env...)
	eventually(t, 30*time.Second, "deliveries after the restart", func() bool { return len(recv.Requests()) >= 10 })
	close(stop)
	wg.Wait()
	want := m.want()
	led.waitDelivered(t, 60*time.Second, want)
	d.terminate()
	led.check(t, want, false)
	t.Logf("%d messages matched, %d requests", len(want), len(recv.Requests()))
}

// Two accounts, one with a wrong password: the other delivers normally, /readyz names the broken
// one with auth_failed, /healthz stays 200, and no password reaches the log.
func TestTwoAccountsOneWrongPassword(t *testing.T) {
	good := testmail.StartMemServer(t, testmail.MemOptions{User: "good@example.test", Password: "good-pw-55Zq81"})
	bad := testmail.StartMemServer(t, testmail.MemOptions{User: "bad@example.test", Password: "right-pw-0Kd3Lx"})
	const wrong = "wrong-pw-Yh27Qe"
	recv := testmail.StartReceiver(t, testmail.ReceiverOptions{Secret: testSecret})
	led := ledger{recv: recv}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "mailhook.yaml")
	yaml := fmt.Sprintf(`state_dir: %s
log: {level: debug, format: text}
http: {listen: "127.0.0.1:0"}
accounts:
  - name: good
    imap: {host: 127.0.0.1, port: %s, security: plain, username: good@example.test, password: "${GOOD_PW}",
           idle_refresh: 5s, backoff: {min: 100ms, max: 1s, auth_min: 1s, quota_min: 1s}}
  - name: bad
    imap: {host: 127.0.0.1, port: %s, security: plain, username: bad@example.test, password: "${BAD_PW}",
           idle_refresh: 5s, backoff: {min: 100ms, max: 1s, auth_min: 1s, quota_min: 1s}}
webhooks:
  - {name: receiver, url: "%s/hook", secrets: ["${TEST_WEBHOOK_SECRET}"], retry: {max_age: 1h, min_backoff: 200ms, max_backoff: 1s}}
rules:
  - name: ci-failures
    when: 'from.address endsWith "@github.com" && subject contains "failed"'
    actions: [{webhook: receiver}]
  - name: invoices
    when: 'subject matches "(?i)invoice"'
    actions: [{webhook: receiver}]
`, filepath.Join(dir, "state"), port(t, good.Addr()), port(t, bad.Addr()), recv.URL())
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, cfg, "GOOD_PW=good-pw-55Zq81", "BAD_PW="+wrong, "TEST_WEBHOOK_SECRET="+testSecret)
	base := adminURL(t, d)
	eventually(t, 20*time.Second, "the good account's watcher to be ready", func() bool {
		return strings.Contains(d.out.String(), `msg="session ready" account=good`)
	})

	m := newMail()
	m.add(t, good.Append, 6)
	if _, err := bad.Append("INBOX", testmail.Sample(99, testmail.SampleOptions{Kind: testmail.CIFailure})); err != nil {
		t.Fatal(err)
	}
	want := m.want()
	led.waitDelivered(t, 30*time.Second, want)

	var r ops.ReadyReport
	eventually(t, 20*time.Second, "/readyz to name the bad account", func() bool {
		var code int
		code, r = readyz(t, base)
		return code == http.StatusServiceUnavailable && len(r.Mailboxes) == 2 && r.Mailboxes[1].Reason == ops.ReasonAuthFailed
	})
	if g, b := r.Mailboxes[0], r.Mailboxes[1]; g.Account != "good" || !g.Ready || b.Account != "bad" || b.Ready {
		t.Errorf("/readyz mailboxes %+v; want good ready, bad not", r.Mailboxes)
	}
	// The reason is a code and a scrubbed text: the login error names the user, and stays in the log.
	if _, body := probe(t, base, "/readyz"); strings.Contains(body, "bad@example.test") || !strings.Contains(d.out.String(), "bad@example.test") {
		t.Errorf("/readyz names the user (or the log does not):\n%s", body)
	}
	mustLive(t, base)
	// The bad account keeps retrying (after backoff.auth_min) without holding up the good one.
	eventually(t, 20*time.Second, "a second login attempt of the bad account", func() bool { return bad.TotalConnections() >= 2 })

	// SIGTERM while the good watcher idles ends its IDLE with DONE (the debug log says why).
	eventually(t, 20*time.Second, "the good watcher to idle", func() bool {
		_, r := readyz(t, base)
		return len(r.Mailboxes) == 2 && r.Mailboxes[0].State == "idle"
	})
	d.terminate()
	led.check(t, want, true)
	out := d.out.String()
	if !strings.Contains(out, `why=stop`) {
		t.Errorf("no IDLE ended by the shutdown in the log")
	}
	if strings.Contains(out, "use of closed network connection") {
		t.Errorf("the shutdown closed the IMAP connection under a command instead of sending DONE and LOGOUT")
	}
	for _, secret := range []string{"good-pw-55Zq81", wrong, strings.TrimPrefix(testSecret, "whsec_")} {
		if strings.Contains(out, secret) {
			t.Errorf("the log contains a secret (%.6s…)", secret)
		}
	}
}

// port returns the port of a host:port address.
func port(t *testing.T, addr string) string {
	t.Helper()
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		t.Fatalf("address %q has no port", addr)
	}
	return addr[i+1:]
}

// The healthcheck verb (the container's HEALTHCHECK) exits 0 against a live daemon, reading the
// address from the config, and 1 when nothing answers.
func TestHealthcheckVerb(t *testing.T) {
	mem := testmail.StartMemServer(t, testmail.MemOptions{})
	recv := testmail.StartReceiver(t, testmail.ReceiverOptions{Secret: testSecret})
	cfg, env := writeConfig(t, t.TempDir(), mem.Addr(), mem.User(), mem.Password(), recv.URL()+"/hook",
		func(p *cfgParams) { p.HTTPListen = "127.0.0.1:0" })
	d := startDaemon(t, cfg, env...)
	base := adminURL(t, d)
	addr := strings.TrimPrefix(base, "http://")
	waitReady(t, d)

	var stdout, stderr strings.Builder
	if code := cli(context.Background(), []string{"healthcheck", "--addr", addr}, &stdout, &stderr); code != exitOK {
		t.Errorf("healthcheck against a live daemon = %d: %s", code, stderr.String())
	}
	eventually(t, 20*time.Second, "readiness", func() bool {
		return cli(context.Background(), []string{"healthcheck", "--ready", "--addr", addr}, io.Discard, io.Discard) == exitOK
	})
	// With the config: its http.listen is 127.0.0.1:0, which names no daemon; --addr wins over it.
	if code := cli(context.Background(), []string{"healthcheck", "-c", cfg, "--addr", addr}, io.Discard, &stderr); code != exitOK {
		t.Errorf("healthcheck -c --addr = %d: %s", code, stderr.String())
	}
	d.terminate()
	stderr.Reset()
	if code := cli(context.Background(), []string{"healthcheck", "--addr", addr, "--timeout", "2s"}, io.Discard, &stderr); code != exitFail {
		t.Errorf("healthcheck against a stopped daemon = %d, want %d", code, exitFail)
	}
	_ = env
}
