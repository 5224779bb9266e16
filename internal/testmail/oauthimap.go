package testmail

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
	"github.com/emersion/go-sasl"

	"github.com/mailhook/mailhook/internal/demo"
)

// OAuthMemOptions configures an OAuthMemServer.
type OAuthMemOptions struct {
	// User is the only account; default DefaultUser.
	User string
	// Check decides whether a bearer token is good for user. Required; TokenServer.Active fits
	// through a small adapter.
	Check func(user, token string) bool
	// BareRefusal makes a refused XOAUTH2 token fail at once with a tagged NO and no error
	// challenge, as Microsoft 365 does; by default the server sends Google's JSON error challenge
	// first and fails after the client's empty answer.
	BareRefusal bool
}

// OAuthMemServer is an in-memory IMAP4rev1 server (imapserver + imapmemserver) on a loopback port
// whose only way in is AUTHENTICATE XOAUTH2 or OAUTHBEARER (LOGIN is refused). It advertises
// IDLE and SASL-IR; an idling session polls for updates every 10 ms (see demo.PollIdle). It records
// every authentication attempt.
type OAuthMemServer struct {
	opts OAuthMemOptions
	user *imapmemserver.User
	srv  *imapserver.Server
	ln   net.Listener
	done chan struct{}

	mu       sync.Mutex
	attempts []AuthAttempt
}

// AuthAttempt is one AUTHENTICATE the server answered.
type AuthAttempt struct {
	At    time.Time
	Mech  string
	Token string
	OK    bool
}

// StartOAuthMemServer starts an OAuthMemServer and closes it when the test ends.
func StartOAuthMemServer(t testing.TB, opts OAuthMemOptions) *OAuthMemServer {
	t.Helper()
	s, err := NewOAuthMemServer(opts)
	if err != nil {
		t.Fatalf("start oauth imap server: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// NewOAuthMemServer starts an OAuthMemServer on 127.0.0.1. Call Close when done.
func NewOAuthMemServer(opts OAuthMemOptions) (*OAuthMemServer, error) {
	if opts.Check == nil {
		return nil, errors.New("oauth imap server: Check is required")
	}
	if opts.User == "" {
		opts.User = DefaultUser
	}
	s := &OAuthMemServer{opts: opts, done: make(chan struct{})}
	// The password is never usable: LOGIN is refused before it is checked.
	s.user = imapmemserver.NewUser(opts.User, "\x00unusable")
	if err := s.user.Create("INBOX", nil); err != nil {
		return nil, err
	}
	s.srv = imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return &oauthSession{server: s}, nil, nil
		},
		Caps:         imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapIdle: {}},
		InsecureAuth: true,
		Logger:       log.New(io.Discard, "", 0), // refused logins and dropped connections are expected
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for imap: %w", err)
	}
	s.ln = ln
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(ln)
	}()
	return s, nil
}

// Addr returns the server's host:port.
func (s *OAuthMemServer) Addr() string { return s.ln.Addr().String() }

// User returns the account's user name.
func (s *OAuthMemServer) User() string { return s.opts.User }

// Append adds a message to mailbox and returns its UID.
func (s *OAuthMemServer) Append(mailbox string, raw []byte) (uint32, error) {
	data, err := s.user.Append(mailbox, bytes.NewReader(raw), &imap.AppendOptions{})
	if err != nil {
		return 0, err
	}
	return uint32(data.UID), nil
}

// Attempts returns every authentication attempt so far, oldest first.
func (s *OAuthMemServer) Attempts() []AuthAttempt {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]AuthAttempt(nil), s.attempts...)
}

// Close stops the server and closes every connection.
func (s *OAuthMemServer) Close() error {
	err := s.srv.Close()
	<-s.done
	return err
}

func (s *OAuthMemServer) record(mech, token string, ok bool) {
	s.mu.Lock()
	s.attempts = append(s.attempts, AuthAttempt{At: time.Now(), Mech: mech, Token: token, OK: ok})
	s.mu.Unlock()
}

var errAuthFailed = &imap.Error{
	Type: imap.StatusResponseTypeNo,
	Code: imap.ResponseCodeAuthenticationFailed,
	Text: "Invalid credentials (Failure)", // Gmail's wording
}

// oauthSession is an imapmemserver session reached only through XOAUTH2 or OAUTHBEARER.
type oauthSession struct {
	*imapmemserver.UserSession // nil until authenticated
	server                     *OAuthMemServer
}

var _ imapserver.SessionSASL = (*oauthSession)(nil)

func (s *oauthSession) Login(string, string) error {
	return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAuthenticationFailed,
		Text: "Use AUTHENTICATE XOAUTH2"}
}

func (s *oauthSession) AuthenticateMechanisms() []string {
	return []string{"XOAUTH2", sasl.OAuthBearer}
}

func (s *oauthSession) Authenticate(mech string) (sasl.Server, error) {
	srv := s.server
	accept := func(mech, user, token string) bool {
		ok := user == srv.opts.User && srv.opts.Check(user, token)
		srv.record(mech, token, ok)
		if ok {
			s.UserSession = imapmemserver.NewUserSession(srv.user)
		}
		return ok
	}
	switch mech {
	case "XOAUTH2":
		return &xoauth2Server{accept: accept, bare: srv.opts.BareRefusal}, nil
	case sasl.OAuthBearer:
		return sasl.NewOAuthBearerServer(func(o sasl.OAuthBearerOptions) *sasl.OAuthBearerError {
			if accept(sasl.OAuthBearer, o.Username, o.Token) {
				return nil
			}
			return &sasl.OAuthBearerError{Status: "invalid_token", Schemes: "bearer"}
		}), nil
	}
	return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Text: "Unsupported mechanism"}
}

// Idle pushes updates until stop is closed, polling like the demo's server (see demo.PollIdle).
func (s *oauthSession) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	return demo.PollIdle(s.UserSession, w, stop)
}

func (s *oauthSession) Close() error {
	if s.UserSession == nil {
		return nil
	}
	return s.UserSession.Close()
}

// xoauth2Server is the server side of XOAUTH2: "user=U\x01auth=Bearer T\x01\x01"; a refused token
// gets Google's JSON error challenge, and the command fails after the client's empty answer.
type xoauth2Server struct {
	accept     func(mech, user, token string) bool
	bare       bool
	challenged bool
}

func (x *xoauth2Server) Next(resp []byte) (challenge []byte, done bool, err error) {
	if x.challenged {
		if len(resp) != 0 {
			return nil, false, &imap.Error{Type: imap.StatusResponseTypeBad, Text: "Expected an empty response"}
		}
		return nil, false, errAuthFailed
	}
	if resp == nil {
		return nil, false, nil // "+ " asks for the initial response
	}
	fields := strings.Split(string(resp), "\x01")
	var user, token string
	for _, f := range fields {
		if v, ok := strings.CutPrefix(f, "user="); ok {
			user = v
		}
		if v, ok := strings.CutPrefix(f, "auth=Bearer "); ok {
			token = v
		}
	}
	if len(fields) != 4 || fields[2] != "" || fields[3] != "" {
		return nil, false, &imap.Error{Type: imap.StatusResponseTypeBad, Text: "Malformed XOAUTH2 response"}
	}
	if x.accept("XOAUTH2", user, token) {
		return nil, true, nil
	}
	if x.bare {
		return nil, false, &imap.Error{Type: imap.StatusResponseTypeNo, Text: "AUTHENTICATE failed."}
	}
	x.challenged = true
	ch, _ := json.Marshal(map[string]string{"status": "400", "schemes": "Bearer", "scope": "https://mail.google.com/"})
	return ch, false, nil
}
