package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"text/template"
	"time"

	"github.com/mailhook/mailhook/internal/testmail"
	"github.com/mailhook/mailhook/message"
	"github.com/mailhook/mailhook/reply"
	"github.com/mailhook/mailhook/store"
)

// replyConfig is the YAML of the in-process reply and post-action tests.
var replyConfig = template.Must(template.New("cfg").Delims("[[", "]]").Parse(`state_dir: [[.StateDir]]
log: {level: debug, format: text}
http: {listen: ""}
accounts:
  - name: [[.Name]]
    imap:
      host: 127.0.0.1
      port: [[.IMAPPort]]
      security: plain
      username: [[.User]]
      password: ${TEST_IMAP_PASSWORD}
      mailboxes: ["[[.Mailbox]]"]
      idle_refresh: 5s
      command_timeout: 10s
      backoff: {min: 100ms, max: 1s, auth_min: 1s, quota_min: 1s}
[[- if .SMTPPort]]
    smtp:
      host: 127.0.0.1
      port: [[.SMTPPort]]
      security: plain
      from: [[.From]]
      envelope_from: [[.From]]
[[- end]]
[[- if .URL]]
webhooks:
  - name: receiver
    url: [[.URL]]
    secrets: ["${TEST_WEBHOOK_SECRET}"]
    retry: {max_age: 1h, min_backoff: 200ms, max_backoff: 1s}
[[- end]]
replies:
  - name: ack
    subject: "Re: {{ .Subject }}"
    body: "Hello {{ .From.Name }}, we got your message."
rules:
  - name: auto
    when: 'true'
    actions:
[[- range .Actions]]
      - [[.]]
[[- end]]
`))

type replyParams struct {
	StateDir, Name, User, Mailbox, From, URL string
	IMAPPort, SMTPPort                       string
	Actions                                  []string
}

// logBuf is a goroutine-safe log sink.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startInProcess loads a config written from p and runs the app until the test ends. It returns
// the app's log and state directory.
func startInProcess(t *testing.T, p replyParams) (*logBuf, string) {
	t.Helper()
	dir := t.TempDir()
	p.StateDir = filepath.Join(dir, "state")
	var b strings.Builder
	if err := replyConfig.Execute(&b, p); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "mailhook.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"TEST_IMAP_PASSWORD": testIMAPPassword, "TEST_WEBHOOK_SECRET": testSecret}
	var stderr bytes.Buffer
	l, code := load(path, func(k string) (string, bool) { v, ok := env[k]; return v, ok }, &stderr)
	if code != exitOK {
		t.Fatalf("load: %s", stderr.String())
	}
	logs := &logBuf{}
	a, err := newApp(context.Background(), l, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("app %s: %v", p.Name, err)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("app %s did not stop", p.Name)
		}
		if t.Failed() {
			t.Logf("app %s log:\n%s", p.Name, logs.String())
		}
	})
	eventually(t, 20*time.Second, p.Name+" to be ready", func() bool { return strings.Contains(logs.String(), "session ready") })
	return logs, p.StateDir
}

