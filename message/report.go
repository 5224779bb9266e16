package message

import (
	"bytes"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
)

// Bounce is a delivery failure or delay report: RFC 3464 (message/delivery-status) and RFC 6533
// (message/global-delivery-status) reports, and best effort the plain-text notices of Exim, qmail
// and old Exchange servers.
type Bounce struct {
	// Kind is "hard" when a recipient failed permanently (status 5.x.x, or no status), "soft"
	// when one failed with a persistent transient status (4.x.x) and none permanently, and
	// "delayed" when delivery was only delayed.
	Kind string `json:"kind" expr:"kind"`
	// ReportingMTA is the host that wrote the report ("" when it does not say).
	ReportingMTA string `json:"reporting_mta" expr:"reporting_mta"`
	// OriginalMessageID is the Message-ID of the returned message, with angle brackets; "" when
	// the report returned neither the message nor its header.
	OriginalMessageID string `json:"original_message_id" expr:"original_message_id"`
	// Recipients are the report's recipients in order, at most MaxReportRecipients.
	Recipients []BounceRecipient `json:"recipients" expr:"recipients"`
}

// BounceRecipient is one recipient of a delivery report.
type BounceRecipient struct {
	Address string `json:"address" expr:"address"`
	// Action is "failed", "delayed", "delivered", "relayed" or "expanded" (RFC 3464 §2.3.3).
	Action string `json:"action" expr:"action"`
	// Status is the enhanced status code (RFC 3463), e.g. "5.1.1"; "" when none was given.
	Status string `json:"status" expr:"status"`
	// Diagnostic is the remote server's answer, e.g. "550 5.1.1 user unknown"; "" when none.
	Diagnostic string `json:"diagnostic" expr:"diagnostic"`
}

// Complaint is an abuse or fraud report in the Abuse Reporting Format (RFC 5965): a mailbox
// provider telling the sender that a recipient marked its mail as spam.
type Complaint struct {
	// FeedbackType is "abuse", "fraud", "not-spam", "virus", "other", … (lower case).
	FeedbackType     string `json:"feedback_type" expr:"feedback_type"`
	UserAgent        string `json:"user_agent" expr:"user_agent"`
	OriginalMailFrom string `json:"original_mail_from" expr:"original_mail_from"`
	OriginalRcptTo   string `json:"original_rcpt_to" expr:"original_rcpt_to"`
	// ArrivalDate is RFC 3339 in UTC when it parses, else as written.
	ArrivalDate       string `json:"arrival_date" expr:"arrival_date"`
	ReportedDomain    string `json:"reported_domain" expr:"reported_domain"`
	OriginalMessageID string `json:"original_message_id" expr:"original_message_id"`
}

const (
	// ReportBytes is how many raw octets of a report part (message/delivery-status,
	// message/feedback-report, text/rfc822-headers) and of a returned message's header are read:
	// reports are small, and a longer one is read that far.
	ReportBytes = 64 << 10
	// MaxReportRecipients bounds Bounce.Recipients.
	MaxReportRecipients = 100
)

// Media types of report parts.
const (
	typeDSN          = "message/delivery-status"
	typeGlobalDSN    = "message/global-delivery-status"
	typeARF          = "message/feedback-report"
	typeHeaders      = "text/rfc822-headers"
	typeGlobalHeader = "message/global-headers"
)

// Section is a piece of a message to fetch with BODY.PEEK: an IMAP section ("2", "1.3",
// "3.HEADER") and the most octets of it worth reading (BODY.PEEK[Name]<0.Max>).
type Section struct {
	Name string
	Max  int64
}

