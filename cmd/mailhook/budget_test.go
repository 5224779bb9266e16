package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailhook/mailhook/internal/testmail"
	"github.com/mailhook/mailhook/store"
	"github.com/mailhook/mailhook/store/sqlite"
	"github.com/mailhook/mailhook/watcher"
)

// statusOutput runs `mailhook status -c cfg` (the built binary) and returns its output.
func statusOutput(t *testing.T, cfg string, env []string) string {
	t.Helper()
	cmd := exec.Command(binPath, "status", "-c", cfg)
	cmd.Env = append(cmd.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("mailhook status: %v\n%s", err, out)
	}
	return string(out)
}

var budgetUsedRE = regexp.MustCompile(`download budget ([0-9.]+)(MB|kB|B) used of [0-9.]+(MB|kB|B)`)

// budgetUsed parses the bytes used from a status report (to the precision it prints).
func budgetUsed(t *testing.T, out string) float64 {
	t.Helper()
	m := budgetUsedRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no budget line in status output:\n%s", out)
	}
	n, _ := strconv.ParseFloat(m[1], 64)
	return n * map[string]float64{"MB": 1e6, "kB": 1e3, "B": 1}[m[2]]
}

// TestDovecotStatusBesideRun: `mailhook status` reads the state while `run` runs (checkpoint,
// outbox, budget), and the download budget survives a restart of the daemon.
func TestDovecotStatusBesideRun(t *testing.T) {
	dc, led, cfg, env := startStack(t, testmail.DovecotOptions{}, testmail.ReceiverOptions{}, nil)
	d := startDaemon(t, cfg, env...)
	waitReady(t, d)
	m := newMail()
	m.add(t, dc.Append, 6)
	led.waitDelivered(t, 30*time.Second, m.want())

	var out string
	eventually(t, 20*time.Second, "status to show the bytes downloaded", func() bool {
		out = statusOutput(t, cfg, env)
		return budgetUsed(t, out) > 0 // written behind every 5 s
	})
	for _, want := range []string{"account test: download budget", "not throttled", "INBOX: uidvalidity",
		"last uid 6", "outbox 0", "dead letters 0"} {
		if !strings.Contains(out, want) {
			t.Errorf("status output lacks %q:\n%s", want, out)
		}
	}
	d.terminate()
	before := budgetUsed(t, statusOutput(t, cfg, env))

	d = startDaemon(t, cfg, env...)
	waitReady(t, d)
	if after := budgetUsed(t, statusOutput(t, cfg, env)); after < before {
		t.Errorf("budget used %v bytes before the restart, %v after", before, after)
	}
	d.terminate()
}

// TestDovecotBudgetSharedWithTool: `mailhook test --last` run beside the daemon shares the
// account's download budget with it through the state: after the tool read most of the day's
// limit, the daemon fetches only what is left and is throttled, and the two together stay within
// the limit. (Before, the daemon read the budget only at start and granted the whole limit again.)
func TestDovecotBudgetSharedWithTool(t *testing.T) {
	const limit = 400_000
	dc, led, cfg, env := startStack(t, testmail.DovecotOptions{}, testmail.ReceiverOptions{}, func(p *cfgParams) {
		p.Limits = "{download_per_day: 400kB, max_message_size: 100kB}"
	})
	// ~34 kB each, nearly all text; matched by ci-failures, whose webhook (body: text) ships the text.
	big := func(i int) []byte {
		var b strings.Builder
		fmt.Fprintf(&b, "From: GitHub <notifications@github.com>\r\nTo: test@example.com\r\n"+
			"Subject: [acme/app] Run failed: CI #%d\r\nMessage-ID: <budget-%d@example.com>\r\n"+
			"Date: %s\r\nAuthentication-Results: mx.google.com; dkim=pass header.d=github.com; "+
			"spf=pass smtp.mailfrom=github.com; dmarc=pass (p=REJECT) header.from=github.com\r\n"+
			"Content-Type: text/plain; charset=utf-8\r\n\r\n", i, i, time.Now().Format(time.RFC1123Z))
		for l := range 500 {
			fmt.Fprintf(&b, "step %03d of run %d: the build log goes on and on, line after line.\r\n", l, i)
		}
		return []byte(b.String())
	}
	for i := range 8 {
		if _, err := dc.Append("INBOX", big(i)); err != nil {
			t.Fatal(err)
		}
	}
	d := startDaemon(t, cfg, env...) // start: new: the 8 are the tool's alone
	waitReady(t, d)

	tool := exec.Command(binPath, "test", "-c", cfg, "--account", "test", "--last", "8", "--json")
	tool.Env = append(tool.Environ(), env...)
	var stderr bytes.Buffer
	tool.Stderr = &stderr
	if err := tool.Run(); err != nil {
		t.Fatalf("mailhook test --last 8: %v\n%s", err, stderr.String())
	}
	afterTool := budgetUsed(t, statusOutput(t, cfg, env))
	if afterTool < 250_000 {
		t.Fatalf("the tool's 8 messages charged %v bytes, want ≥ 250 kB", afterTool)
	}

	var ids []string
	for i := 8; i < 14; i++ {
		if _, err := dc.Append("INBOX", big(i)); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, fmt.Sprintf("<budget-%d@example.com>", i))
	}
	var out string
	eventually(t, 30*time.Second, "the daemon to be throttled", func() bool {
		out = statusOutput(t, cfg, env)
		return strings.Contains(out, "throttled until")
	})
	d.terminate()
	out = statusOutput(t, cfg, env)
	if used := budgetUsed(t, out); used > limit {
		t.Errorf("daemon and tool together used %v bytes of a %d-byte budget:\n%s", used, limit, out)
	}
	delivered := 0
	for _, dl := range led.deliveries(t) {
		if slices.Contains(ids, dl.MessageID) {
			delivered++
		}
	}
	if delivered == len(ids) {
		t.Errorf("the daemon delivered all %d messages (~34 kB each) beside the tool's %v bytes", len(ids), afterTool)
	}
	t.Logf("tool %v bytes; daemon delivered %d of %d before the budget ran out\n%s", afterTool, delivered, len(ids), out)
}

