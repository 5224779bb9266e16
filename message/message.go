// Package message is mailhook's mail model: a Message with addresses, subject, date, text, html,
// attachment metadata, headers and defects, built either from the pieces an IMAP fetch returns (the
// header section, BODYSTRUCTURE and the few body parts that were fetched) or from a whole RFC 5322
// message. Building is bounded (header bytes, nesting depth, part count, line length, decoded size)
// and tolerant: broken input yields defects, never an error or a panic.
package message

import (
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
)

// Address is one mailbox: display name and addr-spec. JSON and expression names are snake_case.
type Address struct {
	Name    string `json:"name" expr:"name"`
	Address string `json:"address" expr:"address"`
}

// Attachment describes one non-body leaf part (nested message/rfc822 parts included).
type Attachment struct {
	Filename    string `json:"filename" expr:"filename"`
	ContentType string `json:"content_type" expr:"content_type"`
	// Size is the encoded size of the part in octets, as BODYSTRUCTURE reports it (or as counted
	// while parsing a whole message).
	Size int64 `json:"size" expr:"size"`
	// Section is the IMAP part number, e.g. "2" or "1.3", used to fetch the content later.
	Section string `json:"-" expr:"-"`
	// Encoding is the Content-Transfer-Encoding, lower case.
	Encoding string `json:"-" expr:"-"`
}

// Auth holds the verdicts of the trusted Authentication-Results header (RFC 8601): "pass",
// "fail", "none", …; empty strings when no trusted header was found.
type Auth struct {
	SPF   string `json:"spf" expr:"spf"`
	DKIM  string `json:"dkim" expr:"dkim"`
	DMARC string `json:"dmarc" expr:"dmarc"`
}

// Header is one header field as it appeared, in order; Value is decoded (RFC 2047, charset) and
// unfolded, always valid UTF-8.
type Header struct {
	Name  string
	Value string
}

// Message is the parsed view of one mail that rules read and webhooks ship. Every string in it
// is valid UTF-8 without NUL bytes.
//
// Fields that RFC 5322 §3.6 allows once (From, Sender, Reply-To, To, Cc, Subject, Date,
// Message-ID, …) may still repeat in real mail: then the first occurrence is what the single-
// valued fields hold (From, Sender, Subject, Date, MessageID), the address lists collect every
// occurrence, Headers keeps them all, and the defect "duplicate_header" is recorded.
//
// Addresses are taken only from addr-specs as written: an encoded-word is decoded in a display
// name but never turned into an address (defect "bad_address"), and an element of an address
// list that does not parse is dropped, not the whole list.
type Message struct {
	MessageID string    // with angle brackets, as in the header; "" when absent
	Subject   string    // decoded (RFC 2047)
	From      Address   // first address of the first From header
	Sender    Address   // Sender header, zero when absent
	To        []Address // every address of every To header
	Cc        []Address // every address of every Cc header
	ReplyTo   []Address // every address of every Reply-To header
	Date      time.Time // Date header; zero when absent or unparseable (defect "bad_date")
	// InternalDate is the IMAP INTERNALDATE (zero when built from a file).
	InternalDate time.Time
	Size         int64    // RFC822.SIZE, or the byte length of the parsed file
	Flags        []string // IMAP flags at fetch time
	Headers      []Header // every header field in order, values decoded
	// Text is the text/plain body, decoded to UTF-8 with "\n" line breaks; several text/plain
	// bodies (inline parts of a multipart/mixed) are joined with "\n". At most
	// Limits.TextBytes (defect "body_truncated").
	Text string
	// HTML is the text/html body, decoded the same way and capped the same way.
	HTML string
	// TextFetched and HTMLFetched say whether Text/HTML were available to the builder (a message
	// built from IMAP pieces has them only if the fetch plan asked for them).
	TextFetched, HTMLFetched bool
	// Attachments are the leaf parts that are not bodies, in message order, with their
	// metadata only (content is never decoded here).
	Attachments []Attachment
	// Automated is true for RFC 3834 auto-submitted mail, mailing lists and bulk mail
	// (Auto-Submitted other than "no", Precedence bulk/list/junk, any List-* header, null Return-Path,
	// X-Autoreply, X-Autorespond, X-Auto-Response-Suppress, and multipart/report bounces and
	// feedback reports).
	Automated bool
	ListID    string // List-Id value, decoded
	// Bounce is the delivery failure or delay report this message is, nil when it is none (or
	// its report part was not fetched: see Sections).
	Bounce *Bounce
	// Complaint is the abuse feedback report (RFC 5965) this message is, nil when none.
	Complaint *Complaint
	// Calendar is the first event of the message's calendar part, nil when it has none (or it
	// was not fetched: see Sections).
	Calendar *Calendar
	// Defects name what was broken or cut: "unknown_charset", "bad_date", "missing_boundary",
	// "depth_exceeded", "too_many_parts", "header_too_large", "line_too_long", "body_truncated",
	// "bad_encoding", "duplicate_header", "fetch_failed", "bad_address", "bad_header",
	// "bad_content_type", "unknown_encoding", "missing_close_boundary", "bad_dsn" (a delivery
	// report that does not parse), "bad_arf" (a feedback report without Feedback-Type),
	// "bad_calendar" (a calendar part that does not parse, or an event without a readable
	// start); sorted, unique.
	Defects []string
	// Truncated is true when any size cap cut something the message carried.
	Truncated bool
	// Key identifies the message across UIDVALIDITY changes: hex SHA-256 of Message-ID, NUL, the
	// raw Date value, NUL and the decimal Size; without a Message-ID, of the raw header section
	// (CRLF line ends, at most Limits.HeaderBytes), NUL and the decimal Size.
	Key string
}