func imapPort(t *testing.T, addr string) string {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// human is a message a person wrote, as final delivery stores it (with Return-Path).
func human(from, to, subject, id string) []byte {
	return fmt.Appendf(nil, "Return-Path: <%s>\r\nReceived: from mx by mx; Mon, 2 Mar 2026 10:00:00 +0000\r\n"+
		"From: Someone <%s>\r\nTo: <%s>\r\nSubject: %s\r\nDate: Mon, 2 Mar 2026 10:00:00 +0000\r\n"+
		"Message-ID: <%s>\r\n\r\nHello.\r\n", from, from, to, subject, id)
}

// Two mailhook instances auto-replying to each other's mailboxes produce at most one reply each:
// A answers B's human mail, B answers A's; each reply lands in the other's mailbox (the SMTP sink
// delivers it there, as a relay would) and is not answered (Auto-Submitted); a second human
// mail from the same sender gets no second reply (the ledger).
func TestDovecotTwoInstancesNoReplyLoop(t *testing.T) {
	dc := testmail.StartDovecot(t, testmail.DovecotOptions{Password: testIMAPPassword, Mailboxes: []string{"A", "B"}})
	boxes := map[string]string{"a@example.test": "A", "b@example.test": "B"}
	sink := testmail.StartSMTPSink(t, testmail.SMTPSinkOptions{Deliver: func(from string, to []string, raw []byte) error {
		for _, rcpt := range to {
			box, ok := boxes[strings.ToLower(rcpt)]
			if !ok {
				return fmt.Errorf("no mailbox for %s", rcpt)
			}
			delivered := append([]byte("Return-Path: <"+from+">\r\n"), raw...)
			if _, err := dc.Append(box, delivered); err != nil {
				return err
			}
		}
		return nil
	}})
	common := replyParams{User: dc.User(), IMAPPort: imapPort(t, dc.Addr()), SMTPPort: imapPort(t, sink.Addr()), Actions: []string{"reply: ack"}}
	pa, pb := common, common
	pa.Name, pa.Mailbox, pa.From = "alpha", "A", "a@example.test"
	pb.Name, pb.Mailbox, pb.From = "beta", "B", "b@example.test"
	logA, _ := startInProcess(t, pa)
	logB, _ := startInProcess(t, pb)

	if _, err := dc.Append("A", human("b@example.test", "a@example.test", "Hi A", "h1@example.test")); err != nil {
		t.Fatal(err)
	}
	if _, err := dc.Append("B", human("a@example.test", "b@example.test", "Hi B", "h2@example.test")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := sink.WaitFor(ctx, func(s *testmail.SMTPSink) bool { return len(s.Messages()) >= 2 }); err != nil {
		t.Fatalf("two replies: %v (got %d)", err, len(sink.Messages()))
	}
	// Each instance sees the other's reply in its mailbox and does not answer it.
	for name, logs := range map[string]*logBuf{"alpha": logA, "beta": logB} {
		eventually(t, 30*time.Second, name+" to skip the other's auto-reply", func() bool {
			return strings.Contains(logs.String(), "reason="+reply.SkipAutoSubmitted)
		})
	}
	// A second human message from the same sender: no second reply within once_per.
	if _, err := dc.Append("A", human("b@example.test", "a@example.test", "Hi again", "h3@example.test")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "alpha to skip the repeat sender", func() bool {
		return strings.Contains(logA.String(), "reason=already_replied")
	})

	msgs := sink.Messages()
	var got []string
	for _, m := range msgs {
		got = append(got, m.From+"→"+strings.Join(m.To, ","))
		mm, err := message.Parse(bytes.NewReader(m.Data), message.Limits{})
		if err != nil || mm.Header("Auto-Submitted") != "auto-replied" {
			t.Errorf("reply %s: Auto-Submitted %q (%v)", got[len(got)-1], mm.Header("Auto-Submitted"), err)
		}
	}
	slices.Sort(got)
	if want := []string{"a@example.test→b@example.test", "b@example.test→a@example.test"}; !slices.Equal(got, want) {
		t.Errorf("replies %v, want exactly %v", got, want)
	}
}

// sniffProxy forwards TCP to target and records what clients sent.
type sniffProxy struct {
	ln   net.Listener
	mu   sync.Mutex
	sent bytes.Buffer
}

func startSniffProxy(t *testing.T, target string) *sniffProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &sniffProxy{ln: ln}
	var wg sync.WaitGroup
	var conns []net.Conn
	var cmu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			cmu.Lock()
			conns = append(conns, c, s)
			cmu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); io.Copy(s, io.TeeReader(c, p)); s.Close() }()
			go func() { defer wg.Done(); io.Copy(c, s); c.Close() }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		cmu.Lock()
		for _, c := range conns {
			c.Close()
		}
		cmu.Unlock()
		wg.Wait()
	})
	return p
}

func (p *sniffProxy) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sent.Write(b)
}

func (p *sniffProxy) Sent() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sent.String()
}

func (p *sniffProxy) Addr() string { return p.ln.Addr().String() }

