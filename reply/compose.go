package reply

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"io"
	"mime"
	"strings"
	"text/template"
	"time"
	"unicode"
	"unicode/utf8"

	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"

	"github.com/mailhook/mailhook/message"
)

// Limits of a rendered reply.
const (
	maxSubjectBytes   = 900     // a subject is cut here (before RFC 2047 encoding and folding)
	maxReplyBodyBytes = 1 << 20 // text or HTML body of a reply
	maxReferences     = 20      // msg-ids kept in References (the first and the latest ones)
	maxMsgIDBytes     = 250     // a longer msg-id of the original is dropped from the threading fields
)

// TemplateError is an error in one template of a reply; Field is "subject", "body" or "html".
type TemplateError struct {
	Field string
	Err   error
}

func (e *TemplateError) Error() string { return e.Field + ": " + e.Err.Error() }
func (e *TemplateError) Unwrap() error { return e.Err }

// Template is a parsed auto-reply: subject, plain-text body and optional HTML body, each a Go
// template executed with the original *message.Message as its data ({{ .Subject }},
// {{ .From.Address }}, …). The HTML body is an html/template: what comes from the message
// (which its sender wrote) is escaped for where it lands, so a subject or a display name never
// becomes markup in a reply sent from the organisation's address. Parse it once at startup with
// ParseTemplate; it is safe for concurrent use.
type Template struct {
	Name                string
	subject, text, html executor
}

// executor is what Template needs of a text/template or an html/template.
type executor interface {
	Execute(w io.Writer, data any) error
	Name() string
}

var (
	_ executor = (*template.Template)(nil)
	_ executor = (*htmltemplate.Template)(nil)
)