// Limits bound how much of a message is read and kept. The zero value means DefaultLimits; so
// does a zero or negative field.
type Limits struct {
	// HeaderBytes caps each header section (the message's and each part's), counted with CRLF
	// line ends (default 1 MiB). Fields beyond it are dropped: defect "header_too_large".
	HeaderBytes int
	// Depth caps MIME nesting (default 32): the message is at depth 0, the parts of a multipart
	// at depth d are at d+1, and so is the message inside a message/rfc822 part at depth d.
	// Deeper entities are not looked at: defect "depth_exceeded".
	Depth int
	// Parts caps the number of MIME entities below the top level, counted in the order they
	// appear (default 1000); later ones are skipped: defect "too_many_parts".
	Parts int
	// LineBytes is the longest line kept (default 64 KiB, at least 1000 so that RFC 5322 lines
	// and MIME boundaries always fit); the rest of a longer line is read, counted and dropped:
	// defect "line_too_long".
	LineBytes int
	// DecodedBytes caps the total of decoded body text kept per message (default 16 MiB).
	// Attachment content is never decoded.
	DecodedBytes int64
	// TextBytes caps Text and HTML each (default 1 MiB): defect "body_truncated".
	TextBytes int
}

// DefaultLimits returns the limits used for every zero field of a Limits.
func DefaultLimits() Limits {
	return Limits{HeaderBytes: 1 << 20, Depth: 32, Parts: 1000, LineBytes: 64 << 10,
		DecodedBytes: 16 << 20, TextBytes: 1 << 20}
}

// Pieces is what an IMAP fetch returned for one message.
type Pieces struct {
	Header       []byte             // BODY.PEEK[HEADER] (possibly cut at a limit)
	Structure    imap.BodyStructure // BODYSTRUCTURE (extended); may be nil
	Size         int64              // RFC822.SIZE
	Flags        []string
	InternalDate time.Time
	// Parts maps an IMAP section ("1", "1.2", "3.HEADER") to the raw, still transfer-encoded
	// content of that part as fetched with BODY.PEEK[section]. Only the parts the fetch plan asked
	// for are present (Sections).
	Parts map[string][]byte
	// PartialParts lists sections in Parts that were fetched only partially (cut at a size cap).
	PartialParts map[string]bool
}

// withDefaults returns l with every zero or negative field replaced by its default.
func (l Limits) withDefaults() Limits {
	def := DefaultLimits()
	if l.HeaderBytes <= 0 {
		l.HeaderBytes = def.HeaderBytes
	}
	if l.Depth <= 0 {
		l.Depth = def.Depth
	}
	if l.Parts <= 0 {
		l.Parts = def.Parts
	}
	if l.LineBytes <= 0 {
		l.LineBytes = def.LineBytes
	}
	l.LineBytes = max(l.LineBytes, minLineBytes)
	if l.DecodedBytes <= 0 {
		l.DecodedBytes = def.DecodedBytes
	}
	if l.TextBytes <= 0 {
		l.TextBytes = def.TextBytes
	}
	return l
}

// minLineBytes is the smallest accepted Limits.LineBytes: RFC 5322 §2.1.1 allows 998 octets.
const minLineBytes = 1000

// TextPartBytes is how many octets of a text body part's raw (transfer-encoded) content are
// read: Parse reads no more of a body part, and Build uses no more of Pieces.Parts, so fetching
// BODY.PEEK[section]<0.n> with this n (and marking the part in Pieces.PartialParts when it is
// larger) gives Build everything Parse would have used. It is four times TextBytes, room for
// base64 and multi-byte charsets to still fill TextBytes.
func (l Limits) TextPartBytes() int64 {
	return 4 * int64(l.withDefaults().TextBytes)
}

// Header returns the first value of the named field (case-insensitive), decoded; "" if absent.
// For fields that must appear once (From, Subject, …) the first occurrence is what rules see.
func (m *Message) Header(name string) string {
	for _, h := range m.Headers {
		if strings.EqualFold(h.Name, name) {
			return h.Value
		}
	}
	return ""
}

// HeaderValues returns every value of the named field (case-insensitive), decoded, in order.
func (m *Message) HeaderValues(name string) []string {
	var out []string
	for _, h := range m.Headers {
		if strings.EqualFold(h.Name, name) {
			out = append(out, h.Value)
		}
	}
	return out
}
