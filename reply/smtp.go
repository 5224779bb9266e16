package reply

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/mailhook/mailhook/internal/localhost"
)

// Sender submits one message to one recipient. It is what reply workers drive; tests inject
// faults through it. Implementations must be safe for concurrent use.
//
// Send returns nil when the server accepted the message (250 after the final dot). Any other
// outcome should be a *SendError, which says whether the failure is temporary, permanent, the
// daily sending limit, or ambiguous (the server may have accepted the message); an error of
// another type is treated as temporary.
type Sender interface {
	Send(ctx context.Context, envelopeFrom, to string, msg []byte) error
}

// SenderFunc adapts a function to Sender.
type SenderFunc func(ctx context.Context, envelopeFrom, to string, msg []byte) error

// Send calls f.
func (f SenderFunc) Send(ctx context.Context, envelopeFrom, to string, msg []byte) error {
	return f(ctx, envelopeFrom, to, msg)
}

// Stages of an SMTP submission, as reported in SendError.Stage.
const (
	StageConnect  = "connect"  // dial, implicit TLS handshake, greeting
	StageStartTLS = "starttls" // EHLO and STARTTLS before any credential
	StageHello    = "hello"    // EHLO with the configured name
	StageAuth     = "auth"
	StageMail     = "mail"
	StageRcpt     = "rcpt"
	StageData     = "data"   // DATA and the message bytes, before the final dot
	StageSubmit   = "submit" // the final dot and the server's answer to it
)

// SendError is a failed submission.
type SendError struct {
	Stage    string // one of the Stage* constants
	Code     int    // SMTP reply code; 0 when the server gave none (network, TLS)
	Enhanced string // RFC 3463 enhanced status code such as "5.4.5"; "" if none
	// Ambiguous is true when the connection failed after the final dot was sent and before the
	// server's answer was read: the message may have been accepted (RFC 5321 §4.1.1.4 puts
	// responsibility on the server at its 250). Such a reply must not be sent again.
	Ambiguous bool
	Err       error
}

func (e *SendError) Error() string {
	if e.Ambiguous {
		return fmt.Sprintf("smtp %s: outcome unknown: %v", e.Stage, e.Err)
	}
	return fmt.Sprintf("smtp %s: %v", e.Stage, e.Err)
}

func (e *SendError) Unwrap() error { return e.Err }

// Temporary reports whether sending the same message later may succeed: a 4xx reply, or no reply
// at all (network, TLS) before the final dot.
func (e *SendError) Temporary() bool {
	return !e.Ambiguous && (e.Code == 0 || (e.Code >= 400 && e.Code <= 499))
}

// DailyLimit reports the server's daily sending limit: Gmail answers `550 5.4.5 Daily user
// sending limit exceeded` (RFC 3463 X.4.5: mail system congestion).
func (e *SendError) DailyLimit() bool { return e.Code >= 500 && e.Code <= 599 && e.Enhanced == "5.4.5" }

// Status is a short, secret-free word for the attempt record: "smtp 451", "network", "unknown".
func (e *SendError) Status() string {
	switch {
	case e.Ambiguous:
		return "unknown"
	case e.Code != 0:
		return "smtp " + strconv.Itoa(e.Code)
	}
	return "network"
}

// SMTP connection security, as in SMTPConfig.Security.
const (
	SMTPSecurityTLS      = "tls"      // implicit TLS (RFC 8314 §3.3, port 465)
	SMTPSecurityStartTLS = "starttls" // STARTTLS (RFC 3207, port 587); no credential is sent without it
	SMTPSecurityPlain    = "plain"    // no TLS: a loopback relay only (the caller enforces that)
)

// Defaults of SMTPConfig.
const (
	DefaultSMTPTimeout       = 30 * time.Second
	DefaultSMTPSubmitTimeout = 2 * time.Minute
)

// SMTPConfig configures an SMTPSender.
type SMTPConfig struct {
	Addr     string      // host:port
	Security string      // SMTPSecurityTLS (default) | SMTPSecurityStartTLS | SMTPSecurityPlain
	TLS      *tls.Config // nil: system roots; ServerName defaults to the host of Addr, which the certificate must name
	// HelloName is the EHLO name (RFC 5321 §4.1.1.1). Default "localhost". With STARTTLS the
	// first EHLO, before TLS, always says "localhost" (go-smtp sends it itself); the EHLO after
	// TLS uses HelloName.
	HelloName string
	// Username and Password authenticate with SASL PLAIN when Username is set (and Auth is nil).
	Username, Password string
	// Auth, when set, returns a fresh SASL client per connection and replaces PLAIN (XOAUTH2).
	Auth func(ctx context.Context) (sasl.Client, error)
	// OnAuthFailure, when set, is called after the server refused the credentials (5xx to AUTH),
	// so an OAuth2 token source can drop the access token it refused.
	OnAuthFailure func()
	// Timeout bounds the dial, the TLS handshake and the answer to each command (default 30s).
	Timeout time.Duration
	// SubmitTimeout bounds the wait for the answer to the final dot (default 2m).
	SubmitTimeout time.Duration
	// Dial replaces the TCP dialer (tests). The default dials with Timeout and TCP keepalive.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// SMTPSender submits messages with go-smtp, one connection per message: replies are rare, and a
// fresh connection never inherits a broken transaction.
type SMTPSender struct {
	cfg  SMTPConfig
	host string
}

var _ Sender = (*SMTPSender)(nil)

// NewSMTPSender checks cfg and fills in its defaults. It does no I/O.
func NewSMTPSender(cfg SMTPConfig) (*SMTPSender, error) {
	host, _, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("smtp addr %q: %w", cfg.Addr, err)
	}
	switch cfg.Security {
	case "":
		cfg.Security = SMTPSecurityTLS
	case SMTPSecurityTLS, SMTPSecurityStartTLS, SMTPSecurityPlain:
	default:
		return nil, fmt.Errorf("smtp security %q: want tls, starttls or plain", cfg.Security)
	}
	if cfg.HelloName == "" {
		cfg.HelloName = "localhost"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultSMTPTimeout
	}
	if cfg.SubmitTimeout <= 0 {
		cfg.SubmitTimeout = DefaultSMTPSubmitTimeout
	}
	if cfg.Dial == nil {
		d := &net.Dialer{Timeout: cfg.Timeout, KeepAlive: 30 * time.Second}
		cfg.Dial = localhost.Dial(d.DialContext) // a localhost name never goes to DNS
	}
	return &SMTPSender{cfg: cfg, host: host}, nil
}

