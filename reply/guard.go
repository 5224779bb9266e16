package reply

import (
	netmail "net/mail"
	"strings"

	"github.com/mailhook/mailhook/message"
)

// The loop guards of auto-replies (RFC 3834 §2 and §3, RFC 5230 §4.5): never answer automated
// mail, mail without a usable return path, list mail, mail that has travelled too far, mail from
// mailer daemons or from ourselves, or mail not addressed to us; and never answer our own
// replies. Check is a pure function of the message and the policy, so every case is a row of a
// table test; the ledger (once per sender and period) and the daily cap need state and are
// checked by the reply Worker instead.

// LoopHeader marks every reply mailhook sends; its value is the sending account's From address.
// A message carrying it with one of our own addresses is one we sent: it triggers nothing.
const LoopHeader = "X-Mailhook-Loop"

// DefaultMaxReceived is the Received-header count above which a message is considered looping
// and never answered (RFC 5321 §6.3 detects loops by counting Received fields).
const DefaultMaxReceived = 30

// DefaultSuppress returns the sender patterns never answered (RFC 3834 §3.1.8 and RFC 5230 §4.5:
// mailer daemons, list software and list administrative addresses), in a new slice. A pattern is
// matched against the whole address, case-insensitively; '*' matches any run of characters.
func DefaultSuppress() []string {
	return []string{"MAILER-DAEMON*", "LISTSERV*", "majordomo*", "*-request@*", "owner-*"}
}

// Reasons Check gives for not replying. They are stable: logs and metrics use them.
const (
	SkipOwnMessage      = "own_message"       // carries our loop marker: a reply we sent
	SkipAutoSubmitted   = "auto_submitted"    // Auto-Submitted other than "no" (RFC 3834 §2)
	SkipNoReturnPath    = "no_return_path"    // no Return-Path header (RFC 3834 §2)
	SkipNullReturnPath  = "null_return_path"  // Return-Path <>: a bounce or other notice (RFC 3834 §2)
	SkipBadReturnPath   = "bad_return_path"   // Return-Path that is not one address
	SkipPrecedence      = "precedence"        // Precedence bulk, list or junk (RFC 3834 §3.1.8)
	SkipListHeader      = "list_header"       // a List-* header (RFC 2369, RFC 2919): list mail
	SkipTooManyReceived = "too_many_received" // more Received headers than the threshold: a loop
	SkipSuppressed      = "suppressed_sender" // sender matches the suppression list
	SkipOwnSender       = "own_sender"        // sender is one of our addresses
	SkipNotAddressed    = "not_addressed"     // none of our addresses in To/Cc/Bcc/Resent-* (RFC 3834 §2)
)

// Policy is what the loop guards know about "us".
type Policy struct {
	// OwnAddresses are the addresses that are us: a reply goes out only when one of them is a
	// recipient of the original, and never to one of them. Compared case-insensitively. Empty
	// means no message is ever addressed to us, so nothing is answered.
	OwnAddresses []string
	// Suppress are sender patterns never answered; nil means DefaultSuppress(). Configured
	// patterns are added to the defaults by the caller, not put in their place.
	Suppress []string
	// MaxReceived is the most Received headers an answered message may carry; 0 means
	// DefaultMaxReceived.
	MaxReceived int
}

// Check applies the loop guards to m. It returns the address to reply to — the Return-Path
// address (RFC 3834 §4: the envelope sender, never From or Reply-To) — or, when
// no reply may be sent, one of the Skip* reasons.
func Check(m *message.Message, p Policy) (to, skip string) {
	own := make(map[string]bool, len(p.OwnAddresses))
	for _, a := range p.OwnAddresses {
		own[strings.ToLower(strings.TrimSpace(a))] = true
	}
	if isOwn(m, own) {
		return "", SkipOwnMessage
	}
	// RFC 3834 §2: "Automatic responses SHOULD NOT be issued in response to any message which
	// contains an Auto-Submitted header field … with any value other than 'no'".
	for _, v := range m.HeaderValues("Auto-Submitted") {
		if keyword(v) != "no" {
			return "", SkipAutoSubmitted
		}
	}
	// RFC 3834 §2: no response to a message without a return path, or with a null one.
	rps := m.HeaderValues("Return-Path")
	if len(rps) == 0 {
		return "", SkipNoReturnPath
	}
	rp, ok := returnPath(rps[0])
	switch {
	case !ok:
		return "", SkipBadReturnPath
	case rp == "":
		return "", SkipNullReturnPath
	}
	for _, v := range m.HeaderValues("Precedence") {
		switch keyword(v) {
		case "bulk", "list", "junk":
			return "", SkipPrecedence
		}
	}
	for _, h := range m.Headers {
		if len(h.Name) > 5 && strings.EqualFold(h.Name[:5], "List-") {
			return "", SkipListHeader
		}
	}
	maxReceived := p.MaxReceived
	if maxReceived <= 0 {
		maxReceived = DefaultMaxReceived
	}
	if len(m.HeaderValues("Received")) > maxReceived {
		return "", SkipTooManyReceived
	}
	suppress := p.Suppress
	if suppress == nil {
		suppress = DefaultSuppress()
	}
	senders := []string{strings.ToLower(rp)}
	if f := strings.ToLower(m.From.Address); f != "" && f != senders[0] {
		senders = append(senders, f)
	}
	for _, s := range senders {
		for _, pat := range suppress {
			if globMatch(strings.ToLower(pat), s) {
				return "", SkipSuppressed
			}
		}
	}
	for _, s := range senders {
		if own[s] {
			return "", SkipOwnSender
		}
	}
	if !addressedTo(m, own) {
		return "", SkipNotAddressed
	}
	return rp, ""
}

