package config

// The imap section of an account: the server, the sign-in, the mailboxes and how they are watched.

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/mailhook/mailhook/watcher"
)

// IMAPConfig is how an account's mailboxes are reached and watched.
type IMAPConfig struct {
	Host     string    `mapstructure:"host"`
	Port     int       `mapstructure:"port"`     // default 993 for tls, 143 otherwise
	Security string    `mapstructure:"security"` // SecurityTLS | SecurityStartTLS | SecurityPlain
	TLS      TLSConfig `mapstructure:"tls"`
	// Insecure allows security: plain to a host that is not loopback. It never disables certificate
	// verification: a private CA goes in tls.ca_file.
	Insecure     bool   `mapstructure:"insecure"`
	Username     string `mapstructure:"username"`
	Password     string `mapstructure:"password"`
	PasswordFile string `mapstructure:"password_file"` // read into Password by Load
	// OAuth2 signs in with XOAUTH2 (or OAUTHBEARER) instead of a password; see OAuth2Config.
	OAuth2 *OAuth2Config `mapstructure:"oauth2"`
	// Mailboxes to watch, one IMAP session each. Default [INBOX].
	Mailboxes []string `mapstructure:"mailboxes"`
	// Start says what to do on the first run of a mailbox: StartNew (the default) processes only
	// mail that arrives from now on, StartAll backfills everything, a date (2006-01-02) backfills
	// mail received since that day.
	Start        string        `mapstructure:"start"`
	IdleRefresh  time.Duration `mapstructure:"idle_refresh"`  // re-issue IDLE this often; 1s–25m, default 10m
	PollInterval time.Duration `mapstructure:"poll_interval"` // NOOP poll without IDLE; ≥ 30s (≥ 10m for Gmail)
	// CommandTimeout is how long a command may go without a byte from the server before the
	// connection is closed (go-imap has no read deadlines). Default 2m, allowed 1s–10m.
	CommandTimeout time.Duration `mapstructure:"command_timeout"`
	// TrustedAuthservID is the authserv-id (RFC 8601) whose Authentication-Results header is
	// believed. Default "mx.google.com" for Gmail; for other hosts the default is "", which trusts
	// no Authentication-Results header at all (auth.* reads "none"): only the operator knows which
	// receiving MTA strips forged copies of its own header, so it must be named explicitly.
	TrustedAuthservID string  `mapstructure:"trusted_authserv_id"`
	Backoff           Backoff `mapstructure:"backoff"`
}

// Backoff is the reconnect schedule of an account's IMAP sessions (full jitter between Min and Max).
type Backoff struct {
	Min      time.Duration `mapstructure:"min"`       // default 1s
	Max      time.Duration `mapstructure:"max"`       // default 5m
	AuthMin  time.Duration `mapstructure:"auth_min"`  // after AUTHENTICATIONFAILED or [ALERT]; default 1m
	QuotaMin time.Duration `mapstructure:"quota_min"` // after an over-quota refusal; default 1h
}

// Values of imap.start other than a date.
const (
	StartNew = "new"
	StartAll = "all"
)

// Addr returns host:port of the IMAP server.
func (c IMAPConfig) Addr() string { return net.JoinHostPort(c.Host, strconv.Itoa(c.Port)) }

// Defaults and bounds of the imap section. The defaults are the watcher's own.
const (
	defaultMailbox        = "INBOX"
	defaultIdleRefresh    = watcher.DefaultIdleRefresh
	minIdleRefresh        = time.Second
	maxIdleRefresh        = 25 * time.Minute // RFC 2177 §3: re-issue IDLE before 29 minutes, with a margin
	defaultPollInterval   = watcher.DefaultPollInterval
	minPollInterval       = 30 * time.Second
	minGmailPollInterval  = 10 * time.Minute
	defaultCommandTimeout = watcher.DefaultCommandTimeout
	minCommandTimeout     = time.Second
	maxCommandTimeout     = 10 * time.Minute
	gmailAuthservID       = "mx.google.com"
)

func (m *IMAPConfig) applyDefaults(path string, warnings *[]string) {
	if m.Security == "" {
		m.Security = SecurityTLS
	}
	if m.Port == 0 {
		m.Port = 143
		if m.Security == SecurityTLS {
			m.Port = 993
		}
	}
	if len(m.Mailboxes) == 0 {
		m.Mailboxes = []string{defaultMailbox}
	}
	for i, mb := range m.Mailboxes {
		m.Mailboxes[i] = canonicalMailbox(mb)
	}
	if m.Start == "" {
		m.Start = StartNew
	}
	setDefault(&m.IdleRefresh, defaultIdleRefresh)
	setDefault(&m.PollInterval, defaultPollInterval)
	setDefault(&m.CommandTimeout, defaultCommandTimeout)
	floor, why := minPollInterval, ""
	if isGmail(m.Host) {
		floor, why = minGmailPollInterval, " for Gmail"
	}
	if m.PollInterval < floor {
		*warnings = append(*warnings, fmt.Sprintf("%s.poll_interval: %s is below the minimum of %s%s; using %s",
			path, m.PollInterval, floor, why, floor))
		m.PollInterval = floor
	}
	if m.TrustedAuthservID == "" && isGmail(m.Host) {
		m.TrustedAuthservID = gmailAuthservID
	}
	m.Backoff.applyDefaults()
	m.OAuth2.applyDefaults()
	if m.Security == SecurityPlain && m.Insecure && m.Host != "" && !isLoopback(m.Host) {
		*warnings = append(*warnings, fmt.Sprintf("%s: plaintext IMAP to %s (insecure: true): the password and mail travel unencrypted",
			path, m.Host))
	}
}

