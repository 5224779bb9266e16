package testmail

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// SMTPSinkOptions configure an SMTPSink. The zero value is a plaintext sink on loopback that
// accepts every message without authentication.
type SMTPSinkOptions struct {
	// ImplicitTLS serves TLS from the first byte (port 465 style) with the sink's test
	// certificate, valid for 127.0.0.1 and localhost.
	ImplicitTLS bool
	// StartTLS advertises STARTTLS (RFC 3207) on the plaintext listener.
	StartTLS bool
	// Username and Password, when Username is set, are the only credentials AUTH PLAIN accepts,
	// and a transaction without authentication is refused. AUTH is offered only over TLS.
	Username, Password string
	// InsecureAuth offers AUTH on a plaintext connection too (a server a careless client would
	// hand its password to).
	InsecureAuth bool
	// Deliver, when set, is called for every accepted message, after it is recorded (the sink
	// as a relay: tests deliver into an IMAP mailbox). An error refuses the message with 451.
	Deliver func(from string, to []string, raw []byte) error
}

// SMTPMessage is one message the sink accepted (or received before a scripted drop).
type SMTPMessage struct {
	From   string   // MAIL FROM; "" for the null reverse-path <>
	To     []string // RCPT TO
	Data   []byte   // the message as received (dot-unstuffed, CRLF line ends)
	Helo   string   // the EHLO/HELO name of the session
	TLS    bool     // the session was encrypted when the message was sent
	Authed string   // the authenticated user name; "" if none
}

// SMTPFault is a scripted answer for one transaction (counted by MAIL commands).
type SMTPFault struct {
	// Stage is where the fault strikes: "mail", "rcpt" or "data" (the answer to the final dot).
	Stage    string
	Code     int    // SMTP reply code, e.g. 451, 550
	Enhanced string // e.g. "5.4.5"; "" for none
	Message  string
	// DropAfterData records the message and then closes the connection without answering the
	// final dot: the client cannot know whether the message was accepted.
	DropAfterData bool
}

// SMTPSink is an in-process SMTP server (go-smtp) on 127.0.0.1 for tests: it records every
// message, can answer scripted faults, and offers implicit TLS or STARTTLS with a throwaway
// certificate. It is safe for concurrent use.
type SMTPSink struct {
	opts    SMTPSinkOptions
	srv     *smtp.Server
	ln      net.Listener
	pool    *x509.CertPool
	tlsConf *tls.Config

	mu        sync.Mutex
	msgs      []SMTPMessage
	script    []SMTPFault
	txns      int // MAIL commands seen
	auths     int // AUTH attempts seen
	sessions  int
	changed   chan struct{} // closed and replaced when msgs or txns change
	serveDone chan struct{}
}

// NewSMTPSink starts a sink. Call Close when done.
func NewSMTPSink(opts SMTPSinkOptions) (*SMTPSink, error) {
	cert, pool, err := testCertificate()
	if err != nil {
		return nil, err
	}
	s := &SMTPSink{opts: opts, pool: pool, changed: make(chan struct{}), serveDone: make(chan struct{})}
	s.tlsConf = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for smtp sink: %w", err)
	}
	if opts.ImplicitTLS {
		ln = tls.NewListener(ln, s.tlsConf)
	}
	s.ln = ln
	srv := smtp.NewServer(smtp.BackendFunc(s.newSession))
	srv.Domain = "sink.test"
	srv.ReadTimeout = 30 * time.Second
	srv.WriteTimeout = 30 * time.Second
	srv.MaxMessageBytes = 16 << 20
	srv.MaxRecipients = 50
	srv.ErrorLog = discardLogger{}
	srv.AllowInsecureAuth = opts.InsecureAuth
	if opts.StartTLS {
		srv.TLSConfig = s.tlsConf
	}
	s.srv = srv
	go func() {
		defer close(s.serveDone)
		_ = srv.Serve(ln)
	}()
	return s, nil
}

// StartSMTPSink starts a sink and closes it when the test ends.
func StartSMTPSink(t testing.TB, opts SMTPSinkOptions) *SMTPSink {
	t.Helper()
	s, err := NewSMTPSink(opts)
	if err != nil {
		t.Fatalf("start smtp sink: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// Addr returns "127.0.0.1:port".
func (s *SMTPSink) Addr() string { return s.ln.Addr().String() }

// CertPool returns a pool holding the sink's certificate, for a client's RootCAs.
func (s *SMTPSink) CertPool() *x509.CertPool { return s.pool }

// Close stops the sink and its sessions.
func (s *SMTPSink) Close() error {
	err := s.srv.Close()
	<-s.serveDone
	if errors.Is(err, smtp.ErrServerClosed) {
		return nil
	}
	return err
}

// Script queues faults: the next transactions (MAIL commands) get them in order; once the queue
// is empty, transactions succeed again.
func (s *SMTPSink) Script(faults ...SMTPFault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.script = append(s.script, faults...)
}

// Messages returns a copy of the recorded messages, in arrival order.
func (s *SMTPSink) Messages() []SMTPMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]SMTPMessage, len(s.msgs))
	copy(out, s.msgs)
	return out
}