func (s *SMTPSender) tlsConfig() *tls.Config {
	tc := &tls.Config{}
	if s.cfg.TLS != nil {
		tc = s.cfg.TLS.Clone()
	}
	if tc.ServerName == "" {
		tc.ServerName = s.host
	}
	return tc
}

// Send submits msg from envelopeFrom ("" = the null reverse-path <>, RFC 5321 §4.5.5) to the one
// recipient to. ctx cancels it: before the final dot that is a temporary failure, after it the
// outcome is ambiguous.
func (s *SMTPSender) Send(ctx context.Context, envelopeFrom, to string, msg []byte) (err error) {
	cfg := &s.cfg
	dctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	conn, err := cfg.Dial(dctx, "tcp", cfg.Addr)
	cancel()
	if err != nil {
		return &SendError{Stage: StageConnect, Err: err}
	}
	defer conn.Close()
	// go-smtp takes no context: closing the connection ends any command in progress.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	// Bound the steps go-smtp runs with its own (long) default timeouts: the handshake and, for
	// STARTTLS, the greeting, EHLO and STARTTLS inside NewClientStartTLS.
	guard := time.AfterFunc(3*cfg.Timeout, func() { conn.Close() })
	var c *smtp.Client
	switch cfg.Security {
	case SMTPSecurityTLS:
		tc := tls.Client(conn, s.tlsConfig())
		hctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
		err = tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			guard.Stop()
			return &SendError{Stage: StageConnect, Err: fmt.Errorf("tls handshake: %w", err)}
		}
		c = smtp.NewClient(tc)
	case SMTPSecurityStartTLS:
		// RFC 3207 §4: without STARTTLS in the EHLO answer this fails before any credential or
		// message byte is sent: a server that does not offer TLS never sees a password.
		c, err = smtp.NewClientStartTLS(conn, s.tlsConfig())
		if err != nil {
			guard.Stop()
			return classifySMTP(StageStartTLS, err)
		}
	default:
		c = smtp.NewClient(conn)
	}
	guard.Stop()
	defer c.Close()
	c.CommandTimeout = cfg.Timeout
	c.SubmissionTimeout = cfg.SubmitTimeout

	if err := c.Hello(cfg.HelloName); err != nil {
		return classifySMTP(StageHello, err)
	}
	switch {
	case cfg.Auth != nil:
		sc, err := cfg.Auth(ctx)
		if err != nil {
			return &SendError{Stage: StageAuth, Err: err}
		}
		if err := c.Auth(sc); err != nil {
			se := classifySMTP(StageAuth, err)
			if se.Code >= 500 && cfg.OnAuthFailure != nil {
				cfg.OnAuthFailure()
			}
			return se
		}
	case cfg.Username != "":
		if err := c.Auth(sasl.NewPlainClient("", cfg.Username, cfg.Password)); err != nil {
			return classifySMTP(StageAuth, err)
		}
	}
	if err := c.Mail(envelopeFrom, nil); err != nil {
		return classifySMTP(StageMail, err)
	}
	if err := c.Rcpt(to, nil); err != nil {
		return classifySMTP(StageRcpt, err)
	}
	w, err := c.Data()
	if err != nil {
		return classifySMTP(StageData, err)
	}
	if _, err := w.Write(msg); err != nil {
		return classifySMTP(StageData, err)
	}
	// From here the final dot may reach the server: only an SMTP answer is a certain outcome.
	if _, err := w.CloseWithResponse(); err != nil {
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			return classifySMTP(StageSubmit, err)
		}
		return &SendError{Stage: StageSubmit, Ambiguous: true, Err: err}
	}
	_ = c.Quit() // the message is accepted; a failing QUIT changes nothing
	return nil
}

// classifySMTP wraps an error of stage: an SMTP reply keeps its codes, anything else (network,
// TLS, a missing STARTTLS) has code 0 and counts as temporary.
func classifySMTP(stage string, err error) *SendError {
	e := &SendError{Stage: stage, Err: err}
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		e.Code = se.Code
		if se.EnhancedCode != smtp.NoEnhancedCode && se.EnhancedCode != (smtp.EnhancedCode{}) {
			e.Enhanced = fmt.Sprintf("%d.%d.%d", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
		}
	}
	return e
}
