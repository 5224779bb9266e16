package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/mailhook/mailhook/config"
	"github.com/mailhook/mailhook/internal/testmail"
	"github.com/mailhook/mailhook/rules"
	"github.com/mailhook/mailhook/watcher"
)

// smtpSink is a loopback go-smtp server that accepts AUTH PLAIN for one user and records logins.
type smtpSink struct {
	user, pass string
	logins     chan string
}

func startSMTPSink(t *testing.T, user, pass string) (addr string, sink *smtpSink) {
	t.Helper()
	sink = &smtpSink{user: user, pass: pass, logins: make(chan string, 10)}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &sinkSession{sink: sink}, nil }))
	srv.Domain = "sink.example.test"
	srv.AllowInsecureAuth = true
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String(), sink
}

type sinkSession struct{ sink *smtpSink }

func (s *sinkSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *sinkSession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != s.sink.user || pass != s.sink.pass {
			return errors.New("invalid credentials")
		}
		s.sink.logins <- user
		return nil
	}), nil
}

func (s *sinkSession) Mail(string, *smtp.MailOptions) error { return errors.New("sink: no mail") }
func (s *sinkSession) Rcpt(string, *smtp.RcptOptions) error { return errors.New("sink: no mail") }
func (s *sinkSession) Data(io.Reader) error                 { return errors.New("sink: no mail") }
func (s *sinkSession) Reset()                               {}
func (s *sinkSession) Logout() error                        { return nil }

// check --online reports one line per server, mailbox and folder, and fails on any problem. The
// folders come from move:/copy: actions, which the current version still refuses to run, so the
// check is driven from a loaded config directly.
func TestOnlineCheck(t *testing.T) {
	mem := testmail.StartMemServer(t, testmail.MemOptions{Password: "imap-pw-Zr81", Mailboxes: []string{"Processed"}})
	if _, err := mem.Append("INBOX", testmail.Sample(1, testmail.SampleOptions{})); err != nil {
		t.Fatal(err)
	}
	smtpAddr, sink := startSMTPSink(t, "me@example.test", "smtp-pw-Lq93")
	wrongIMAP := testmail.StartMemServer(t, testmail.MemOptions{})
	dir := t.TempDir()
	yaml := fmt.Sprintf(`state_dir: %s
accounts:
  - name: main
    imap: {host: 127.0.0.1, port: %s, security: plain, username: %s, password: "${IMAP_PW}", mailboxes: [INBOX, Missing]}
    smtp: {host: 127.0.0.1, port: %s, security: plain, username: me@example.test, password: "${SMTP_PW}"}
  - name: broken
    imap: {host: 127.0.0.1, port: %s, security: plain, username: %s, password: "wrong-pw-7Fh2"}
    smtp: {host: 127.0.0.1, port: %s, security: plain, username: me@example.test, password: "wrong-smtp-pw"}
webhooks:
  - {name: ci, url: "http://127.0.0.1:9/hook", secrets: ["%s"]}
rules:
  - name: file-invoices
    account: main
    when: 'subject contains "Invoice"'
    actions: [{webhook: ci}, {copy: Archive}, {move: Processed}]
`, filepath.Join(dir, "state"), port(t, mem.Addr()), mem.User(), port(t, smtpAddr),
		port(t, wrongIMAP.Addr()), wrongIMAP.User(), port(t, smtpAddr), testSecret)
	path := filepath.Join(dir, "mailhook.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"IMAP_PW": mem.Password(), "SMTP_PW": "smtp-pw-Lq93"}
	cfg, _, err := config.Load(path, config.Options{Getenv: func(k string) (string, bool) { v, ok := env[k]; return v, ok }})
	if err != nil {
		t.Fatalf("config.Load: %v", err)
	}
	set, err := rules.Compile(ruleSpecs(cfg))
	if err != nil {
		t.Fatal(err)
	}
	l := &loaded{cfg: cfg, rules: set}
	var out strings.Builder
	code := onlineCheck(context.Background(), cfg, func(a config.Account, mb string) (watcher.Config, error) {
		return watcherConfig(l, a, mb, nil)
	}, nil, &out)
	report := out.String()
	t.Logf("report:\n%s", report)
	if code != exitFail {
		t.Errorf("exit %d with failing checks, want %d", code, exitFail)
	}
	for _, want := range []string{
		"imap    main: ok (127.0.0.1:",
		"mailbox main/INBOX: ok (uidvalidity ",
		", 1 messages)",
		`mailbox main/Missing: FAIL: examine "Missing": `,
		"folder  main/Processed: ok\n",
		`folder  main/Archive: FAIL: folder "Archive" does not exist`,
		"smtp    main: ok (127.0.0.1:" + port(t, smtpAddr) + ", authenticated)",
		`imap    broken: FAIL: login as "` + wrongIMAP.User() + `": `,
		`smtp    broken: FAIL: authenticate as "me@example.test": `,
		"online: 8 checks, 4 failed",
	} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if strings.Contains(report, "broken/") {
		t.Error("mailboxes checked after a failed login")
	}
	for _, secret := range []string{mem.Password(), "wrong-pw-7Fh2", "smtp-pw-Lq93", "wrong-smtp-pw"} {
		if strings.Contains(report, secret) {
			t.Errorf("the report contains a password (%.4s…)", secret)
		}
	}
	select {
	case u := <-sink.logins:
		if u != "me@example.test" {
			t.Errorf("SMTP login as %q", u)
		}
	default:
		t.Error("the SMTP server saw no successful login")
	}

	// The verb: a config without move/copy passes end to end and exits 0.
	path2, env2 := writeConfig(t, t.TempDir(), mem.Addr(), mem.User(), mem.Password(), "http://127.0.0.1:9/hook", nil)
	for _, kv := range env2 {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	out.Reset()
	var stderr strings.Builder
	if code := cli(context.Background(), []string{"check", "--online", "-c", path2}, &out, &stderr); code != exitOK {
		t.Errorf("check --online = %d:\n%s%s", code, out.String(), stderr.String())
	}
	if !strings.Contains(out.String(), "mailbox test/INBOX: ok") || !strings.Contains(out.String(), "online: 2 checks, 0 failed") {
		t.Errorf("check --online output:\n%s", out.String())
	}
}