// TestConnectionCap checks one connection per watched mailbox in the whole program: three watched mailboxes hold exactly three
// IMAP connections, as counted by the server, through IDLE cycles and forced reconnects.
func TestConnectionCap(t *testing.T) {
	srv := testmail.StartMemServer(t, testmail.MemOptions{Mailboxes: []string{"Work", "Archive"}})
	recv := testmail.StartReceiver(t, testmail.ReceiverOptions{Secret: testSecret})
	cfg, env := writeConfig(t, t.TempDir(), srv.Addr(), srv.User(), srv.Password(), recv.URL()+"/hook", func(p *cfgParams) {
		p.Mailbox, p.IdleRefresh = "INBOX, Work, Archive", "1s"
	})
	vars := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	var stderr bytes.Buffer
	l, code := load(cfg, func(k string) (string, bool) { v, ok := vars[k]; return v, ok }, &stderr)
	if code != exitOK {
		t.Fatalf("load: %s", stderr.String())
	}
	if got := l.cfg.Accounts[0].Limits.MaxConnections; got != 4 {
		t.Fatalf("max_connections = %d, want the default 4", got)
	}
	a, err := newApp(context.Background(), l, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Error("app did not stop")
		}
	})
	idles := func(n int) bool {
		for _, w := range a.watchers {
			if w.Status().Idles < n {
				return false
			}
		}
		return true
	}
	eventually(t, 20*time.Second, "every mailbox through two IDLE cycles", func() bool { return idles(2) })
	if dropped := srv.DropConnections(); dropped != 3 {
		t.Errorf("dropped %d connections, want 3", dropped)
	}
	eventually(t, 20*time.Second, "every mailbox reconnected and idling", func() bool {
		for _, w := range a.watchers {
			if st := w.Status(); st.Connects < 2 || st.State != watcher.StateIdle {
				return false
			}
		}
		return true
	})
	if peak, open := srv.MaxConnections(), srv.Connections(); peak != 3 || open != 3 {
		t.Errorf("server saw a peak of %d connections, %d open; want 3 (one per mailbox, cap %d)",
			peak, open, l.cfg.Accounts[0].Limits.MaxConnections)
	}
	if len(a.budgets) != 1 {
		t.Errorf("%d budgets for one account", len(a.budgets))
	}
	for _, w := range a.watchers {
		if u := w.Status().Budget; u.Limit != 2_000_000_000 || u.Used == 0 {
			t.Errorf("watcher budget figures %+v", u)
		}
	}
}

// TestPollFloorReachesWatcher: the poll_interval floors (30 s anywhere, 10 m for Gmail) are what
// the watchers run with, not only what the config reports.
func TestPollFloorReachesWatcher(t *testing.T) {
	for _, tc := range []struct {
		host string
		want time.Duration
	}{{"imap.gmail.com", 10 * time.Minute}, {"imap.example.com", 30 * time.Second}} {
		yaml := strings.Replace(cfgMinimalYAML, "imap.example.com", tc.host, 1)
		yaml = strings.Replace(yaml, "      password: hunter2", "      password: hunter2\n      poll_interval: 5s", 1)
		path := cfgWrite(t, yaml)
		var stderr bytes.Buffer
		l, code := load(path, cfgEnv(nil), &stderr)
		if code != exitOK {
			t.Fatalf("%s: load: %s", tc.host, stderr.String())
		}
		if !strings.Contains(stderr.String(), "poll_interval") {
			t.Errorf("%s: no warning about poll_interval: %q", tc.host, stderr.String())
		}
		wc, err := watcherConfig(l, l.cfg.Accounts[0], "INBOX", slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		if wc.PollInterval != tc.want || wc.MaxMessageSize != 25_000_000 {
			t.Errorf("%s: watcher poll interval %v, max message size %d; want %v, 25000000",
				tc.host, wc.PollInterval, wc.MaxMessageSize, tc.want)
		}
	}
}

// TestStatusWithoutState: status on a fresh state directory names every configured mailbox;
// without a state directory it says so and creates none.
func TestStatusWithoutState(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	yaml := "state_dir: " + state + "\n" + cfgMinimalYAML
	var stdout, stderr bytes.Buffer
	if code := cli(context.Background(), []string{"status", "-c", cfgWrite(t, yaml)}, &stdout, &stderr); code != exitFail ||
		!strings.Contains(stderr.String(), "no state at "+state) {
		t.Fatalf("status without state: exit %d: %s", code, stderr.String())
	}
	if _, err := os.Stat(state); err == nil {
		t.Fatal("status created the state directory")
	}
	st, err := sqlite.Open(state, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	stderr.Reset()
	if code := cli(context.Background(), []string{"status", "-c", cfgWrite(t, yaml)}, &stdout, &stderr); code != exitOK {
		t.Fatalf("status exit %d: %s", code, stderr.String())
	}
	for _, want := range []string{"account work: download budget 0B used of 2000.0MB in the last 24h, 2000.0MB remaining",
		"not throttled", "INBOX: no checkpoint yet"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("status output lacks %q:\n%s", want, stdout.String())
		}
	}
}