// ParseTemplate parses the templates of reply name and executes each once against an empty
// message, so a reference to a field that does not exist fails here, at startup, not on the first
// message. Errors are *TemplateError naming the field. html may be "" (plain text only).
//
// fields are the extract names of the rules that send this reply: templates may read them as
// {{ .Fields.name }}; the check gives each a sample value, so a misspelt name fails here too.
func ParseTemplate(name, subject, text, html string, fields []string) (*Template, error) {
	t := &Template{Name: name}
	check := templateData{Message: &message.Message{}}
	if len(fields) > 0 {
		check.Fields = map[string]any{}
		for _, f := range fields {
			check.Fields[f] = "sample " + f
		}
	}
	var errs []error
	parse := func(field, src string) executor {
		var tpl executor
		var err error
		if field == "html" {
			tpl, err = htmltemplate.New(field).Option("missingkey=error").Parse(src)
		} else {
			tpl, err = template.New(field).Option("missingkey=error").Parse(src)
		}
		if err == nil { // html/template reports a template it cannot escape here, at the first run
			err = tpl.Execute(&limitedBuffer{max: maxReplyBodyBytes}, check)
		}
		if err != nil {
			errs = append(errs, &TemplateError{Field: field, Err: err})
			return nil
		}
		return tpl
	}
	if strings.TrimSpace(subject) == "" {
		errs = append(errs, &TemplateError{Field: "subject", Err: errors.New("empty")})
	} else {
		t.subject = parse("subject", subject)
	}
	if strings.TrimSpace(text) == "" {
		errs = append(errs, &TemplateError{Field: "body", Err: errors.New("empty")})
	} else {
		t.text = parse("body", text)
	}
	if html != "" {
		t.html = parse("html", html)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return t, nil
}

// templateData is what reply templates execute on: the message's fields ({{ .Subject }},
// {{ .From.Name }}, …) and the rule's extracted fields ({{ .Fields.number }}).
type templateData struct {
	*message.Message
	Fields map[string]any
}

// Render executes the templates over m and the rule's extracted fields. The subject is made one
// line (CR, LF and other control characters become spaces, so nothing from the message can start
// a header of its own) and cut at 900 bytes; the bodies are cut at 1 MiB.
func (t *Template) Render(m *message.Message, fields map[string]any) (subject, text, html string, err error) {
	data := templateData{Message: m, Fields: fields}
	run := func(tpl executor) (string, error) {
		if tpl == nil {
			return "", nil
		}
		b := &limitedBuffer{max: maxReplyBodyBytes}
		if err := tpl.Execute(b, data); err != nil && !errors.Is(err, errBufferFull) {
			return "", &TemplateError{Field: tpl.Name(), Err: err}
		}
		return strings.ToValidUTF8(b.String(), "\uFFFD"), nil
	}
	if subject, err = run(t.subject); err != nil {
		return "", "", "", err
	}
	if text, err = run(t.text); err != nil {
		return "", "", "", err
	}
	if html, err = run(t.html); err != nil {
		return "", "", "", err
	}
	return oneLine(subject, maxSubjectBytes), text, html, nil
}

// errBufferFull ends a template execution that produced more than its limit.
var errBufferFull = errors.New("output limit reached")

// limitedBuffer keeps the first max bytes written and then fails.
type limitedBuffer struct {
	bytes.Buffer
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.Len(); len(p) > room {
		b.Buffer.Write(p[:max(room, 0)])
		return max(room, 0), errBufferFull
	}
	return b.Buffer.Write(p)
}

// oneLine turns s into a single header-safe line of at most max bytes: every run of white space
// and control characters (CR and LF included) becomes one space.
func oneLine(s string, max int) string {
	var b strings.Builder
	space := false
	for _, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			space = true
			continue
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		if b.Len()+utf8.RuneLen(r) > max {
			break
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Job is the body of an outbox job of kind reply (stored as JSON): everything needed to send
// one auto-reply, rendered when the original message was committed, so a retry sends the same
// reply under the same Message-ID. Compose turns it into the RFC 5322 message.
type Job struct {
	Version int    `json:"version"` // 1
	Account string `json:"account"`
	Reply   string `json:"reply"` // name of the reply template
	// To is the only recipient: the Return-Path address of the original (RFC 3834 §4). It is
	// also the ledger's sender, lower-cased there.
	To string `json:"to"`
	// From is the From header (an address, possibly with a display name).
	From string `json:"from"`
	// EnvelopeFrom is the SMTP MAIL FROM; "" is the null reverse-path <> (RFC 3834 §3.3).
	EnvelopeFrom string `json:"envelope_from"`
	// OncePer is the ledger period: one reply per (account, sender, reply) within it.
	OncePer time.Duration `json:"once_per"`
	// MessageID is the reply's own Message-ID, with angle brackets.
	MessageID  string   `json:"message_id"`
	InReplyTo  string   `json:"in_reply_to,omitempty"` // the original's Message-ID
	References []string `json:"references,omitempty"`  // msg-ids, with angle brackets
	Subject    string   `json:"subject"`
	Text       string   `json:"text"`
	HTML       string   `json:"html,omitempty"`
	// Marker is the LoopHeader value (the From address), by which we recognise our own replies.
	Marker string `json:"marker"`
	// Signature is the SignatureHeader value (Sign), "" without an installation key.
	Signature string `json:"signature,omitempty"`
}

// Params are the per-account parts of a reply that do not come from the templates.
type Params struct {
	Account      string
	From         string // From header, e.g. "Support <help@example.com>"
	EnvelopeFrom string // "" = null sender
	OncePer      time.Duration
	// MessageID is the reply's Message-ID with angle brackets; "" generates a random one in the
	// domain of From.
	MessageID string
	// Fields are the extracted fields of the rule that sends the reply ({{ .Fields.name }}).
	Fields map[string]any
	// Key is the installation key that signs the reply (SignatureHeader); nil signs nothing.
	Key []byte
}

// NewJob renders t over the original m for a reply to the address to (from Check).
func NewJob(t *Template, m *message.Message, to string, p Params) (*Job, error) {
	from, err := mail.ParseAddress(p.From)
	if err != nil {
		return nil, fmt.Errorf("reply %q: from address: %w", t.Name, err)
	}
	if !plausibleAddress(to) {
		return nil, fmt.Errorf("reply %q: recipient is not a plain address", t.Name)
	}
	subject, text, html, err := t.Render(m, p.Fields)
	if err != nil {
		return nil, fmt.Errorf("reply %q: %w", t.Name, err)
	}
	id := p.MessageID
	if id == "" {
		id = NewMessageID(from.Address)
	}
	j := &Job{
		Version: 1, Account: p.Account, Reply: t.Name, To: to, From: p.From, EnvelopeFrom: p.EnvelopeFrom,
		OncePer: p.OncePer, MessageID: id, Subject: subject, Text: text, HTML: html,
		Marker: strings.ToLower(from.Address),
	}
	if len(p.Key) > 0 {
		j.Signature = Sign(p.Key, id, to, subject)
	}
	j.InReplyTo, j.References = threading(m)
	return j, nil
}

// threading returns In-Reply-To and References for a reply to m (RFC 5322 §3.6.4): In-Reply-To is
// the parent's Message-ID; References is the parent's References (or, without them, its
// In-Reply-To when that holds one msg-id) followed by the parent's Message-ID. Long chains keep
// the first msg-id and the latest ones.
func threading(m *message.Message) (inReplyTo string, refs []string) {
	parent := msgIDs(m.MessageID)
	if len(parent) == 1 {
		inReplyTo = parent[0]
	}
	refs = msgIDs(m.Header("References"))
	if len(refs) == 0 {
		if irt := msgIDs(m.Header("In-Reply-To")); len(irt) == 1 {
			refs = irt
		}
	}
	if inReplyTo != "" {
		refs = append(refs, inReplyTo)
	}
	if len(refs) > maxReferences {
		refs = append(refs[:1], refs[len(refs)-maxReferences+1:]...)
	}
	return inReplyTo, refs
}

// msgIDs extracts the "<…>" msg-ids of a header value, dropping implausible ones.
func msgIDs(v string) []string {
	var out []string
	for {
		i := strings.IndexByte(v, '<')
		if i < 0 {
			return out
		}
		j := strings.IndexByte(v[i:], '>')
		if j < 0 {
			return out
		}
		id := v[i : i+j+1]
		v = v[i+j+1:]
		if len(id) > 2 && len(id) <= maxMsgIDBytes && !strings.ContainsFunc(id, func(r rune) bool { return r <= ' ' || r >= 0x7f }) {
			out = append(out, id)
		}
	}
}

// NewMessageID returns a fresh, random Message-ID "<random@domain>" in the domain of addr
// (RFC 5322 §3.6.4: globally unique).
func NewMessageID(addr string) string {
	domain := "mailhook.invalid"
	if i := strings.LastIndexByte(addr, '@'); i >= 0 && i < len(addr)-1 {
		domain = addr[i+1:]
	}
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return "<" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:])) + ".mailhook@" + domain + ">"
}