// Post-actions through the whole daemon on a real server: a message whose webhook succeeded is
// flagged, marked seen and moved; one whose webhook was dead-lettered stays untouched, its
// post-actions held; mailhook never APPENDs (it spends none of Gmail's upload allowance).
func TestDovecotPostActionsAfterWebhook(t *testing.T) {
	dc := testmail.StartDovecot(t, testmail.DovecotOptions{Password: testIMAPPassword, Mailboxes: []string{"Done"}})
	sniff := startSniffProxy(t, dc.Addr())
	recv := testmail.StartReceiver(t, testmail.ReceiverOptions{Secret: testSecret, Handler: func(_ int, w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if bytes.Contains(body, []byte("FAIL")) {
			w.WriteHeader(http.StatusBadRequest) // permanent: dead-lettered at once
			return
		}
		w.WriteHeader(http.StatusOK)
	}})
	p := replyParams{Name: "test", User: dc.User(), IMAPPort: imapPort(t, sniff.Addr()), Mailbox: "INBOX", URL: recv.URL() + "/hook",
		Actions: []string{"webhook: receiver", `flag: ['\Flagged', '$Handled']`, "mark_seen: true", "move: Done"}}
	logs, stateDir := startInProcess(t, p)

	failUID, err := dc.Append("INBOX", human("x@example.test", "y@example.test", "FAIL please", "f1@example.test"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dc.Append("INBOX", human("x@example.test", "y@example.test", "all fine", "o1@example.test")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the good message moved", func() bool {
		f, err := dc.Flags("Done", 1)
		return err == nil && len(f) > 0 && strings.Contains(logs.String(), "post-action done")
	})
	eventually(t, 30*time.Second, "the move's outcome recorded", func() bool {
		return strings.Count(logs.String(), "post-action done") >= 3
	})
	flags, err := dc.Flags("Done", 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`\Seen`, `\Flagged`, "$Handled"} {
		if !slices.ContainsFunc(flags, func(f string) bool { return strings.EqualFold(f, want) }) {
			t.Errorf("moved message flags %v lack %s", flags, want)
		}
	}

	// The failed message: its webhook is dead, its post-actions held, its flags untouched.
	st, err := openStore(context.Background(), stateDir, true)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	count := func() (dead, held int) {
		jobs, err := st.Jobs(ctx, store.Filter{})
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range jobs {
			if j.UID != failUID {
				continue
			}
			switch {
			case j.Kind == store.KindWebhook && j.State == store.StateDead:
				dead++
			case j.Kind == store.KindPostAction && j.State == store.StatePending:
				held++
			default:
				t.Errorf("failed message's job %s (%s) is %s", j.ID, j.Target, j.State)
			}
		}
		return dead, held
	}
	eventually(t, 30*time.Second, "the failed message's webhook dead-lettered", func() bool {
		dead, _ := count()
		return dead == 1
	})
	// The watcher has had its wake-ups since (the good message's three post-actions ran after
	// the failed webhook was settled or alongside it); the held ones are still pending.
	if dead, held := count(); dead != 1 || held != 3 {
		t.Errorf("failed message: %d dead webhooks, %d held post-actions; want 1 and 3", dead, held)
	}
	f, err := dc.Flags("INBOX", failUID)
	if err != nil {
		t.Fatalf("the failed message left INBOX: %v", err)
	}
	if slices.ContainsFunc(f, func(x string) bool { return strings.EqualFold(x, `\Seen`) || strings.EqualFold(x, `\Flagged`) }) {
		t.Errorf("failed message flags %v changed", f)
	}
	sent := strings.ToUpper(sniff.Sent())
	if !strings.Contains(sent, "MOVE") {
		t.Error("sniffer saw no MOVE: it does not see the daemon's traffic")
	}
	if strings.Contains(sent, "APPEND") {
		t.Error("mailhook sent an IMAP APPEND (C67)")
	}
}

// TestReplyTemplateErrorsNameTheField: a template that does not parse (or names a field the
// message lacks) is a config error naming the field, at load time.
func TestReplyTemplateErrorsNameTheField(t *testing.T) {
	for _, tc := range []struct{ subject, body, want string }{
		{"Re: {{ .Subject ", "ok", `replies[0] "ack".subject: `},
		{"Re", "{{ .Nope }}", `replies[0] "ack".body: `},
	} {
		dir := t.TempDir()
		cfg := fmt.Sprintf(`state_dir: %s
accounts:
  - name: a
    imap: {host: 127.0.0.1, port: 1143, security: plain, username: u@example.test, password: p}
    smtp: {host: 127.0.0.1, port: 2525, security: plain, from: u@example.test}
replies:
  - name: ack
    subject: %q
    body: %q
rules:
  - name: r
    when: 'true'
    actions:
      - reply: ack
      - mark_seen: true
`, filepath.Join(dir, "state"), tc.subject, tc.body)
		path := filepath.Join(dir, "c.yaml")
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		if _, code := load(path, func(string) (string, bool) { return "", false }, &stderr); code != exitConfig {
			t.Fatalf("exit %d, want %d", code, exitConfig)
		}
		if !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("error does not name %s:\n%s", tc.want, stderr.String())
		}
	}
}