// Wanted says which parts of a message a fetch plan reads beyond its header and structure.
type Wanted struct {
	Text, HTML bool // the text/plain and text/html bodies (BodySections)
	// ReplyText: what ReplyText is read from: the text/plain body, or the text/html body of a
	// message without one (Gmail's and Apple Mail's quote markup tells the history apart there).
	ReplyText bool
	// Reports: what Bounce and Complaint are read from. That is the report part
	// (message/delivery-status, message/global-delivery-status or message/feedback-report) and the
	// header of the message it returns (`n.HEADER` of a returned message/rfc822, or a
	// text/rfc822-headers part), never the returned body. A message without a report part whose
	// header says it is a bounce (a mailer-daemon or postmaster sender, X-Failed-Recipients, an
	// undeliverable subject) may be a plain-text notice (Exim, qmail, old Exchange): then its
	// text/plain body.
	Reports  bool
	Calendar bool // the first calendar part, for Calendar
}

// Sections returns the sections of a message with header section header and structure bs to
// fetch for what w asks, each once, with the most octets of it worth reading: body parts
// lim.TextPartBytes, report parts ReportBytes, the calendar part CalendarBytes. Build reads the
// Message's Text, HTML, Bounce, Complaint and Calendar from what they return. header is read only
// to recognise a plain-text bounce notice.
func Sections(header []byte, bs imap.BodyStructure, lim Limits, w Wanted) []Section {
	lim = lim.withDefaults()
	var d defects
	t := flatten(bs, lim, newDecoder(&d), &d)
	var out []Section
	add := func(section string, n int64) {
		for k := range out {
			if out[k].Name == section {
				out[k].Max = max(out[k].Max, n)
				return
			}
		}
		out = append(out, Section{section, n})
	}
	text, html := t.bodies()
	for _, part := range []struct {
		want  bool
		nodes []int
	}{{w.Text || (w.ReplyText && len(text) > 0), text}, {w.HTML || (w.ReplyText && len(text) == 0), html}} {
		for _, i := range part.nodes {
			if part.want {
				add(t.nodes[i].section, lim.TextPartBytes())
			}
		}
	}
	if w.Reports {
		reports := false
		for _, kind := range []func(*node) bool{isDSN, isARF} {
			i := t.firstOutside(kind)
			if i < 0 {
				continue
			}
			reports = true
			add(t.nodes[i].section, ReportBytes)
			if r := t.returned(i); r >= 0 && isMessageType(t.nodes[r].mediaType) {
				add(t.nodes[r].section+".HEADER", ReportBytes)
			} else if r >= 0 {
				add(t.nodes[r].section, ReportBytes)
			}
		}
		if !reports && looksLikeBounce(headerFields(header, lim)) {
			for _, i := range text {
				add(t.nodes[i].section, lim.TextPartBytes())
			}
		}
	}
	if i := t.firstOutside(isCalendar); w.Calendar && i >= 0 {
		add(t.nodes[i].section, CalendarBytes)
	}
	return out
}

func isDSN(n *node) bool { return n.mediaType == typeDSN || n.mediaType == typeGlobalDSN }
func isARF(n *node) bool { return n.mediaType == typeARF }
func isHeadersType(mt string) bool {
	return mt == typeHeaders || mt == typeGlobalHeader
}

// headerFields parses a raw header section.
func headerFields(raw []byte, lim Limits) []rawField {
	return readHeader(&headerReader{limit: lim.HeaderBytes}, raw, lim, nil)
}

// readHeader feeds the lines of a raw header section to h up to the blank line and returns its
// fields; a cut line is recorded in d when d is not nil.
func readHeader(h *headerReader, raw []byte, lim Limits, d *defects) []rawField {
	lr := newLineReader(bytes.NewReader(raw), lim.LineBytes)
	for {
		l, ok := lr.next()
		if !ok || (len(l.b) == 0 && l.full == 0) {
			break
		}
		if l.cut() && d != nil {
			d.add("line_too_long")
			d.truncated = true
		}
		h.add(l)
	}
	return h.finish()
}

// outside reports whether node i lies outside every encapsulated message (its report parts are
// the message's own, not those of a forwarded message).
func (t *tree) outside(i int) bool {
	for ; i >= 0; i = t.nodes[i].parent {
		if t.nodes[i].isMsgBody {
			return false
		}
	}
	return true
}

