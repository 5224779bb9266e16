package watcher

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/emersion/go-imap/v2"
)

// go-imap's client parses and drops the response code of untagged status responses, so an
// untagged "* OK [ALERT] …" (RFC 3501 §7.1: the text MUST be shown to the user) or the reason in
// "* BYE …" (§7.1.5) never reaches the caller. responseSniffer watches the plaintext server stream
// for them. It follows literals ({n} at the end of a line, §4.3) so that message content is never
// mistaken for a response, and keeps at most maxSniffLine bytes of any line.
//
// It is also the guard below go-imap against a hostile server, which the library does not bound:
// its BODYSTRUCTURE reader recurses once per "(" (a deep enough response is a fatal stack
// overflow, not a recoverable panic), it buffers whole any response and any literal outside body
// sections, and it hands us every body section the server sends, asked for or not. The sniffer
// refuses, before the library reads the bytes:
//   - list nesting deeper than maxResponseDepth, counted outside quoted strings and literals;
//   - a response larger than responseCap (bytes outside body-section literals: lines and other
//     literals);
//   - body-section literals whose total in one response is more than the last FETCH command asked
//     for (the fetch plan's need, read from the command as it is written; see commandSniffer).
//
// Past a bound feed returns a *boundError; sniffConn turns it into a read error, so the library
// fails the command and the connection is dropped.
type responseSniffer struct {
	// onStatus receives every untagged status response with an ALERT code and every BYE.
	onStatus func(*imap.Error)
	// onOversize, when maxLiteral > 0, receives the size of the first literal announced larger
	// than maxLiteral, before any of its bytes reach the IMAP library (go-imap buffers literals
	// outside body sections whole, so the guard must sit below it). The callback is expected to
	// close the connection; the sniffer skips the literal either way.
	onOversize func(n int64)
	maxLiteral int64
	// onBound, when set, receives the first bound the server broke (see above).
	onBound func(*boundError)
	// need1 is one more than what the last FETCH command asked of body sections per message, in
	// bytes; 0 when unknown (no FETCH yet, or a section without a partial range and no
	// maxLiteral). Written by the commandSniffer on the writer's goroutine: see setNeed and
	// needed.
	need1 atomic.Int64

	literal int64    // bytes of literal still to skip
	midLine bool     // the current line continues a response after a literal: not a response start
	line    []byte   // the first maxSniffLine bytes of the current line
	tail    lineTail // the last bytes of the current line, where a literal's "{n}" sits

	depth     int   // list nesting of the current response, outside quoted strings and literals
	quoted    bool  // inside a quoted string
	escaped   bool  // after a backslash inside a quoted string
	respBytes int64 // bytes of the current response outside body-section literals
	bodyBytes int64 // announced bytes of body-section literals in the current response
	exists    int64 // the largest EXISTS seen, for responseCap
	broken    *boundError
}

const maxSniffLine = 1024

// maxResponseDepth bounds list nesting in one response. Dovecot caps MIME nesting at 100 parts
// deep; the deepest BODYSTRUCTURE it sends (100 nested message/rfc822 parts) nests 103 levels.
// go-imap's own bound on generic lists is 1,000.
const maxResponseDepth = 256

// Response size: at least minResponseCap, or responseBytesPerMessage for each message the
// mailbox holds (a UID SEARCH ALL of 500,000 messages is one line of about 3.5 MB), counting at
// most maxCapMessages messages so that a server cannot raise the cap at will by claiming a huge
// EXISTS.
const (
	minResponseCap          = 4 << 20
	responseBytesPerMessage = 16
	maxCapMessages          = 4 << 20
)

// boundError is a server response over one of the sniffer's bounds.
type boundError struct {
	what  string
	value int64
	limit int64
}

func (e *boundError) Error() string {
	switch e.what {
	case "nesting":
		return fmt.Sprintf("server response nests lists %d deep, more than the limit of %d; connection dropped", e.value, e.limit)
	case "body sections":
		return fmt.Sprintf("server response carries %d bytes of body-section literals; the FETCH asked for at most %d; connection dropped", e.value, e.limit)
	default:
		return fmt.Sprintf("server response is %d bytes outside body-section literals, more than the limit of %d; connection dropped", e.value, e.limit)
	}
}

