package reply

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailhook/mailhook/internal/testmail"
)

const testMsg = "From: help@us.test\r\nTo: alice@example.com\r\nSubject: hi\r\n\r\nbody\r\n"

func newSender(t *testing.T, cfg SMTPConfig) *SMTPSender {
	t.Helper()
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	s, err := NewSMTPSender(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func sendCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// A plaintext loopback relay: EHLO with the configured name, the null reverse-path, one recipient.
func TestSMTPSendPlain(t *testing.T) {
	sink := testmail.StartSMTPSink(t, testmail.SMTPSinkOptions{})
	s := newSender(t, SMTPConfig{Addr: sink.Addr(), Security: SMTPSecurityPlain, HelloName: "mail.us.test"})
	if err := s.Send(sendCtx(t), "", "alice@example.com", []byte(testMsg)); err != nil {
		t.Fatal(err)
	}
	msgs := sink.Messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages", len(msgs))
	}
	m := msgs[0]
	if m.From != "" || len(m.To) != 1 || m.To[0] != "alice@example.com" || m.Helo != "mail.us.test" || m.TLS {
		t.Errorf("got from %q to %v helo %q tls %v", m.From, m.To, m.Helo, m.TLS)
	}
	if string(m.Data) != testMsg {
		t.Errorf("data = %q", m.Data)
	}
}

// Implicit TLS verifies the certificate against the configured host name; PLAIN auth only
// after it.
func TestSMTPImplicitTLS(t *testing.T) {
	sink := testmail.StartSMTPSink(t, testmail.SMTPSinkOptions{ImplicitTLS: true, Username: "help@us.test", Password: "app-password"})
	ok := newSender(t, SMTPConfig{Addr: sink.Addr(), Security: SMTPSecurityTLS, TLS: &tls.Config{RootCAs: sink.CertPool()},
		Username: "help@us.test", Password: "app-password", HelloName: "mail.us.test"})
	if err := ok.Send(sendCtx(t), "help@us.test", "alice@example.com", []byte(testMsg)); err != nil {
		t.Fatal(err)
	}
	if m := sink.Messages(); len(m) != 1 || !m[0].TLS || m[0].Authed != "help@us.test" || m[0].From != "help@us.test" {
		t.Fatalf("messages: %+v", m)
	}

	for name, tc := range map[string]*tls.Config{
		"wrong server name": {RootCAs: sink.CertPool(), ServerName: "smtp.gmail.com"},
		"untrusted root":    nil,
	} {
		t.Run(name, func(t *testing.T) {
			before := sink.AuthAttempts()
			s := newSender(t, SMTPConfig{Addr: sink.Addr(), Security: SMTPSecurityTLS, TLS: tc, Username: "help@us.test", Password: "app-password"})
			err := s.Send(sendCtx(t), "", "alice@example.com", []byte(testMsg))
			var se *SendError
			if !errors.As(err, &se) || se.Stage != StageConnect || !strings.Contains(err.Error(), "certificate") {
				t.Fatalf("err = %v, want a certificate error at connect", err)
			}
			if sink.AuthAttempts() != before {
				t.Error("credentials were sent over an unverified connection")
			}
			if strings.Contains(err.Error(), "app-password") {
				t.Error("error holds the password")
			}
		})
	}
}

// STARTTLS upgrades before authenticating; the EHLO after TLS carries the configured name.
func TestSMTPStartTLS(t *testing.T) {
	sink := testmail.StartSMTPSink(t, testmail.SMTPSinkOptions{StartTLS: true, Username: "u", Password: "p"})
	s := newSender(t, SMTPConfig{Addr: sink.Addr(), Security: SMTPSecurityStartTLS, TLS: &tls.Config{RootCAs: sink.CertPool()},
		Username: "u", Password: "p", HelloName: "mail.us.test"})
	if err := s.Send(sendCtx(t), "", "alice@example.com", []byte(testMsg)); err != nil {
		t.Fatal(err)
	}
	if m := sink.Messages(); len(m) != 1 || !m[0].TLS || m[0].Authed != "u" || m[0].Helo != "mail.us.test" {
		t.Fatalf("messages: %+v", m)
	}
}

// With security starttls and a server that does not offer STARTTLS, nothing is sent: no
// credentials (though the server would take them in plaintext), no transaction.
func TestSMTPStartTLSMissingSendsNoCredentials(t *testing.T) {
	sink := testmail.StartSMTPSink(t, testmail.SMTPSinkOptions{StartTLS: false, InsecureAuth: true, Username: "u", Password: "p"})
	s := newSender(t, SMTPConfig{Addr: sink.Addr(), Security: SMTPSecurityStartTLS, Username: "u", Password: "p"})
	err := s.Send(sendCtx(t), "", "alice@example.com", []byte(testMsg))
	var se *SendError
	if !errors.As(err, &se) || se.Stage != StageStartTLS {
		t.Fatalf("err = %v, want a starttls failure", err)
	}
	if n := sink.AuthAttempts(); n != 0 {
		t.Errorf("%d AUTH attempts reached the server", n)
	}
	if n := sink.Transactions(); n != 0 {
		t.Errorf("%d transactions started", n)
	}
	// The control: the same server does take credentials in plaintext from a plain client.
	plain := newSender(t, SMTPConfig{Addr: sink.Addr(), Security: SMTPSecurityPlain, Username: "u", Password: "p"})
	if err := plain.Send(sendCtx(t), "", "alice@example.com", []byte(testMsg)); err != nil {
		t.Fatal(err)
	}
	if sink.AuthAttempts() != 1 {
		t.Error("control: the sink did not take plaintext credentials")
	}
}

// What each scripted answer means.
func TestSMTPClassification(t *testing.T) {
	tests := []struct {
		name      string
		fault     testmail.SMTPFault
		stage     string
		temporary bool
		daily     bool
		ambiguous bool
		recorded  bool // the sink got the message bytes
	}{
		{name: "421 at mail", fault: testmail.SMTPFault{Stage: "mail", Code: 421, Enhanced: "4.7.0", Message: "try later"}, stage: StageMail, temporary: true},
		{name: "451 at rcpt", fault: testmail.SMTPFault{Stage: "rcpt", Code: 451, Enhanced: "4.3.0", Message: "greylisted"}, stage: StageRcpt, temporary: true},
		{name: "452 after data", fault: testmail.SMTPFault{Stage: "data", Code: 452, Enhanced: "4.3.1", Message: "full"}, stage: StageSubmit, temporary: true},
		{name: "550 at rcpt", fault: testmail.SMTPFault{Stage: "rcpt", Code: 550, Enhanced: "5.1.1", Message: "no such user"}, stage: StageRcpt},
		{name: "554 after data", fault: testmail.SMTPFault{Stage: "data", Code: 554, Enhanced: "5.7.1", Message: "rejected"}, stage: StageSubmit},
		{name: "550 5.4.5 daily limit", fault: testmail.SMTPFault{Stage: "data", Code: 550, Enhanced: "5.4.5", Message: "Daily user sending limit exceeded"}, stage: StageSubmit, daily: true},
		{name: "drop after data", fault: testmail.SMTPFault{DropAfterData: true}, stage: StageSubmit, ambiguous: true, recorded: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sink := testmail.StartSMTPSink(t, testmail.SMTPSinkOptions{})
			sink.Script(tc.fault)
			s := newSender(t, SMTPConfig{Addr: sink.Addr(), Security: SMTPSecurityPlain})
			err := s.Send(sendCtx(t), "", "alice@example.com", []byte(testMsg))
			var se *SendError
			if !errors.As(err, &se) {
				t.Fatalf("err = %v, want a *SendError", err)
			}
			if se.Stage != tc.stage || se.Temporary() != tc.temporary || se.DailyLimit() != tc.daily || se.Ambiguous != tc.ambiguous {
				t.Errorf("got stage %s temporary %v daily %v ambiguous %v (%v)", se.Stage, se.Temporary(), se.DailyLimit(), se.Ambiguous, err)
			}
			if got := len(sink.Messages()) == 1; got != tc.recorded {
				t.Errorf("sink recorded the message: %v, want %v", got, tc.recorded)
			}
		})
	}
}

// A cancelled context ends a submission stuck on a silent server.
func TestSMTPSendCancelled(t *testing.T) {
	ln := listenSilent(t)
	s := newSender(t, SMTPConfig{Addr: ln, Security: SMTPSecurityPlain, Timeout: time.Minute})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Send(ctx, "", "a@x.test", []byte(testMsg)) }()
	cancel()
	select {
	case err := <-done:
		var se *SendError
		if !errors.As(err, &se) || !se.Temporary() {
			t.Errorf("err = %v, want a temporary failure", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Send did not return after its context was cancelled")
	}
}

// listenSilent returns the address of a listener that accepts connections and never answers.
func listenSilent(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}
