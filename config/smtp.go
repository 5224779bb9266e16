package config

// The smtp section of an account: the server reply actions send through.

import (
	"fmt"
	"net"
	netmail "net/mail"
	"strconv"
	"strings"
	"time"

	"github.com/mailhook/mailhook/reply"
)

// SMTPConfig is the server reply actions send through. It is optional: an account without
// smtp.host cannot be the target of a reply action.
type SMTPConfig struct {
	Host         string    `mapstructure:"host"`
	Port         int       `mapstructure:"port"`     // default 465 for tls, 587 for starttls, 25 for plain
	Security     string    `mapstructure:"security"` // SecurityTLS | SecurityStartTLS | SecurityPlain
	TLS          TLSConfig `mapstructure:"tls"`
	Insecure     bool      `mapstructure:"insecure"` // allows plain to a non-loopback host
	Username     string    `mapstructure:"username"`
	Password     string    `mapstructure:"password"`
	PasswordFile string    `mapstructure:"password_file"` // read into Password by Load
	// OAuth2 signs in with XOAUTH2 instead of a password. When it equals imap.oauth2, both share
	// one token (and one rotation state).
	OAuth2 *OAuth2Config `mapstructure:"oauth2"`
	From   string        `mapstructure:"from"` // header From; default the username
	// EnvelopeFrom is the SMTP MAIL FROM. "" is the null sender <> that RFC 3834 §3.3 recommends;
	// Gmail binds the envelope sender to the account, so set the account address there.
	EnvelopeFrom string `mapstructure:"envelope_from"`
	// HelloName is the EHLO name (RFC 5321 §4.1.1.1); default the domain of From.
	HelloName string `mapstructure:"hello_name"`
	// Timeout bounds the connection and each SMTP command; default 30s, allowed 1s–5m.
	Timeout time.Duration `mapstructure:"timeout"`
}

// Configured reports whether the account has an SMTP server for reply actions.
func (s SMTPConfig) Configured() bool { return s.Host != "" }

// Addr returns host:port of the SMTP server.
func (c SMTPConfig) Addr() string { return net.JoinHostPort(c.Host, strconv.Itoa(c.Port)) }

// Bounds of smtp.timeout; its default is the reply package's own.
const (
	defaultSMTPTimeout = reply.DefaultSMTPTimeout
	minSMTPTimeout     = time.Second
	maxSMTPTimeout     = 5 * time.Minute
)

func (s *SMTPConfig) applyDefaults(path string, warnings *[]string) {
	if !s.Configured() {
		return
	}
	if s.Security == "" {
		s.Security = SecurityTLS
	}
	if s.Port == 0 {
		switch s.Security {
		case SecurityTLS:
			s.Port = 465 // RFC 8314 §3.3
		case SecurityStartTLS:
			s.Port = 587
		default:
			s.Port = 25
		}
	}
	s.OAuth2.applyDefaults()
	if s.From == "" && strings.Contains(s.Username, "@") {
		s.From = s.Username
	}
	if s.HelloName == "" {
		if addr, err := netmail.ParseAddress(s.From); err == nil {
			s.HelloName = addr.Address[strings.LastIndexByte(addr.Address, '@')+1:]
		}
	}
	setDefault(&s.Timeout, defaultSMTPTimeout)
	if s.Security == SecurityPlain && s.Insecure && !isLoopback(s.Host) {
		*warnings = append(*warnings, fmt.Sprintf("%s: plaintext SMTP to %s (insecure: true): the password and replies travel unencrypted",
			path, s.Host))
	}
}

func (s *SMTPConfig) validate(p *problems, path string) {
	if !s.Configured() {
		if *s != (SMTPConfig{}) {
			p.add(path+".host", "required when smtp is configured")
		}
		return
	}
	validateServer(p, path, s.Host, s.Port, s.Security, s.Insecure, s.TLS)
	s.validateAuth(p, path)
	if s.From == "" {
		p.add(path+".from", "required (no default: username is not an address)")
	} else if _, err := netmail.ParseAddress(s.From); err != nil {
		p.add(path+".from", "not an email address: %v", err)
	}
	if s.Timeout < minSMTPTimeout || s.Timeout > maxSMTPTimeout {
		p.add(path+".timeout", "%s is outside %s–%s", s.Timeout, minSMTPTimeout, maxSMTPTimeout)
	}
	if s.HelloName == "" || strings.ContainsFunc(s.HelloName, isSpaceOrControl) {
		p.add(path+".hello_name", "want a host name (default: the domain of from)")
	}
	if s.EnvelopeFrom != "" {
		if addr, err := netmail.ParseAddress(s.EnvelopeFrom); err != nil || addr.Address != s.EnvelopeFrom {
			p.add(path+".envelope_from", "want a bare address like me@example.com, or \"\" for the null sender")
		}
	}
}

// validateAuth checks the sign-in: none, a username and password, or oauth2.
func (s *SMTPConfig) validateAuth(p *problems, path string) {
	if s.Password != "" && s.Username == "" {
		p.add(path+".username", "required with a password")
	}
	if s.OAuth2 != nil {
		if s.Password != "" {
			p.add(path+".password", "set both password and oauth2; use one")
		}
		if s.Username == "" {
			p.add(path+".username", "required with oauth2")
		}
		s.OAuth2.validate(p, path+".oauth2")
	} else if s.Username != "" && s.Password == "" {
		p.add(path+".password", "required with a username (or password_file, or oauth2)")
	}
}