// errResponseBound is wrapped by every *boundError, for errors.Is.
var errResponseBound = errors.New("server response over a bound")

func (e *boundError) Unwrap() error { return errResponseBound }

// setNeed records what a FETCH command asks of body sections per message; -1 for unknown.
func (s *responseSniffer) setNeed(n int64) { s.need1.Store(max(n, -1) + 1) }

// needed returns what the last FETCH command asked of body sections per message; -1 for unknown.
func (s *responseSniffer) needed() int64 { return s.need1.Load() - 1 }

// responseCap is the largest response allowed now, outside body-section literals.
func (s *responseSniffer) responseCap() int64 {
	return max(minResponseCap, responseBytesPerMessage*min(s.exists, maxCapMessages))
}

// feed consumes the next bytes read from the server. It returns how many of them may reach the
// IMAP library: all of p, or, once a bound is broken, those before the response that broke it,
// with the *boundError. After that every call returns 0 and the error.
func (s *responseSniffer) feed(p []byte) (int, error) {
	done := 0
	for done < len(p) {
		if s.broken != nil {
			return done, s.broken
		}
		if s.literal > 0 {
			n := min(int64(len(p)-done), s.literal)
			s.literal -= n
			done += int(n)
			continue
		}
		seg := p[done:]
		newline := false
		if i := bytes.IndexByte(seg, '\n'); i >= 0 {
			seg, newline = seg[:i], true
		}
		s.scan(seg)
		s.respBytes += int64(len(seg))
		if newline {
			s.respBytes++
		}
		if s.broken == nil && s.respBytes > s.responseCap() {
			s.breaks("bytes", s.respBytes, s.responseCap())
		}
		s.keep(seg)
		if newline {
			s.endLine()
		}
		if s.broken != nil {
			return done, s.broken
		}
		done += len(seg)
		if newline {
			done++
		}
	}
	return done, nil
}

// scan follows quoting and list nesting over response bytes outside literals. It jumps between
// the bytes that matter (quotes, backslashes in quoted strings, parentheses outside them), so a
// long atom or quoted string costs an IndexAny, not a loop step per byte.
func (s *responseSniffer) scan(b []byte) {
	for len(b) > 0 {
		if s.escaped {
			s.escaped = false
			b = b[1:]
			continue
		}
		special := "\"()"
		if s.quoted {
			special = "\"\\"
		}
		i := bytes.IndexAny(b, special)
		if i < 0 {
			return
		}
		c := b[i]
		b = b[i+1:]
		switch {
		case s.quoted && c == '\\':
			s.escaped = true
		case c == '"':
			s.quoted = !s.quoted
		case c == '(':
			s.depth++
			if s.depth > maxResponseDepth && s.broken == nil {
				s.breaks("nesting", int64(s.depth), maxResponseDepth)
				return
			}
		case c == ')':
			s.depth = max(0, s.depth-1)
		}
	}
}

func (s *responseSniffer) breaks(what string, value, limit int64) {
	s.broken = &boundError{what: what, value: value, limit: limit}
	if s.onBound != nil {
		s.onBound(s.broken)
	}
}

func (s *responseSniffer) keep(b []byte) {
	if room := maxSniffLine - len(s.line); room > 0 {
		s.line = append(s.line, b[:min(room, len(b))]...)
	}
	s.tail.push(b)
}

// lineTail keeps the last bytes of a line, where a literal's "{n}" sits.
type lineTail struct {
	b [24]byte
	n int
}

func (t *lineTail) push(b []byte) {
	for _, c := range b[max(0, len(b)-len(t.b)):] {
		if t.n == len(t.b) {
			copy(t.b[:], t.b[1:])
			t.n--
		}
		t.b[t.n] = c
		t.n++
	}
}

// take returns the tail without a final CR and clears it.
func (t *lineTail) take() string {
	s := strings.TrimSuffix(string(t.b[:t.n]), "\r")
	*t = lineTail{}
	return s
}