// firstOutside returns the first leaf, in message order, outside encapsulated messages that
// satisfies is; -1 when there is none.
func (t *tree) firstOutside(is func(*node) bool) int {
	for i := range t.nodes {
		if t.nodes[i].single != nil && is(&t.nodes[i]) && t.outside(i) {
			return i
		}
	}
	return -1
}

// returned finds the part a report at node i returns: the next sibling that is a message/rfc822,
// message/global, text/rfc822-headers or message/global-headers part; -1 when none follows.
func (t *tree) returned(i int) int {
	p := t.nodes[i].parent
	if p < 0 {
		return -1
	}
	after := false
	for _, c := range t.nodes[p].children {
		if c == i {
			after = true
			continue
		}
		if mt := t.nodes[c].mediaType; after && t.nodes[c].single != nil && (isMessageType(mt) || isHeadersType(mt)) {
			return c
		}
	}
	return -1
}

// reportSource yields what the report analysis reads: the raw content of a leaf (at most
// ReportBytes or CalendarBytes), and the Message-ID of the message inside a message/rfc822
// leaf. ok is false when it was not fetched.
type reportSource interface {
	raw(n *node) (content []byte, ok bool)
	innerMessageID(n *node) (id string, ok bool)
}

// applyReports fills Bounce, Complaint and Calendar from the report and calendar parts that src
// has, and from the header and Text for a plain-text bounce notice.
func (m *Message) applyReports(t *tree, fields []rawField, src reportSource, lim Limits, d *defects) {
	if i := t.firstOutside(isDSN); i >= 0 {
		if raw, ok := src.raw(&t.nodes[i]); ok {
			b, valid := parseDSN(t.partText(i, raw, d))
			if !valid {
				d.add("bad_dsn")
			} else if b != nil {
				b.OriginalMessageID = t.returnedID(i, src, lim, d)
				m.Bounce = b
			}
		}
	} else if m.TextFetched && looksLikeBounce(fields) {
		m.Bounce = textBounce(fields, m.Text)
	}
	if i := t.firstOutside(isARF); i >= 0 {
		if raw, ok := src.raw(&t.nodes[i]); ok {
			c, valid := parseARF(t.partText(i, raw, d))
			if !valid {
				d.add("bad_arf")
			} else {
				c.OriginalMessageID = t.returnedID(i, src, lim, d)
				m.Complaint = c
			}
		}
	}
	if i := t.firstOutside(isCalendar); i >= 0 {
		if raw, ok := src.raw(&t.nodes[i]); ok {
			c, valid := parseCalendar(t.partText(i, raw, d))
			if !valid {
				d.add("bad_calendar")
			}
			m.Calendar = c
		}
	}
}

// partText decodes a report or calendar part's raw content (transfer encoding, charset). raw is
// at most CalendarBytes; its text is kept whole.
func (t *tree) partText(i int, raw []byte, d *defects) string {
	n := &t.nodes[i]
	cs := n.params["charset"]
	if cs == "" && (n.mediaType == typeGlobalDSN || n.mediaType == typeGlobalHeader) {
		cs = "utf-8" // RFC 6533 §3
	}
	s, _ := bodyText(raw, n.encoding, cs, 3*len(raw)+4, d)
	return s
}

// returnedID is the Message-ID of the message a report at node i returns, "" when unknown.
func (t *tree) returnedID(i int, src reportSource, lim Limits, d *defects) string {
	r := t.returned(i)
	if r < 0 {
		return ""
	}
	n := &t.nodes[r]
	if isMessageType(n.mediaType) {
		id, _ := src.innerMessageID(n)
		return id
	}
	raw, ok := src.raw(n)
	if !ok {
		return ""
	}
	fields := headerFields([]byte(t.partText(r, raw, d)), lim)
	if v, ok := get(fields, "Message-Id"); ok {
		return messageID(v)
	}
	return ""
}