// Marshal encodes j as a job body.
func (j *Job) Marshal() ([]byte, error) { return json.Marshal(j) }

// ParseJob decodes a job body written by Marshal.
func ParseJob(body []byte) (*Job, error) {
	var j Job
	if err := json.Unmarshal(body, &j); err != nil {
		return nil, fmt.Errorf("reply job body: %w", err)
	}
	if j.Version != 1 {
		return nil, fmt.Errorf("reply job body: unknown version %d", j.Version)
	}
	if !plausibleAddress(j.To) || j.MessageID == "" || j.Account == "" || j.Reply == "" {
		return nil, errors.New("reply job body: incomplete")
	}
	if j.EnvelopeFrom != "" && !plausibleAddress(j.EnvelopeFrom) {
		return nil, errors.New("reply job body: envelope sender is not a plain address")
	}
	return &j, nil
}

// Compose writes the reply as an RFC 5322 message dated now, with CRLF line ends. Headers go
// through go-message's header writer, so no value can start a new header line; the subject is
// RFC 2047-encoded when it is not plain ASCII and every header line is folded to at most 998
// octets (RFC 5322 §2.1.1). It carries Auto-Submitted: auto-replied (RFC 3834 §5) and
// LoopHeader. Bodies are UTF-8 in quoted-printable; with HTML the message is
// multipart/alternative (RFC 2046 §5.1.4).
func (j *Job) Compose(now time.Time) ([]byte, error) {
	from, err := mail.ParseAddress(j.From)
	if err != nil {
		return nil, fmt.Errorf("compose reply: from address: %w", err)
	}
	// go-message formats the values (address quoting, RFC 2047, the date) …
	var f mail.Header
	f.SetAddressList("From", []*mail.Address{from})
	f.SetAddressList("To", []*mail.Address{{Address: j.To}})
	f.SetSubject(j.Subject)
	f.SetDate(now)
	fields := [][2]string{
		{"From", f.Get("From")},
		{"To", f.Get("To")},
		{"Subject", f.Get("Subject")},
		{"Date", f.Get("Date")},
		{"Message-ID", j.MessageID},
		{"In-Reply-To", j.InReplyTo},
		{"References", strings.Join(j.References, " ")},
		{"Auto-Submitted", "auto-replied"},
		// Microsoft Exchange's own loop guard: ask its auto-responders not to answer us.
		{"X-Auto-Response-Suppress", "All"},
		{LoopHeader, j.Marker},
		{SignatureHeader, j.Signature},
		{"MIME-Version", "1.0"},
	}
	boundary := ""
	if j.HTML == "" {
		fields = append(fields, [2]string{"Content-Type", "text/plain; charset=utf-8"},
			[2]string{"Content-Transfer-Encoding", "quoted-printable"})
	} else {
		// A boundary derived from the Message-ID: the same job always composes the same bytes.
		sum := sha256.Sum256([]byte(j.MessageID))
		boundary = "mailhook-" + hex.EncodeToString(sum[:12])
		fields = append(fields, [2]string{"Content-Type", mime.FormatMediaType("multipart/alternative", map[string]string{"boundary": boundary})})
	}
	// … and its header writer folds them and refuses CR or LF in a value. It writes the fields
	// last-added first, so add them in reverse to get the order above.
	var h mail.Header
	for i := len(fields) - 1; i >= 0; i-- {
		if fields[i][1] != "" {
			h.Add(fields[i][0], fields[i][1])
		}
	}

	var buf bytes.Buffer
	if j.HTML == "" {
		w, err := gomessage.CreateWriter(&buf, h.Header)
		if err != nil {
			return nil, fmt.Errorf("compose reply: %w", err)
		}
		if _, err := w.Write([]byte(crlf(j.Text))); err != nil {
			return nil, fmt.Errorf("compose reply: %w", err)
		}
		if err := w.Close(); err != nil {
			return nil, fmt.Errorf("compose reply: %w", err)
		}
		return buf.Bytes(), nil
	}
	w, err := gomessage.CreateWriter(&buf, h.Header)
	if err != nil {
		return nil, fmt.Errorf("compose reply: %w", err)
	}
	for _, part := range []struct{ ctype, body string }{{"text/plain", j.Text}, {"text/html", j.HTML}} {
		var ph gomessage.Header
		ph.SetContentType(part.ctype, map[string]string{"charset": "utf-8"})
		ph.Set("Content-Transfer-Encoding", "quoted-printable")
		pw, err := w.CreatePart(ph)
		if err != nil {
			return nil, fmt.Errorf("compose reply: %w", err)
		}
		if _, err := pw.Write([]byte(crlf(part.body))); err != nil {
			return nil, fmt.Errorf("compose reply: %w", err)
		}
		if err := pw.Close(); err != nil {
			return nil, fmt.Errorf("compose reply: %w", err)
		}
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("compose reply: %w", err)
	}
	return buf.Bytes(), nil
}

// crlf normalises line ends to CRLF (RFC 5322 §2.1) and ends the text with one.
func crlf(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	s = strings.ReplaceAll(s, "\n", "\r\n")
	if !strings.HasSuffix(s, "\r\n") {
		s += "\r\n"
	}
	return s
}
