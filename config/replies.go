package config

// The replies section: auto-reply templates, sent through an account's SMTP server.

import (
	"fmt"
	netmail "net/mail"
	"strings"
	"time"

	"github.com/mailhook/mailhook/reply"
)

// Reply is an auto-reply template (sent through the account's SMTP server).
type Reply struct {
	Name string `mapstructure:"name"`
	// Fields are the extract names of the rules that send this reply, sorted, for the template
	// check (ApplyDefaults sets them; not a configuration key).
	Fields  []string      `mapstructure:"-"`
	Subject string        `mapstructure:"subject"`  // text/template over the message
	Body    string        `mapstructure:"body"`     // text/template over the message
	OncePer time.Duration `mapstructure:"once_per"` // one reply per (account, sender, reply); default 168h, ≥ 24h
	// OwnAddresses are the addresses that count as "us" (RFC 3834 §2); empty means the account's
	// username and smtp.from, which the caller fills in per account. smtp.from always counts.
	OwnAddresses []string `mapstructure:"own_addresses"`
	// HTML is an optional html/template for an HTML alternative of the body: it escapes what
	// comes from the message.
	HTML string `mapstructure:"html"`
	// Suppress adds sender patterns ('*' wildcards, case-insensitive, whole address) to the
	// built-in ones never answered: MAILER-DAEMON*, LISTSERV*, majordomo*, *-request@*, owner-*.
	Suppress []string `mapstructure:"suppress"`
	// MaxReceived: a message with more Received headers is never answered (a loop); default 30.
	MaxReceived int `mapstructure:"max_received"`
}

// Defaults and bounds of a reply. At most one reply per (account, sender, reply) within once_per,
// which is at least a day; the Received-header loop threshold is the reply package's own.
const (
	defaultOncePer     = 7 * 24 * time.Hour
	minOncePer         = 24 * time.Hour
	defaultMaxReceived = reply.DefaultMaxReceived
)

func (r *Reply) applyDefaults() {
	setDefault(&r.OncePer, defaultOncePer)
	setDefault(&r.MaxReceived, defaultMaxReceived)
}

func (r *Reply) validate(p *problems, path string) {
	if strings.TrimSpace(r.Subject) == "" {
		p.add(path+".subject", "required")
	}
	if strings.TrimSpace(r.Body) == "" {
		p.add(path+".body", "required")
	}
	if r.OncePer < minOncePer {
		p.add(path+".once_per", "%s is below the minimum of %s", r.OncePer, minOncePer)
	}
	for j, a := range r.OwnAddresses {
		if _, err := netmail.ParseAddress(a); err != nil {
			p.add(fmt.Sprintf("%s.own_addresses[%d]", path, j), "not an email address: %v", err)
		}
	}
	for j, pat := range r.Suppress {
		if strings.TrimSpace(pat) == "" || strings.ContainsFunc(pat, isSpaceOrControl) {
			p.add(fmt.Sprintf("%s.suppress[%d]", path, j), "want an address pattern such as *-bounces@*")
		}
	}
	if r.MaxReceived < 1 {
		p.add(path+".max_received", "must be at least 1")
	}
}