// reportFields reads the field groups of a report body (RFC 3464 §2.1, RFC 5965 §3.1): header-
// like fields, unfolded, in groups separated by blank lines. Names are lower case.
func reportFields(text string) [][]rawField {
	var groups [][]rawField
	var cur []rawField
	for line := range strings.SplitSeq(text, "\n") {
		line = strings.TrimRight(line, "\r")
		switch {
		case strings.TrimSpace(line) == "":
			if len(cur) > 0 {
				groups = append(groups, cur)
				cur = nil
			}
		case (line[0] == ' ' || line[0] == '\t') && len(cur) > 0:
			cur[len(cur)-1].value += " " + strings.TrimSpace(line)
		default:
			name, value, ok := strings.Cut(line, ":")
			if !ok || strings.ContainsAny(name, " \t") {
				continue // not a field; RFC 3464 parsers skip what they do not know
			}
			cur = append(cur, rawField{name: strings.ToLower(name), value: strings.TrimSpace(value)})
		}
	}
	if len(cur) > 0 {
		groups = append(groups, cur)
	}
	return groups
}

// typed strips the type of a typed value ("rfc822; a@b", "dns; mx.example", "smtp; 550 …").
func typed(v string) string {
	if _, rest, ok := strings.Cut(v, ";"); ok {
		v = rest
	}
	return clean(strings.Join(strings.Fields(v), " "))
}

// xtextUTF8 decodes the \x{HHHH} escapes of an RFC 6533 utf-8-type address.
var xtextEscape = regexp.MustCompile(`\\x\{([0-9A-Fa-f]{1,6})\}`)

func xtextUTF8(s string) string {
	return xtextEscape.ReplaceAllStringFunc(s, func(e string) string {
		n, err := strconv.ParseUint(e[3:len(e)-1], 16, 32)
		if err != nil {
			return e
		}
		return string(rune(n))
	})
}

// statusCode finds an enhanced status code (RFC 3463) in s: "5.1.1".
var statusCode = regexp.MustCompile(`\b([245])\.(\d{1,3})\.(\d{1,3})\b`)

// parseDSN reads a delivery-status body. valid is false when it has no recipient at all (not a
// delivery report); b is nil for a valid report without a failed or delayed recipient (a
// delivery success notice is not a bounce).
func parseDSN(text string) (b *Bounce, valid bool) {
	groups := reportFields(text)
	b = &Bounce{}
	for gi, g := range groups {
		var r BounceRecipient
		isRecipient := false
		for _, f := range g {
			switch f.name {
			case "reporting-mta":
				if gi == 0 || b.ReportingMTA == "" {
					b.ReportingMTA = typed(f.value)
				}
			case "final-recipient":
				r.Address, isRecipient = clean(xtextUTF8(typed(f.value))), true
			case "original-recipient":
				if r.Address == "" {
					r.Address = clean(xtextUTF8(typed(f.value)))
				}
				isRecipient = true
			case "action":
				r.Action = strings.ToLower(typed(f.value))
			case "status":
				r.Status = statusCode.FindString(f.value)
			case "diagnostic-code":
				r.Diagnostic = typed(f.value)
			}
		}
		if !isRecipient {
			continue
		}
		r.Address = strings.Trim(r.Address, "<>")
		if len(b.Recipients) < MaxReportRecipients {
			b.Recipients = append(b.Recipients, r)
		}
	}
	if len(b.Recipients) == 0 {
		return nil, false
	}
	b.Kind = bounceKind(b.Recipients)
	if b.Kind == "" {
		return nil, true
	}
	return b, true
}

// bounceKind classifies recipients: "hard", "soft", "delayed", or "" when none failed or was
// delayed.
func bounceKind(rs []BounceRecipient) string {
	kind := ""
	for _, r := range rs {
		switch r.Action {
		case "failed":
			if !strings.HasPrefix(r.Status, "4.") {
				return "hard"
			}
			kind = "soft"
		case "delayed":
			if kind == "" {
				kind = "delayed"
			}
		}
	}
	return kind
}

