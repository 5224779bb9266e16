package oauth_test

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/mailhook/mailhook/internal/testmail"
)

// smtpBackend is a go-smtp server that accepts only XOAUTH2 with a token the check approves.
type smtpBackend struct {
	check    func(user, token string) bool
	mu       sync.Mutex
	attempts []bool
}

func (b *smtpBackend) NewSession(*smtp.Conn) (smtp.Session, error) { return &smtpSession{b: b}, nil }

type smtpSession struct {
	b      *smtpBackend
	authed bool
}

var _ smtp.AuthSession = (*smtpSession)(nil)

func (s *smtpSession) AuthMechanisms() []string { return []string{"XOAUTH2"} }

// Auth is the server side of XOAUTH2 over SMTP: a refused token gets a 334 JSON challenge, and
// the exchange fails (535) after the client's empty answer.
func (s *smtpSession) Auth(mech string) (sasl.Server, error) {
	if mech != "XOAUTH2" {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	challenged := false
	return saslServerFunc(func(resp []byte) ([]byte, bool, error) {
		if challenged {
			if len(resp) != 0 {
				return nil, false, errors.New("expected an empty response")
			}
			return nil, false, &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "Username and Password not accepted"}
		}
		f := strings.Split(string(resp), "\x01")
		ok := len(f) == 4 && strings.HasPrefix(f[0], "user=") && strings.HasPrefix(f[1], "auth=Bearer ") &&
			s.b.check(strings.TrimPrefix(f[0], "user="), strings.TrimPrefix(f[1], "auth=Bearer "))
		s.b.mu.Lock()
		s.b.attempts = append(s.b.attempts, ok)
		s.b.mu.Unlock()
		if ok {
			s.authed = true
			return nil, true, nil
		}
		challenged = true
		return []byte(`{"status":"400","schemes":"Bearer","scope":"https://mail.google.com/"}`), false, nil
	}), nil
}

type saslServerFunc func([]byte) ([]byte, bool, error)

func (f saslServerFunc) Next(r []byte) ([]byte, bool, error) { return f(r) }

func (s *smtpSession) Mail(string, *smtp.MailOptions) error {
	if !s.authed {
		return smtp.ErrAuthRequired
	}
	return nil
}
func (s *smtpSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *smtpSession) Data(r io.Reader) error               { _, err := io.Copy(io.Discard, r); return err }
func (s *smtpSession) Reset()                               {}
func (s *smtpSession) Logout() error                        { return nil }

// TestSMTPXOAuth2: go-smtp's client signs in with the Authenticator's XOAUTH2 client; an expired
// token is refused with 535 after the challenge, and the next connection refreshes and succeeds.
func TestSMTPXOAuth2(t *testing.T) {
	e := newEnv(t, testmail.TokenOptions{}, nil)
	be := &smtpBackend{check: e.check}
	srv := smtp.NewServer(be)
	srv.AllowInsecureAuth = true
	srv.Domain = "localhost"
	srv.ReadTimeout, srv.WriteTimeout = waitTimeout, waitTimeout
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln) //nolint:errcheck // ends with Close
	t.Cleanup(func() { srv.Close() })

	au, err := e.src.Authenticator("", testmail.DefaultUser, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	send := func() error {
		c, err := smtp.Dial(ln.Addr().String())
		if err != nil {
			return err
		}
		defer c.Close()
		c.CommandTimeout, c.SubmissionTimeout = 10*time.Second, 10*time.Second
		if err := c.Hello("mailhook.test"); err != nil {
			return err
		}
		sc, err := au.SASL(context.Background())
		if err != nil {
			return err
		}
		if err := c.Auth(sc); err != nil {
			return err
		}
		return c.Mail("", nil)
	}
	if err := send(); err != nil {
		t.Fatalf("first submission: %v", err)
	}
	e.ts.ExpireAccessTokens()
	var se *smtp.SMTPError
	if err := send(); !errors.As(err, &se) || se.Code != 535 {
		t.Fatalf("with an expired token: %v, want 535", err)
	}
	if err := send(); err != nil {
		t.Fatalf("after the refusal: %v", err)
	}
	if n := e.ts.Refreshes(); n != 2 {
		t.Errorf("%d refreshes, want 2", n)
	}
	be.mu.Lock()
	defer be.mu.Unlock()
	if len(be.attempts) != 3 || !be.attempts[0] || be.attempts[1] || !be.attempts[2] {
		t.Errorf("attempts %v, want accepted, refused, accepted", be.attempts)
	}
}