func (s *responseSniffer) endLine() {
	line := strings.TrimSuffix(string(s.line), "\r")
	tail := s.tail.take()
	start := !s.midLine
	s.line = s.line[:0]
	s.quoted, s.escaped = false, false // a quoted string never spans lines (RFC 3501 §4.3)
	if n, ok := literalSize(tail); ok {
		if s.maxLiteral > 0 && n > s.maxLiteral && s.onOversize != nil {
			s.onOversize(n)
		}
		if bodySectionLiteral(tail) {
			s.bodyBytes += n
			if need := s.needed(); need >= 0 && s.bodyBytes > need && s.broken == nil {
				s.breaks("body sections", s.bodyBytes, need)
			}
		} else {
			s.respBytes += n
			if s.respBytes > s.responseCap() && s.broken == nil {
				s.breaks("bytes", s.respBytes, s.responseCap())
			}
		}
		s.literal = n
		s.midLine = true
		return
	}
	s.midLine = false
	if start {
		s.inspect(line)
	}
	s.depth, s.respBytes, s.bodyBytes = 0, 0, 0 // the response ends here
}

// literalSize parses a trailing "{n}" or "{n+}" (RFC 7888 non-synchronizing form).
func literalSize(tail string) (int64, bool) {
	if !strings.HasSuffix(tail, "}") {
		return 0, false
	}
	open := strings.LastIndexByte(tail, '{')
	if open < 0 {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSuffix(tail[open+1:len(tail)-1], "+"), 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

// bodySectionLiteral reports whether the literal announced at the end of tail is the content of
// a body section, "BODY[…] {n}" or "BODY[…]<origin> {n}" (BINARY[…] likewise): the only literals
// go-imap streams instead of buffering.
func bodySectionLiteral(tail string) bool {
	before := strings.TrimSuffix(tail[:strings.LastIndexByte(tail, '{')], " ")
	if strings.HasSuffix(before, ">") {
		open := strings.LastIndexByte(before, '<')
		if open < 0 {
			return false
		}
		before = before[:open]
	}
	return strings.HasSuffix(before, "]")
}

// inspect looks at one complete response line.
func (s *responseSniffer) inspect(line string) {
	rest, ok := strings.CutPrefix(line, "* ")
	if !ok {
		return
	}
	typ, rest, _ := strings.Cut(rest, " ")
	if n, err := strconv.ParseInt(typ, 10, 64); err == nil && strings.EqualFold(strings.TrimSpace(rest), "EXISTS") {
		s.exists = max(s.exists, n)
		return
	}
	typ = strings.ToUpper(typ)
	switch typ {
	case "OK", "NO", "BAD", "BYE":
	default:
		return
	}
	var code string
	if after, ok := strings.CutPrefix(rest, "["); ok {
		inside, text, found := strings.Cut(after, "]")
		if !found {
			return
		}
		code, _, _ = strings.Cut(inside, " ")
		rest = strings.TrimPrefix(text, " ")
	}
	code = strings.ToUpper(code)
	if typ == "BYE" || code == string(imap.ResponseCodeAlert) {
		s.onStatus(&imap.Error{Type: imap.StatusResponseType(typ), Code: imap.ResponseCode(code), Text: rest})
	}
}

// commandSniffer reads the commands written to the server, for one thing only: what a FETCH asks
// of body sections, which it stores in the responseSniffer's need. It keeps the first bytes of a
// line only until they show whether the command is a FETCH ("tag UID FETCH "), and the last few
// bytes of a line to follow literals; it clears both, so a password or a SASL response never
// stays in memory here.
type commandSniffer struct {
	s *responseSniffer

	mu      sync.Mutex
	line    []byte // the current line while it is or may be a FETCH command
	fetch   bool   // the current line is a FETCH command
	other   bool   // the current line is another command (or a continuation): skip it
	literal int64  // bytes of a literal the client is sending, still to skip
	tail    lineTail
}

const (
	// maxCommandPrefix is how much of a line decides whether it is a FETCH: "tag UID FETCH ".
	maxCommandPrefix = 48
	// maxFetchLine bounds a FETCH command line kept for parsing (ours: a UID set and items).
	maxFetchLine = 1 << 20
)

// feed consumes the next bytes written to the server.
func (c *commandSniffer) feed(p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(p) > 0 {
		if c.literal > 0 {
			n := min(int64(len(p)), c.literal)
			c.literal -= n
			p = p[n:]
			continue
		}
		seg := p
		i := bytes.IndexByte(p, '\n')
		if i >= 0 {
			seg = p[:i]
		}
		c.keep(seg)
		p = p[len(seg):]
		if i >= 0 {
			p = p[1:]
			c.endLine()
		}
	}
}

func (c *commandSniffer) keep(b []byte) {
	c.tail.push(b)
	for len(b) > 0 && !c.other && !c.fetch { // undecided: take bytes up to the verdict only
		c.line = append(c.line, b[0])
		b = b[1:]
		c.fetch, c.other = fetchVerdict(c.line)
		if c.other {
			clear(c.line)
			c.line = c.line[:0]
		}
	}
	if !c.fetch || len(b) == 0 {
		return
	}
	if len(c.line)+len(b) > maxFetchLine {
		c.fetch, c.other, c.line = false, true, c.line[:0]
		c.s.setNeed(-1) // a FETCH we cannot read: no bound on its body sections
		return
	}
	c.line = append(c.line, b...)
}

func (c *commandSniffer) endLine() {
	tail := c.tail.take()
	if n, ok := literalSize(tail); ok {
		c.literal = n // the command goes on after the literal: same line, same verdict
		return
	}
	if c.fetch {
		c.s.setNeed(bodyNeed(string(c.line), c.s.maxLiteral))
	}
	clear(c.line)
	c.line, c.other, c.fetch = c.line[:0], false, false
}

// fetchVerdict says, once the beginning of a command line shows it, whether the command is
// "tag FETCH …" or "tag UID FETCH …"; both false while undecided.
func fetchVerdict(line []byte) (fetch, other bool) {
	if len(line) > maxCommandPrefix {
		return false, true
	}
	if line[len(line)-1] != ' ' {
		return false, false
	}
	f := strings.Fields(string(line))
	switch {
	case len(f) == 2 && strings.EqualFold(f[1], "UID"):
		return false, false
	case len(f) == 2:
		return strings.EqualFold(f[1], "FETCH"), !strings.EqualFold(f[1], "FETCH")
	case len(f) == 3:
		return strings.EqualFold(f[2], "FETCH"), !strings.EqualFold(f[2], "FETCH")
	}
	return false, false
}

// bodyNeed is what a FETCH command line asks of body sections per message: the sum over its
// BODY[…], BODY.PEEK[…], BINARY[…] and BINARY.PEEK[…] items of the partial size <o.n>, or
// maxLiteral for a whole section; -1 when that is unbounded (maxLiteral ≤ 0).
func bodyNeed(line string, maxLiteral int64) int64 {
	upper := strings.ToUpper(line)
	var need int64
	for {
		i := strings.IndexByte(upper, '[')
		if i < 0 {
			return need
		}
		item := upper[:i]
		if j := strings.LastIndexAny(item, " ("); j >= 0 {
			item = item[j+1:]
		}
		end := strings.IndexByte(upper[i:], ']')
		if end < 0 {
			return need
		}
		upper = upper[i+end+1:]
		switch item {
		case "BODY", "BODY.PEEK", "BINARY", "BINARY.PEEK":
		default:
			continue
		}
		size := int64(-1)
		if partial, ok := strings.CutPrefix(upper, "<"); ok {
			if spec, _, ok := strings.Cut(partial, ">"); ok {
				if _, n, ok := strings.Cut(spec, "."); ok {
					if v, err := strconv.ParseInt(n, 10, 64); err == nil && v >= 0 {
						size = v
					}
				}
			}
		}
		if size < 0 {
			if maxLiteral <= 0 {
				return -1
			}
			size = maxLiteral
		}
		need += size
	}
}

// sniffConn feeds everything read through it to a responseSniffer, and everything written to a
// commandSniffer. A read that breaks one of the sniffer's bounds returns the bytes before the
// offending response and the error, and closes the connection.
type sniffConn struct {
	net.Conn
	s *responseSniffer
	c *commandSniffer
}

func newSniffConn(conn net.Conn, s *responseSniffer) *sniffConn {
	return &sniffConn{Conn: conn, s: s, c: &commandSniffer{s: s}}
}

func (c *sniffConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		k, berr := c.s.feed(p[:n])
		if berr != nil {
			c.Conn.Close()
			return k, berr
		}
	}
	return n, err
}

func (c *sniffConn) Write(p []byte) (int, error) {
	c.c.feed(p) // before the bytes leave: the need is set before the answer can arrive
	return c.Conn.Write(p)
}