// parseARF reads a message/feedback-report body; valid is false without a Feedback-Type.
func parseARF(text string) (*Complaint, bool) {
	c := &Complaint{}
	for _, g := range reportFields(text) {
		for _, f := range g {
			v := clean(strings.Join(strings.Fields(f.value), " "))
			switch f.name {
			case "feedback-type":
				c.FeedbackType = strings.ToLower(v)
			case "user-agent":
				c.UserAgent = v
			case "original-mail-from":
				c.OriginalMailFrom = strings.Trim(v, "<>")
			case "original-rcpt-to":
				if c.OriginalRcptTo == "" {
					c.OriginalRcptTo = strings.Trim(v, "<>")
				}
			case "arrival-date", "received-date":
				if c.ArrivalDate == "" {
					c.ArrivalDate = v
					if t, ok := parseDate(v); ok {
						c.ArrivalDate = t.UTC().Format(time.RFC3339)
					}
				}
			case "reported-domain":
				if c.ReportedDomain == "" {
					c.ReportedDomain = strings.ToLower(v)
				}
			}
		}
	}
	if c.FeedbackType == "" {
		return nil, false
	}
	return c, true
}

// bounceSubjects start the subjects of delivery failure notices (English, German, French,
// Spanish), lower case.
var bounceSubjects = []string{
	"undeliverable", "undelivered mail", "mail delivery failed", "delivery status notification",
	"failure notice", "returned mail", "delivery failure", "mail delivery failure",
	"warning: message", "mail delivery delayed", "unzustellbar", "nicht zustellbar",
	"non remis", "échec de la remise", "no se puede entregar", "no entregado",
}

// looksLikeBounce reports whether a header is that of a delivery failure notice: a mailer-daemon
// or postmaster sender, X-Failed-Recipients (Exim), or a failure subject.
func looksLikeBounce(fields []rawField) bool {
	if _, ok := get(fields, "X-Failed-Recipients"); ok {
		return true
	}
	if from, ok := get(fields, "From"); ok {
		f := strings.ToLower(from)
		if strings.Contains(f, "mailer-daemon@") || strings.Contains(f, "postmaster@") ||
			strings.Contains(f, "mail-daemon@") {
			return true
		}
	}
	if subj, ok := get(fields, "Subject"); ok {
		s := strings.ToLower(strings.TrimSpace(newDecoder(&defects{}).text(subj))) // RFC 2047 decoded
		for _, p := range bounceSubjects {
			if strings.HasPrefix(s, p) {
				return true
			}
		}
	}
	return false
}

var (
	// smtpReply finds an SMTP reply code with or without an enhanced status: "550 5.1.1",
	// "550-5.1.1", "#550 5.1.1", "550 User unknown", "5.1.1".
	smtpReply = regexp.MustCompile(`(?:^|[\s#:(])([45][0-9][0-9])(?:[ -]|$)|\b[45]\.[0-9]{1,3}\.[0-9]{1,3}\b`)
	// addressLine is a line that names one recipient: "  a@b", "<a@b>:", "a@b".
	addressLine = regexp.MustCompile(`^\s*<?([^\s<>@:]+@[^\s<>:]+?)>?:?\s*$`)
	// copyMarkers start the returned copy of the message in a plain-text notice.
	copyMarkers = []string{
		"------ this is a copy of the message", "--- below this line is a copy of the message",
		"original message headers:", "------ the header of the original message",
		"----- original message -----", "------- returned message",
	}
	qmailHost    = regexp.MustCompile(`(?i)qmail-send program at ([A-Za-z0-9.-]+)`)
	exchangeHost = regexp.MustCompile(`(?im)^\s*generating server:\s*([A-Za-z0-9.-]+)`)
	delayWords   = []string{"delayed", "has not yet been delivered", "not been delivered yet",
		"will continue to try", "still trying", "verzögert", "retardé", "retrasad"}
	permanentWords = []string{"permanent error", "permanently", "given up", "giving up"}
)

