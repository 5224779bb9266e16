package payload

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/mailhook/mailhook/message"
)

// Version is the version of the webhook payload this package produces. Fields may be added within
// a version (receivers must ignore unknown fields); a field is never removed, renamed or given
// another meaning without a new version.
const Version = 1

// Event types (Payload.Type).
const (
	// TypeMessageMatched is every payload of a matched message.
	TypeMessageMatched = "message.matched"
	// TypeTest is the test event `mailhook webhooks test` sends; no message was matched.
	TypeTest = "mailhook.test"
)

// DefaultMaxBodyBytes is the cap on Payload.Text and Payload.HTML each when New is given 0.
const DefaultMaxBodyBytes = 256 << 10

// MaxHeaderBytes bounds Payload.Headers: the header fields are copied in message order until their
// names and values add up to this many bytes; the rest are left out, and the payload is marked
// truncated with the defect "headers_truncated".
const MaxHeaderBytes = 64 << 10

// Defects New adds to those of the message.
const (
	DefectBodyTruncated    = "body_truncated"
	DefectHeadersTruncated = "headers_truncated"
	// DefectAttachmentsTruncated: attachments a webhook with `attachments: inline` chose were
	// shipped as metadata only, because they did not fit under max_inline_bytes (or under the
	// account's max_message_size, so they were never fetched).
	DefectAttachmentsTruncated = "attachments_truncated"
)

// BodyMode says which message bodies a webhook ships.
type BodyMode string

// Body modes. The zero value means BodyText.
const (
	BodyNone BodyMode = "none" // neither text nor html
	BodyText BodyMode = "text" // the text/plain body only (default)
	BodyHTML BodyMode = "html" // the text/html body only
	BodyBoth BodyMode = "both" // both bodies
)

// ParseBodyMode parses a configured body mode; "" gives BodyText.
func ParseBodyMode(s string) (BodyMode, error) {
	switch m := BodyMode(s); m {
	case "":
		return BodyText, nil
	case BodyNone, BodyText, BodyHTML, BodyBoth:
		return m, nil
	}
	return "", fmt.Errorf("body mode %q: want none, text, html or both", s)
}

func (m BodyMode) text() bool { return m == "" || m == BodyText || m == BodyBoth }
func (m BodyMode) html() bool { return m == BodyHTML || m == BodyBoth }