// IsOwnMessage reports whether m carries our loop marker with one of ownAddresses: a reply we
// sent, which triggers nothing. Callers also check m.MessageID against the Message-IDs they
// recorded.
func IsOwnMessage(m *message.Message, ownAddresses []string) bool {
	own := make(map[string]bool, len(ownAddresses))
	for _, a := range ownAddresses {
		own[strings.ToLower(strings.TrimSpace(a))] = true
	}
	return isOwn(m, own)
}

func isOwn(m *message.Message, own map[string]bool) bool {
	for _, v := range m.HeaderValues(LoopHeader) {
		if own[strings.ToLower(strings.TrimSpace(v))] {
			return true
		}
	}
	return false
}

// keyword returns a structured header value without comments and parameters, lower-cased:
// "Auto-Replied; foo=bar (comment)" gives "auto-replied".
func keyword(v string) string {
	v = stripComments(v)
	if i := strings.IndexByte(v, ';'); i >= 0 {
		v = v[:i]
	}
	return strings.ToLower(strings.TrimSpace(v))
}

// stripComments removes RFC 5322 §3.2.2 comments (nested, with quoted-pairs) from v.
func stripComments(v string) string {
	if !strings.ContainsRune(v, '(') {
		return v
	}
	var b strings.Builder
	depth := 0
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '\\' && depth > 0:
			i++
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case depth == 0:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// returnPath parses a Return-Path value (RFC 5322 §3.6.7: "<>" or "<addr-spec>"). It returns ""
// for the null path; ok is false when the value is not a single plausible address.
func returnPath(v string) (addr string, ok bool) {
	v = strings.TrimSpace(stripComments(v))
	if strings.HasPrefix(v, "<") && strings.HasSuffix(v, ">") {
		v = strings.TrimSpace(v[1 : len(v)-1])
		if v == "" {
			return "", true
		}
	}
	// A source route (<@a,@b:user@host>, RFC 5321 §4.1.2) is obsolete; keep the mailbox.
	if strings.HasPrefix(v, "@") {
		if i := strings.IndexByte(v, ':'); i >= 0 {
			v = v[i+1:]
		}
	}
	if !plausibleAddress(v) {
		return "", false
	}
	return v, true
}

// plausibleAddress reports whether s looks like one addr-spec safe to put in RCPT TO and a To
// header: local@domain, printable ASCII without spaces, angle brackets, commas or quotes.
func plausibleAddress(s string) bool {
	at := strings.LastIndexByte(s, '@')
	if at <= 0 || at == len(s)-1 || len(s) > 254 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`<>,;:"()[]\`, c) >= 0 {
			return false
		}
	}
	return !strings.Contains(s[at+1:], "@")
}

// addressedTo reports whether one of own is a recipient of m: To and Cc as parsed by the message
// package, Bcc and the Resent-* fields (RFC 5322 §3.6.6) parsed here.
func addressedTo(m *message.Message, own map[string]bool) bool {
	for _, list := range [][]message.Address{m.To, m.Cc} {
		for _, a := range list {
			if own[strings.ToLower(a.Address)] {
				return true
			}
		}
	}
	for _, name := range []string{"Bcc", "Resent-To", "Resent-Cc", "Resent-Bcc"} {
		for _, v := range m.HeaderValues(name) {
			for _, a := range headerAddresses(v) {
				if own[a] {
					return true
				}
			}
		}
	}
	return false
}

// headerAddresses returns the lower-cased addr-specs of an address-list value. A value that does
// not parse as a whole is scanned for angle-bracketed and bare addresses outside quotes and
// comments.
func headerAddresses(v string) []string {
	var out []string
	if list, err := netmail.ParseAddressList(v); err == nil {
		for _, a := range list {
			out = append(out, strings.ToLower(a.Address))
		}
		return out
	}
	v = stripComments(v)
	var b strings.Builder
	inQuote := false
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '\\' && inQuote:
			i++
		case c == '"':
			inQuote = !inQuote
		case inQuote:
		default:
			b.WriteByte(c)
		}
	}
	for _, f := range strings.FieldsFunc(b.String(), func(r rune) bool { return strings.ContainsRune(" \t,;<>", r) }) {
		if plausibleAddress(f) {
			out = append(out, strings.ToLower(f))
		}
	}
	return out
}

// globMatch matches s against pattern, where '*' matches any run of bytes and every other byte
// matches itself.
func globMatch(pattern, s string) bool {
	star, mark := -1, 0
	pi, si := 0, 0
	for si < len(s) {
		switch {
		case pi < len(pattern) && pattern[pi] == '*':
			star, mark = pi, si
			pi++
		case pi < len(pattern) && pattern[pi] == s[si]:
			pi++
			si++
		case star >= 0:
			pi = star + 1
			mark++
			si = mark
		default:
			return false
		}
	}
	for pi < len(pattern) && pattern[pi] == '*' {
		pi++
	}
	return pi == len(pattern)
}