// Transactions returns how many MAIL commands the sink has seen.
func (s *SMTPSink) Transactions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.txns
}

// AuthAttempts returns how many AUTH commands reached the authenticator.
func (s *SMTPSink) AuthAttempts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.auths
}

// Sessions returns how many connections were accepted (EHLO reached a session).
func (s *SMTPSink) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions
}

// WaitFor waits until cond holds (checked after every recorded message or transaction) or ctx is
// done; it returns ctx's error then.
func (s *SMTPSink) WaitFor(ctx context.Context, cond func(s *SMTPSink) bool) error {
	for {
		s.mu.Lock()
		ch := s.changed
		s.mu.Unlock()
		if cond(s) {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// notify wakes WaitFor; the caller holds s.mu.
func (s *SMTPSink) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *SMTPSink) newSession(c *smtp.Conn) (smtp.Session, error) {
	s.mu.Lock()
	s.sessions++
	s.mu.Unlock()
	return &sinkSession{sink: s, conn: c}, nil
}

// sinkSession is one SMTP connection.
type sinkSession struct {
	sink   *SMTPSink
	conn   *smtp.Conn
	authed string
	from   string
	to     []string
	fault  *SMTPFault
}

var (
	_ smtp.Session     = (*sinkSession)(nil)
	_ smtp.AuthSession = (*sinkSession)(nil)
)

func (ss *sinkSession) AuthMechanisms() []string {
	if ss.sink.opts.Username == "" {
		return nil
	}
	return []string{sasl.Plain}
}

func (ss *sinkSession) Auth(mech string) (sasl.Server, error) {
	if mech != sasl.Plain {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	return sasl.NewPlainServer(func(identity, username, password string) error {
		ss.sink.mu.Lock()
		ss.sink.auths++
		ss.sink.mu.Unlock()
		if username != ss.sink.opts.Username || password != ss.sink.opts.Password || (identity != "" && identity != username) {
			return smtp.ErrAuthFailed
		}
		ss.authed = username
		return nil
	}), nil
}

func (ss *sinkSession) faultAt(stage string) error {
	if f := ss.fault; f != nil && f.Stage == stage && !f.DropAfterData {
		var enh smtp.EnhancedCode
		if _, err := fmt.Sscanf(f.Enhanced, "%d.%d.%d", &enh[0], &enh[1], &enh[2]); err != nil {
			enh = smtp.NoEnhancedCode
		}
		return &smtp.SMTPError{Code: f.Code, EnhancedCode: enh, Message: f.Message}
	}
	return nil
}

func (ss *sinkSession) Mail(from string, _ *smtp.MailOptions) error {
	s := ss.sink
	if s.opts.Username != "" && ss.authed == "" {
		return smtp.ErrAuthRequired
	}
	s.mu.Lock()
	s.txns++
	ss.fault = nil
	if len(s.script) > 0 {
		f := s.script[0]
		s.script = s.script[1:]
		ss.fault = &f
	}
	s.notify()
	s.mu.Unlock()
	ss.from = from
	return ss.faultAt("mail")
}

func (ss *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if err := ss.faultAt("rcpt"); err != nil {
		return err
	}
	ss.to = append(ss.to, to)
	return nil
}

func (ss *sinkSession) Data(r io.Reader) error {
	raw, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s := ss.sink
	_, isTLS := ss.conn.TLSConnectionState()
	m := SMTPMessage{From: ss.from, To: append([]string(nil), ss.to...), Data: bytes.Clone(raw),
		Helo: ss.conn.Hostname(), TLS: isTLS, Authed: ss.authed}
	if err := ss.faultAt("data"); err != nil {
		s.mu.Lock()
		s.notify()
		s.mu.Unlock()
		return err
	}
	s.mu.Lock()
	s.msgs = append(s.msgs, m)
	s.notify()
	s.mu.Unlock()
	if f := ss.fault; f != nil && f.DropAfterData {
		// The message is in; the answer never leaves. The client sees the connection close.
		_ = ss.conn.Conn().Close()
		return nil
	}
	if s.opts.Deliver != nil {
		if err := s.opts.Deliver(m.From, m.To, m.Data); err != nil {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "delivery failed"}
		}
	}
	return nil
}

func (ss *sinkSession) Reset() {
	ss.from, ss.to, ss.fault = "", nil, nil
}

func (ss *sinkSession) Logout() error { return nil }

// discardLogger silences go-smtp's server log (connection errors after scripted drops).
type discardLogger struct{}

func (discardLogger) Printf(string, ...any) {}
func (discardLogger) Println(...any)        {}

// testCertificate makes a self-signed ECDSA certificate for 127.0.0.1, ::1 and localhost, valid
// for a day, and a pool trusting it.
func testCertificate() (tls.Certificate, *x509.CertPool, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("test certificate: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("test certificate: %w", err)
	}
	tpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "mailhook test sink"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("test certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("test certificate: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool, nil
}
