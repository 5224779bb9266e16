package rules

import (
	"strings"
	"sync"
	"time"

	"github.com/mailhook/mailhook/message"
)

// Env is the expression environment a rule's `when` is evaluated against: one message as seen in
// one mailbox. The names after `expr:` are the names expressions use; they are the same snake_case
// names the YAML config and the webhook JSON use (see DESIGN.md, "Expression environment").
//
// Besides these fields, every expression can call the helpers Compile registers:
//
//	domain(addr string) string    // lower-cased domain of an address, "" when there is none
//	re(pattern, s string) bool    // like `s matches pattern`, with the compiled pattern cached
//	find(pattern, s string) string          // the first match, "" when none
//	find_all(pattern, s string) []string    // up to 100 matches
//	groups(pattern, s string) map[string]any // named groups of the first match; empty when none
//
// An Env is read-only once built; one Env may be evaluated by several goroutines at once.
type Env struct {
	Account   string            `expr:"account"`
	Mailbox   string            `expr:"mailbox"`
	UID       uint32            `expr:"uid"`
	MessageID string            `expr:"message_id"` // with angle brackets; "" when absent
	Subject   string            `expr:"subject"`
	From      message.Address   `expr:"from"`
	Sender    message.Address   `expr:"sender"`
	To        []message.Address `expr:"to"`
	Cc        []message.Address `expr:"cc"`
	ReplyTo   []message.Address `expr:"reply_to"`
	Date      time.Time         `expr:"date"` // the Date header; zero when absent or unparseable
	Size      int64             `expr:"size"` // RFC822.SIZE in octets
	Flags     []string          `expr:"flags"`
	// Text and HTML are the bodies, decoded and already capped by the message package, so that
	// no expression runs over unbounded input. They are empty unless a rule reads them (see
	// Set.Reads): the watcher fetches the body parts only then.
	Text string `expr:"text"`
	HTML string `expr:"html"`
	// ReplyText is what the sender wrote: Text without the quoted history and the signature
	// (message.ReplyText; from HTML for a message without a text part, which a rule reading it
	// has fetched: Reads.ReplyText).
	// It and URLs are filled by Understand, which Match and Explain call when a rule reads them.
	ReplyText string `expr:"reply_text"`
	// URLs are the distinct http(s) URLs of Text and of HTML's links, in order, at most 100.
	URLs        []string `expr:"urls"`
	understood  sync.Once
	Attachments []message.Attachment `expr:"attachments"` // metadata only: filename, content_type, size
	Automated   bool                 `expr:"automated"`
	ListID      string               `expr:"list_id"`
	// Bounce, Complaint and Calendar are nil unless the message is a delivery report, an abuse
	// report or an invitation (message.Bounce, message.Complaint, message.Calendar); the watcher
	// fetches their parts when a rule reads them (Set.Reads) or a webhook ships a body. Reading a
	// field of a nil one gives the field's zero value, not an error (nilsafe.go).
	Bounce    *message.Bounce    `expr:"bounce"`
	Complaint *message.Complaint `expr:"complaint"`
	Calendar  *message.Calendar  `expr:"calendar"`
	Defects   []string           `expr:"defects"`
	// Auth holds the verdicts of the first Authentication-Results header whose authserv-id is the
	// account's trusted one (RFC 8601 §5: only a trusted authserv-id's results may be believed).
	Auth message.Auth `expr:"auth"`

	// Header returns the first value of the named header field, decoded; "" when absent.
	// Names compare case-insensitively (RFC 5322 §1.2.2).
	Header func(name string) string `expr:"header"`
	// Headers returns every value of the named header field, in order.
	Headers func(name string) []string `expr:"headers"`
}

// NewEnv builds the environment for message m, uid uid, in the given account and mailbox. auth
// is read from m with trustedAuthservID; an empty trustedAuthservID trusts no header, so every
// verdict is "". A nil m gives an environment of an empty message.
func NewEnv(account, mailbox string, uid uint32, m *message.Message, trustedAuthservID string) *Env {
	if m == nil {
		m = &message.Message{}
	}
	return &Env{
		Account:     account,
		Mailbox:     mailbox,
		UID:         uid,
		MessageID:   m.MessageID,
		Subject:     m.Subject,
		From:        m.From,
		Sender:      m.Sender,
		To:          m.To,
		Cc:          m.Cc,
		ReplyTo:     m.ReplyTo,
		Date:        m.Date,
		Size:        m.Size,
		Flags:       m.Flags,
		Text:        m.Text,
		HTML:        m.HTML,
		Attachments: m.Attachments,
		Automated:   m.Automated,
		ListID:      m.ListID,
		Bounce:      m.Bounce,
		Complaint:   m.Complaint,
		Calendar:    m.Calendar,
		Defects:     m.Defects,
		Auth:        m.Auth(trustedAuthservID),
		Header:      m.Header,
		Headers:     m.HeaderValues,
	}
}

// Understand fills ReplyText and URLs from Text and HTML, once: they cost a pass over both bodies,
// which only messages that a rule reading them sees pay. Safe for concurrent use.
func (e *Env) Understand() {
	e.understood.Do(func() {
		e.ReplyText, e.URLs = message.ReplyText(e.Text, e.HTML), message.URLs(e.Text, e.HTML)
	})
}

// domainOf returns the lower-cased domain of an address such as "a@Example.COM" or
// "<a@example.com>": what follows the last "@", without surrounding space, a closing ">" or a
// trailing root dot. It returns "" when addr has no "@" or nothing after it.
func domainOf(addr string) string {
	addr = strings.TrimSpace(addr)
	addr = strings.TrimSuffix(addr, ">")
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return ""
	}
	d := strings.TrimSuffix(strings.TrimSpace(addr[at+1:]), ".")
	return strings.ToLower(d)
}