// Payload is the JSON body of a webhook request, version 1. Every string in it is valid UTF-8
// without NUL characters (invalid bytes and NULs are replaced by U+FFFD), lists are [] rather than
// null when empty, and receivers must ignore fields they do not know.
type Payload struct {
	// Version is the payload version, Version.
	Version int `json:"version"`
	// Type is the kind of event: TypeMessageMatched for a message a rule matched, TypeTest for
	// the test event of `mailhook webhooks test`, so a receiver can tell them apart.
	Type string `json:"type"`
	// ID identifies the event: the outbox job id ("msg_" + 26 base32 characters), derived from
	// account, mailbox, uidvalidity, uid, rule and action. It equals the webhook-id and
	// Idempotency-Key request headers and is the same on every retry and after restarts, so a
	// receiver deduplicates on it.
	ID string `json:"id"`
	// Rule is the name of the rule whose action sent this webhook.
	Rule string `json:"rule"`
	// Account is the name of the configured account the message was found in.
	Account string `json:"account"`
	// Mailbox is the IMAP mailbox name, e.g. "INBOX".
	Mailbox string `json:"mailbox"`
	// UID is the message's IMAP UID in Mailbox (RFC 9051 §2.3.1.1); meaningful only together with
	// UIDValidity.
	UID uint32 `json:"uid"`
	// UIDValidity is the mailbox's UIDVALIDITY when the message was processed.
	UIDValidity uint32 `json:"uidvalidity"`
	// MessageID is the Message-ID header with its angle brackets, "" when absent.
	MessageID string `json:"message_id"`
	// Date is the Date header in UTC (RFC 3339), null when absent or unparseable (then Defects
	// holds "bad_date").
	Date *time.Time `json:"date"`
	// From is the first address of the From header; both fields are "" when there is none.
	From Address `json:"from"`
	// To, Cc and ReplyTo are the addresses of those headers, in order.
	To      []Address `json:"to"`
	Cc      []Address `json:"cc"`
	ReplyTo []Address `json:"reply_to"`
	// Subject is the decoded Subject header (RFC 2047), "" when absent.
	Subject string `json:"subject"`
	// Text is the text/plain body decoded to UTF-8, present only when the webhook's body mode is
	// "text" (the default) or "both". It is cut at max_body_bytes on a character boundary; then
	// Truncated is true and Defects holds "body_truncated".
	Text *string `json:"text,omitempty"`
	// HTML is the text/html body decoded to UTF-8, present only when the body mode is "html" or
	// "both"; cut like Text.
	HTML *string `json:"html,omitempty"`
	// ReplyText is what the sender wrote, without the quoted history and the signature
	// (message.ReplyText of the bodies shipped), present when the body mode is not "none".
	ReplyText *string `json:"reply_text,omitempty"`
	// URLs are the distinct http(s) URLs of the bodies shipped (text, and html's links), in
	// order, at most 100; present when the body mode is not "none".
	URLs *[]string `json:"urls,omitempty"`
	// Size is the size of the whole message in octets (RFC822.SIZE).
	Size int64 `json:"size"`
	// Automated is true for mail sent by a machine rather than a person: Auto-Submitted other than
	// "no" (RFC 3834), Precedence bulk/list/junk, any List-* header (RFC 2369, RFC 2919), a null
	// Return-Path and similar markers. Receivers that answer mail should not answer these.
	Automated bool `json:"automated"`
	// Auth holds the SPF, DKIM and DMARC verdicts of the first Authentication-Results header
	// (RFC 8601) added by the account's trusted server; "" when there was none.
	Auth Auth `json:"auth"`
	// Attachments describes the message's non-body parts, nested message/rfc822 parts included.
	Attachments []Attachment `json:"attachments"`
	// Headers maps each lower-case header field name to all its values in message order, decoded
	// (RFC 2047) and unfolded; bounded by MaxHeaderBytes (see DefectHeadersTruncated).
	Headers map[string][]string `json:"headers"`
	// Truncated is true when any size cap cut something the message carried: header section,
	// parts, a body, or the headers shipped here. Defects says which.
	Truncated bool `json:"truncated"`
	// Defects names what was broken in the message or cut on the way, e.g. "bad_date",
	// "unknown_charset", "body_truncated", "fetch_failed"; sorted and unique.
	Defects []string `json:"defects"`
	// Bounce is the delivery failure or delay report this message is: kind ("hard", "soft",
	// "delayed"), reporting_mta, original_message_id and recipients (address, action, status,
	// diagnostic). Present only for a bounce.
	Bounce *message.Bounce `json:"bounce,omitempty"`
	// Complaint is the abuse feedback report (RFC 5965) this message is: feedback_type,
	// user_agent, original_mail_from, original_rcpt_to, arrival_date, reported_domain,
	// original_message_id. Present only for a complaint.
	Complaint *message.Complaint `json:"complaint,omitempty"`
	// Calendar is the first event of the message's invitation: method, uid, summary, location,
	// start and end (RFC 3339 UTC, or dates for all_day events), organizer, attendees, status,
	// rrule. Present only for a message with a calendar part.
	Calendar *message.Calendar `json:"calendar,omitempty"`
	// Fields are the values the rule's `extract:` expressions computed on the message, by name:
	// strings, numbers, booleans, lists, maps, or null for a field whose expression failed (then
	// Defects holds "extract_failed:NAME"). Present only when the rule has extract.
	Fields map[string]any `json:"fields,omitempty"`
}

// Address is a mailbox: display name (decoded) and address (addr-spec).
type Address struct {
	Name    string `json:"name"`
	Address string `json:"address"`
}

// Auth holds authentication verdicts as written in Authentication-Results (RFC 8601 §2.7): "pass",
// "fail", "softfail", "neutral", "none", "temperror", "permerror", or "" when unknown.
type Auth struct {
	SPF   string `json:"spf"`
	DKIM  string `json:"dkim"`
	DMARC string `json:"dmarc"`
}

// Attachment describes one attachment, and carries its content when the webhook ships attachments
// inline.
type Attachment struct {
	// Filename is the filename parameter of Content-Disposition (or name of Content-Type), decoded;
	// "" when the part has none.
	Filename string `json:"filename"`
	// ContentType is the media type, lower case, without parameters, e.g. "application/pdf".
	ContentType string `json:"content_type"`
	// Size is the encoded (transfer-encoded) size of the part in octets.
	Size int64 `json:"size"`
	// ContentBase64 is the part's content, decoded from its transfer encoding and encoded in
	// standard base64 (RFC 4648 §4, padded, no line breaks). Present only when the webhook has
	// `attachments: inline`, its attachments_when chose the attachment and it fitted under
	// max_inline_bytes; a chosen attachment that did not fit has none, and then Truncated is true
	// and Defects holds "attachments_truncated". See InlineFromSpool for how it is stored (inline.go).
	ContentBase64 string `json:"content_base64,omitempty"`
}