// textBounce reads a plain-text delivery failure notice (Exim, qmail, old Exchange, and others
// that write the failed address on a line of its own followed by the server's answer). It
// returns nil when it finds no recipient.
func textBounce(fields []rawField, text string) *Bounce {
	notice, copyPart := text, ""
	lower := lowerASCII(text) // the same length as text, so its indices are text's
	for _, mk := range copyMarkers {
		if i := strings.Index(lower, mk); i >= 0 && i < len(notice) {
			notice, copyPart = text[:i], text[i:]
		}
	}
	lowNotice := strings.ToLower(notice)
	delayed := containsAny(lowNotice, delayWords) && !containsAny(lowNotice, permanentWords)
	if subj, ok := get(fields, "Subject"); ok && strings.Contains(strings.ToLower(subj), "delay") {
		delayed = true
	}

	lines := strings.Split(notice, "\n")
	var addrs []string
	at := map[string]int{} // address → line where it is named
	// add records a recipient named at line (-1: in the header); one named again keeps its
	// first line in the notice.
	add := func(a string, line int) {
		a = clean(strings.Trim(strings.TrimSpace(a), "<>"))
		key := strings.ToLower(a)
		if prev, dup := at[key]; dup {
			if prev < 0 {
				at[key] = line
			}
			return
		}
		if a != "" && len(addrs) < MaxReportRecipients {
			at[key] = line
			addrs = append(addrs, a)
		}
	}
	if v, ok := get(fields, "X-Failed-Recipients"); ok {
		for a := range strings.SplitSeq(v, ",") {
			add(a, -1)
		}
	}
	for i, l := range lines {
		if m := addressLine.FindStringSubmatch(l); m != nil {
			add(m[1], i)
		}
	}
	if len(addrs) == 0 {
		return nil
	}
	b := &Bounce{}
	if m := qmailHost.FindStringSubmatch(notice); m != nil {
		b.ReportingMTA = strings.TrimSuffix(m[1], ".")
	} else if m := exchangeHost.FindStringSubmatch(notice); m != nil {
		b.ReportingMTA = m[1]
	}
	for _, a := range addrs {
		r := BounceRecipient{Address: a, Action: "failed"}
		if delayed {
			r.Action = "delayed"
		}
		r.Diagnostic = diagnosticAfter(lines, at[strings.ToLower(a)])
		r.Status = statusCode.FindString(r.Diagnostic)
		if r.Status == "" {
			if m := smtpReply.FindStringSubmatch(r.Diagnostic); m != nil && m[1] != "" {
				r.Status = m[1][:1] + ".0.0"
			} else if delayed {
				r.Status = "4.0.0"
			}
		}
		b.Recipients = append(b.Recipients, r)
	}
	b.Kind = bounceKind(b.Recipients)
	if copyPart != "" {
		for l := range strings.SplitSeq(copyPart, "\n") {
			if name, v, ok := strings.Cut(l, ":"); ok && strings.EqualFold(strings.TrimSpace(name), "message-id") {
				b.OriginalMessageID = messageID(v)
				break
			}
		}
	}
	return b
}

// diagnosticAfter returns the first line with an SMTP reply within the few lines that follow
// line from (the whole notice when from is negative or none follows), trimmed; "" when none.
func diagnosticAfter(lines []string, from int) string {
	find := func(ls []string) string {
		for _, l := range ls {
			if loc := smtpReply.FindStringIndex(l); loc != nil {
				l = strings.Trim(l[loc[0]:], " \t#:(") // from the reply code on
				return clean(strings.Join(strings.Fields(l), " "))
			}
		}
		return ""
	}
	if from >= 0 {
		if s := find(lines[from+1 : min(len(lines), from+8)]); s != "" {
			return s
		}
	}
	return find(lines)
}

// lowerASCII lower-cases the ASCII letters of s and nothing else, so the result has s's length
// (strings.ToLower may change it: invalid UTF-8, or letters such as U+0130).
func lowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

func containsAny(s string, words []string) bool {
	for _, w := range words {
		if strings.Contains(s, w) {
			return true
		}
	}
	return false
}
