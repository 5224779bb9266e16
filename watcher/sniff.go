package watcher

import (
	"bytes"
	"net"
	"strconv"
	"strings"

	"github.com/emersion/go-imap/v2"
)

// go-imap's client parses and drops the response code of untagged status responses, so an
// untagged "* OK [ALERT] …" (RFC 3501 §7.1: the text MUST be shown to the user) or the reason in
// "* BYE …" (§7.1.5) never reaches the caller. responseSniffer watches the plaintext server stream
// for them. It follows literals ({n} at the end of a line, §4.3) so that message content is never
// mistaken for a response, and keeps at most maxSniffLine bytes of any line.
type responseSniffer struct {
	// onStatus receives every untagged status response with an ALERT code and every BYE.
	onStatus func(*imap.Error)
	// onOversize, when maxLiteral > 0, receives the size of the first literal announced larger
	// than maxLiteral, before any of its bytes reach the IMAP library (go-imap
	// buffers literals outside body sections whole, so the guard must sit below it). The callback
	// is expected to close the connection; the sniffer skips the literal either way.
	onOversize func(n int64)
	maxLiteral int64

	literal int64    // bytes of literal still to skip
	midLine bool     // the current line continues a response after a literal: not a response start
	line    []byte   // the first maxSniffLine bytes of the current line
	tail    [24]byte // the last bytes of the current line, where a literal's "{n}" sits
	tailLen int
}

const maxSniffLine = 1024

// feed consumes the next bytes read from the server.
func (s *responseSniffer) feed(p []byte) {
	for len(p) > 0 {
		if s.literal > 0 {
			n := min(int64(len(p)), s.literal)
			s.literal -= n
			p = p[n:]
			continue
		}
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			s.keep(p)
			return
		}
		s.keep(p[:i])
		p = p[i+1:]
		s.endLine()
	}
}

func (s *responseSniffer) keep(b []byte) {
	if room := maxSniffLine - len(s.line); room > 0 {
		s.line = append(s.line, b[:min(room, len(b))]...)
	}
	for _, c := range b[max(0, len(b)-len(s.tail)):] {
		if s.tailLen == len(s.tail) {
			copy(s.tail[:], s.tail[1:])
			s.tailLen--
		}
		s.tail[s.tailLen] = c
		s.tailLen++
	}
}

func (s *responseSniffer) endLine() {
	line := strings.TrimSuffix(string(s.line), "\r")
	tail := strings.TrimSuffix(string(s.tail[:s.tailLen]), "\r")
	start := !s.midLine
	s.line, s.tailLen = s.line[:0], 0
	if n, ok := literalSize(tail); ok {
		if s.maxLiteral > 0 && n > s.maxLiteral && s.onOversize != nil {
			s.onOversize(n)
		}
		s.literal = n
		s.midLine = true
		return
	}
	s.midLine = false
	if start {
		s.inspect(line)
	}
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

// inspect looks at one complete response line.
func (s *responseSniffer) inspect(line string) {
	rest, ok := strings.CutPrefix(line, "* ")
	if !ok {
		return
	}
	typ, rest, _ := strings.Cut(rest, " ")
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

// sniffConn feeds everything read through it to a responseSniffer.
type sniffConn struct {
	net.Conn
	s *responseSniffer
}

func (c *sniffConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.s.feed(p[:n])
	}
	return n, err
}
