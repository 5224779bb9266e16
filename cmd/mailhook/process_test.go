package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/template"
	"time"
)

// binPath is the mailhook binary the process tests run, built once by TestMain without -race (SQLite
// is several times slower under it) and with the failpoints tag, so MAILHOOK_FAILPOINT works.
var binPath string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "mailhook-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binPath = filepath.Join(dir, "mailhook")
	cmd := exec.Command("go", "build", "-tags", "failpoints", "-o", binPath, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build mailhook: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// daemon is one `mailhook run` subprocess.
type daemon struct {
	t    testing.TB
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error // exit error, valid after done
}

// syncBuffer is a goroutine-safe bytes.Buffer for a subprocess's combined output.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// startDaemon runs `mailhook run -c cfg` with extra environment entries ("K=V").
func startDaemon(t testing.TB, cfg string, env ...string) *daemon {
	t.Helper()
	d := &daemon{t: t, out: &syncBuffer{}, done: make(chan struct{})}
	d.cmd = exec.Command(binPath, "run", "-c", cfg)
	d.cmd.Env = append(os.Environ(), env...)
	d.cmd.Stdout = d.out
	d.cmd.Stderr = d.out
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("start mailhook: %v", err)
	}
	go func() {
		d.err = d.cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(func() {
		select {
		case <-d.done:
		default:
			_ = d.cmd.Process.Kill()
			<-d.done
		}
		if t.Failed() {
			t.Logf("mailhook output:\n%s", d.out.String())
		}
	})
	return d
}

// wait waits for the process to exit and returns its exit error (nil for status 0).
func (d *daemon) wait(timeout time.Duration) (error, bool) {
	select {
	case <-d.done:
		return d.err, true
	case <-time.After(timeout):
		return nil, false
	}
}

// kill sends SIGKILL and waits for the process to go.
func (d *daemon) kill() {
	_ = d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.done
}

// terminate sends SIGTERM and requires a clean exit (status 0) within 20 s.
func (d *daemon) terminate() {
	d.t.Helper()
	start := time.Now()
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	err, ok := d.wait(20 * time.Second)
	if !ok {
		d.t.Fatalf("mailhook still running 20s after SIGTERM")
	}
	if err != nil {
		d.t.Fatalf("mailhook exited with %v after SIGTERM (want status 0)", err)
	}
	d.t.Logf("SIGTERM → exit 0 in %s", time.Since(start).Round(time.Millisecond))
}

// testConfig is the YAML the process tests run with.
var testConfig = template.Must(template.New("cfg").Parse(`state_dir: {{.StateDir}}
log: {level: debug, format: text}
http: {listen: "{{.HTTPListen}}"}
accounts:
  - name: test
    imap:
      host: {{.Host}}
      port: {{.Port}}
      security: plain
      username: {{.User}}
      password: ${TEST_IMAP_PASSWORD}
      mailboxes: [{{or .Mailbox "INBOX"}}]
      start: {{or .Start "new"}}
      idle_refresh: {{or .IdleRefresh "5s"}}
      poll_interval: 30s
      command_timeout: {{or .CommandTimeout "10s"}}
      trusted_authserv_id: mx.google.com
      backoff: {min: 100ms, max: 1s, auth_min: 1s, quota_min: 1s}
{{- with .Limits}}
    limits: {{.}}
{{- end}}
webhooks:
  - name: receiver
    url: {{.URL}}
    secrets: ["${TEST_WEBHOOK_SECRET}"]
    body: {{or .Body "text"}}
    retry: {max_age: 1h, min_backoff: 200ms, max_backoff: 1s}
rules:
  - name: ci-failures
    when: 'from.address endsWith "@github.com" && auth.dmarc == "pass" && subject contains "failed"'
    actions:
      - webhook: receiver
  - name: invoices
    when: 'subject matches "(?i)invoice" && any(attachments, .content_type == "application/pdf")'
    actions:
      - webhook: receiver
  - name: hard-bounces
    when: 'bounce.kind == "hard"'
    actions:
      - webhook: receiver
`))

// testSecret signs the process tests' webhooks.
const testSecret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"

// cfgParams fill testConfig.
type cfgParams struct {
	StateDir, Host, Port, User, URL, Mailbox, Start, IdleRefresh, CommandTimeout string
	Body                                                                         string // the webhook's body:, "" means text
	HTTPListen                                                                   string // "" disables; "127.0.0.1:0" picks a port (see adminAddr)
	Limits                                                                       string // the account's limits: as flow YAML, "" for the defaults
}

// writeConfig writes a config for the IMAP server at addr and the receiver at url; it returns the
// path and the environment the daemon needs.
func writeConfig(t testing.TB, dir, addr, user, password, url string, edit func(*cfgParams)) (string, []string) {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	p := cfgParams{StateDir: filepath.Join(dir, "state"), Host: host, Port: port, User: user, URL: url}
	if edit != nil {
		edit(&p)
	}
	var b strings.Builder
	if err := testConfig.Execute(&b, p); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "mailhook.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, []string{"TEST_IMAP_PASSWORD=" + password, "TEST_WEBHOOK_SECRET=" + testSecret}
}

// eventually polls cond every 20 ms until it holds or the deadline passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		case <-tick.C:
		}
	}
}