// New builds the payload version 1 for message m, matched by rule in (account, mailbox)
// with the given UIDVALIDITY and UID. id is the outbox job id (see Payload.ID). body selects the
// bodies shipped; maxBodyBytes caps Text and HTML each (0 means DefaultMaxBodyBytes, a negative
// value means no cap beyond the message's own). An unknown body mode ships what BodyText does;
// ParseBodyMode validates configuration.
func New(id, rule, account, mailbox string, uidvalidity, uid uint32, m *message.Message, auth message.Auth, body BodyMode, maxBodyBytes int) *Payload {
	if maxBodyBytes == 0 {
		maxBodyBytes = DefaultMaxBodyBytes
	}
	if body != BodyNone && body != BodyHTML && body != BodyBoth {
		body = BodyText
	}
	p := &Payload{
		Version:     Version,
		Type:        TypeMessageMatched,
		ID:          clean(id),
		Rule:        clean(rule),
		Account:     clean(account),
		Mailbox:     clean(mailbox),
		UID:         uid,
		UIDValidity: uidvalidity,
		MessageID:   clean(m.MessageID),
		From:        newAddress(m.From),
		To:          newAddresses(m.To),
		Cc:          newAddresses(m.Cc),
		ReplyTo:     newAddresses(m.ReplyTo),
		Subject:     clean(m.Subject),
		Size:        m.Size,
		Automated:   m.Automated,
		Auth:        Auth{SPF: clean(auth.SPF), DKIM: clean(auth.DKIM), DMARC: clean(auth.DMARC)},
		Attachments: make([]Attachment, 0, len(m.Attachments)),
		Headers:     make(map[string][]string),
		Truncated:   m.Truncated,
		Defects:     make([]string, 0, len(m.Defects)+2),
		// The message package gives these valid UTF-8 without NULs, like every string it makes.
		Bounce:    m.Bounce,
		Complaint: m.Complaint,
		Calendar:  m.Calendar,
	}
	if !m.Date.IsZero() {
		d := m.Date.UTC()
		p.Date = &d
	}
	for _, a := range m.Attachments {
		p.Attachments = append(p.Attachments, Attachment{
			Filename:    clean(a.Filename),
			ContentType: clean(a.ContentType),
			Size:        a.Size,
		})
	}
	for _, d := range m.Defects {
		p.Defects = append(p.Defects, clean(d))
	}

	cut := false
	if body.text() {
		s, c := capUTF8(clean(m.Text), maxBodyBytes)
		p.Text, cut = &s, c
	}
	if body.html() {
		s, c := capUTF8(clean(m.HTML), maxBodyBytes)
		p.HTML, cut = &s, cut || c
	}
	if cut {
		p.Truncated = true
		p.Defects = append(p.Defects, DefectBodyTruncated)
	}
	if body != BodyNone {
		var text, html string
		if p.Text != nil {
			text = *p.Text
		}
		if p.HTML != nil {
			html = *p.HTML
		}
		reply, urls := clean(message.ReplyText(text, html)), message.URLs(text, html)
		for i := range urls {
			urls[i] = clean(urls[i])
		}
		p.ReplyText, p.URLs = &reply, &urls
	}

	used := 0
	for _, h := range m.Headers {
		name, value := clean(strings.ToLower(h.Name)), clean(h.Value)
		if used+len(name)+len(value) > MaxHeaderBytes {
			p.Truncated = true
			p.Defects = append(p.Defects, DefectHeadersTruncated)
			break
		}
		used += len(name) + len(value)
		p.Headers[name] = append(p.Headers[name], value)
	}

	slices.Sort(p.Defects)
	p.Defects = slices.Compact(p.Defects)
	return p
}

// SetFields records the rule's extracted fields and the defects of those that failed.
func (p *Payload) SetFields(fields map[string]any, defects []string) {
	p.Fields = fields
	if len(defects) > 0 {
		p.Defects = append(p.Defects, defects...)
		slices.Sort(p.Defects)
		p.Defects = slices.Compact(p.Defects)
	}
}

// OmitAttachments empties the attachment list, for a webhook with `attachments: none`.
func (p *Payload) OmitAttachments() { p.Attachments = p.Attachments[:0] }

// MarkAttachmentsTruncated records that chosen attachments were shipped as metadata only
// (DefectAttachmentsTruncated).
func (p *Payload) MarkAttachmentsTruncated() {
	p.Truncated = true
	if !slices.Contains(p.Defects, DefectAttachmentsTruncated) {
		p.Defects = append(p.Defects, DefectAttachmentsTruncated)
		slices.Sort(p.Defects)
	}
}

// Marshal returns the JSON encoding of p as it is sent: valid UTF-8, no HTML escaping of <, > and
// &, no trailing newline. The bytes are what the signature covers; store them once and send them
// unchanged on every attempt.
func (p *Payload) Marshal() ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(p); err != nil {
		return nil, fmt.Errorf("marshal payload %s: %w", p.ID, err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

func newAddress(a message.Address) Address {
	return Address{Name: clean(a.Name), Address: clean(a.Address)}
}

func newAddresses(as []message.Address) []Address {
	out := make([]Address, 0, len(as))
	for _, a := range as {
		out = append(out, newAddress(a))
	}
	return out
}