func (b *Backoff) applyDefaults() {
	setDefault(&b.Min, watcher.DefaultBackoffMin)
	setDefault(&b.Max, watcher.DefaultBackoffMax)
	setDefault(&b.AuthMin, watcher.DefaultBackoffAuthMin)
	setDefault(&b.QuotaMin, watcher.DefaultBackoffQuota)
}

// setDefault sets *v to def when it is the zero value.
func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

func (m *IMAPConfig) validate(p *problems, path string) {
	validateServer(p, path, m.Host, m.Port, m.Security, m.Insecure, m.TLS)
	if m.Username == "" {
		p.add(path+".username", "required")
	}
	switch {
	case m.OAuth2 != nil:
		if m.Password != "" {
			p.add(path+".password", "set both password and oauth2; use one")
		}
		m.OAuth2.validate(p, path+".oauth2")
	case m.Password == "":
		p.add(path+".password", "required (or password_file, or oauth2)")
	}
	m.validateMailboxes(p, path)
	if m.Start != StartNew && m.Start != StartAll {
		if _, err := time.Parse(time.DateOnly, m.Start); err != nil {
			p.add(path+".start", "%q is not new, all or a date like 2026-01-01", m.Start)
		}
	}
	if m.IdleRefresh < minIdleRefresh || m.IdleRefresh > maxIdleRefresh {
		// RFC 2177 §3: clients must re-issue IDLE at least every 29 minutes; we keep a margin.
		p.add(path+".idle_refresh", "%s is outside %s–%s", m.IdleRefresh, minIdleRefresh, maxIdleRefresh)
	}
	if m.PollInterval < minPollInterval {
		p.add(path+".poll_interval", "%s is below the minimum of %s", m.PollInterval, minPollInterval)
	}
	if m.CommandTimeout < minCommandTimeout || m.CommandTimeout > maxCommandTimeout {
		p.add(path+".command_timeout", "%s is outside %s–%s", m.CommandTimeout, minCommandTimeout, maxCommandTimeout)
	}
	if strings.ContainsFunc(m.TrustedAuthservID, isSpaceOrControl) {
		p.add(path+".trusted_authserv_id", "must not contain spaces")
	}
	m.Backoff.validate(p, path+".backoff")
}

func (m *IMAPConfig) validateMailboxes(p *problems, path string) {
	seen := map[string]bool{}
	for j, mb := range m.Mailboxes {
		key := mb
		if strings.EqualFold(mb, "INBOX") {
			key = "INBOX"
		}
		switch {
		case strings.TrimSpace(mb) == "":
			p.add(fmt.Sprintf("%s.mailboxes[%d]", path, j), "empty mailbox name")
		case seen[key]:
			p.add(fmt.Sprintf("%s.mailboxes[%d]", path, j), "%q is listed twice", mb)
		}
		seen[key] = true
	}
	if len(m.Mailboxes) == 0 {
		p.add(path+".mailboxes", "at least one mailbox is required")
	}
}

func (b Backoff) validate(p *problems, path string) {
	positive(p, path+".min", b.Min)
	positive(p, path+".auth_min", b.AuthMin)
	positive(p, path+".quota_min", b.QuotaMin)
	if b.Max < b.Min {
		p.add(path+".max", "%s is less than backoff.min %s", b.Max, b.Min)
	}
}

// isGmail reports whether host is Gmail's IMAP server.
func isGmail(host string) bool {
	h := strings.TrimSuffix(strings.ToLower(host), ".")
	return h == "imap.gmail.com" || h == "imap.googlemail.com"
}

// canonicalMailbox spells any case of INBOX as "INBOX" (RFC 3501 §5.1: the name is
// case-insensitive), so the rest of the program can compare mailbox names exactly.
func canonicalMailbox(name string) string {
	if strings.EqualFold(name, "INBOX") {
		return "INBOX"
	}
	return name
}

// SameMailbox compares mailbox names; INBOX is case-insensitive (RFC 3501 §5.1), others are not.
func SameMailbox(a, b string) bool {
	if strings.EqualFold(a, "INBOX") && strings.EqualFold(b, "INBOX") {
		return true
	}
	return a == b
}
