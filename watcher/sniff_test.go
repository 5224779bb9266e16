package watcher

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
)

func TestResponseSniffer(t *testing.T) {
	body := "* BYE [ALERT] forged inside a message\r\n* OK [ALERT] also forged\r\n"
	stream := strings.Join([]string{
		"* OK [CAPABILITY IMAP4rev1] ready\r\n",
		"* OK [ALERT] Your password expires soon\r\n",
		"A1 NO [ALERT] tagged alerts reach the caller as errors\r\n",
		"* 1 FETCH (UID 7 BODY[HEADER] {" + itoa(len(body)) + "}\r\n" + body + " FLAGS ())\r\n",
		"* 2 FETCH (UID 8 BODY[1] {0}\r\n)\r\n",
		"* ok [alert] lower case works\r\n",
		"* BYE Too many simultaneous connections\r\n",
	}, "")
	var got []string
	s := &responseSniffer{onStatus: func(e *imap.Error) {
		got = append(got, string(e.Type)+"|"+string(e.Code)+"|"+e.Text)
	}}
	// Feed in every chunking: responses and literals split across reads must not matter.
	for _, size := range []int{1, 2, 3, 7, 64, len(stream)} {
		got = nil
		for i := 0; i < len(stream); i += size {
			s.feed([]byte(stream[i:min(i+size, len(stream))]))
		}
		want := []string{
			"OK|ALERT|Your password expires soon",
			"OK|ALERT|lower case works",
			"BYE||Too many simultaneous connections",
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("chunk %d: got\n%s\nwant\n%s", size, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
}

func TestResponseSnifferLongLine(t *testing.T) {
	var got int
	s := &responseSniffer{onStatus: func(*imap.Error) { got++ }}
	// A line longer than the kept prefix still ends in a literal that must be skipped.
	lit := "* BYE [ALERT] forged\r\n"
	s.feed([]byte("* 1 FETCH (UID 1 X-LONG " + strings.Repeat("x", 5000) + " BODY[] {" + itoa(len(lit)) + "}\r\n" + lit + ")\r\n"))
	if got != 0 {
		t.Errorf("literal content reported as a response")
	}
	s.feed([]byte("* BYE bye\r\n"))
	if got != 1 {
		t.Errorf("BYE after a long line missed")
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// feedChunks feeds stream in chunks of size and returns how many bytes passed and the error.
func feedChunks(s *responseSniffer, stream string, size int) (int, error) {
	passed := 0
	for i := 0; i < len(stream); i += size {
		n, err := s.feed([]byte(stream[i:min(i+size, len(stream))]))
		passed += n
		if err != nil {
			return passed, err
		}
	}
	return passed, nil
}

func nested(depth int) string {
	return strings.Repeat("(", depth) + `"text" "plain" NIL NIL NIL "7bit" 2 1` + strings.Repeat(")", depth)
}

// TestSnifferNesting: list nesting past maxResponseDepth stops the stream before the response
// that breaks it reaches the library; parentheses in quoted strings and literals do not count, and
// Dovecot's deepest BODYSTRUCTURE (103 levels for 100 nested message/rfc822 parts) passes.
func TestSnifferNesting(t *testing.T) {
	honest := "* 1 FETCH (UID 1 BODYSTRUCTURE " + nested(110) + ")\r\n" +
		`* 2 FETCH (UID 2 ENVELOPE (NIL "` + strings.Repeat("(", 1000) + `\" (((" NIL))` + "\r\n" +
		"* 3 FETCH (UID 3 BODY[HEADER] {1000}\r\n" + strings.Repeat("(", 1000) + " BODYSTRUCTURE " + nested(100) + ")\r\n" +
		"* 4 FETCH (UID 4 BODYSTRUCTURE " + nested(maxResponseDepth-2) + ")\r\n" +
		"A1 OK Fetch completed (0.001 + 0.000 secs).\r\n"
	hostile := "* 5 FETCH (UID 5 BODYSTRUCTURE " + nested(maxResponseDepth) + ")\r\n* 6 EXISTS\r\n"
	for _, size := range []int{1, 7, 4096, len(honest + hostile)} {
		s := &responseSniffer{onStatus: func(*imap.Error) {}}
		n, err := feedChunks(s, honest+hostile, size)
		var be *boundError
		if !errors.As(err, &be) || be.what != "nesting" || !errors.Is(err, errResponseBound) {
			t.Fatalf("chunk %d: error %v; want the nesting bound", size, err)
		}
		if n > len(honest)+len("* 5 FETCH (UID 5 BODYSTRUCTURE ")+maxResponseDepth {
			t.Errorf("chunk %d: %d bytes passed; the hostile response's bytes past the bound must not", size, n)
		}
		if n < len(honest)-size {
			t.Errorf("chunk %d: only %d of the %d honest bytes passed", size, n, len(honest))
		}
		if m, err := s.feed([]byte("* 7 EXISTS\r\n")); m != 0 || err == nil {
			t.Errorf("after the bound: %d bytes, %v; want 0 and the error", m, err)
		}
	}
}

// TestSnifferResponseBytes: one response outside body-section literals is capped at
// max(4 MiB, 16 bytes × EXISTS); quoted strings and other literals count, body sections do not.
func TestSnifferResponseBytes(t *testing.T) {
	big := strings.Repeat("x", minResponseCap)
	tests := []struct {
		name, stream string
		want         string // the bound broken; "" for none
	}{
		{"quoted string", `* 1 FETCH (UID 1 BODYSTRUCTURE ("text" "plain" ("name" "` + big + `") NIL NIL "7bit" 1 1))` + "\r\n", "bytes"},
		{"literals", "* 1 FETCH (UID 1 ENVELOPE (" + strings.Repeat("{1048576}\r\n"+big[:1<<20]+" ", 5) + "))\r\n", "bytes"},
		{"search under 16 B per message", "* 300000 EXISTS\r\n* SEARCH " + strings.Repeat("1234567 ", 550000) + "\r\n", ""},
		{"search over 16 B per message", "* 300000 EXISTS\r\n* SEARCH " + strings.Repeat("1234567 ", 700000) + "\r\n", "bytes"},
		{"huge EXISTS does not lift the cap", "* 4294967295 EXISTS\r\n* SEARCH " + strings.Repeat("1234567 ", 9<<20) + "\r\n", "bytes"},
		{"body section", "* 1 FETCH (UID 1 BODY[1] {5242880}\r\n" + big + big[:1<<20] + ")\r\n", ""},
		{"many responses", strings.Repeat("* 1 FETCH (UID 1 FLAGS (\\Seen))\r\n", 200000), ""},
	}
	for _, tc := range tests {
		s := &responseSniffer{onStatus: func(*imap.Error) {}}
		_, err := feedChunks(s, tc.stream, 64<<10)
		var be *boundError
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (!errors.As(err, &be) || be.what != tc.want):
			t.Errorf("%s: error %v; want the %s bound", tc.name, err, tc.want)
		}
	}
}

// TestSnifferBodyNeed: the body-section literals of one FETCH response may total what the last
// FETCH command asked, read from the command as it is written.
func TestSnifferBodyNeed(t *testing.T) {
	s := &responseSniffer{onStatus: func(*imap.Error) {}, maxLiteral: 25 << 20}
	conn := newSniffConn(nil, s)
	if s.needed() != -1 {
		t.Fatal("need known before any FETCH")
	}
	cmds := []struct {
		line string
		need int64
	}{
		{"T1 UID FETCH 1:5 (UID FLAGS RFC822.SIZE INTERNALDATE BODYSTRUCTURE BODY.PEEK[HEADER]<0.1048576>)\r\n", 1 << 20},
		{"T2 LOGIN \"user\" \"BODY.PEEK[1] FETCH\"\r\n", 1 << 20}, // not a FETCH: need unchanged
		{"T3 UID FETCH 7 (UID BODY.PEEK[1]<0.65536> BODY.PEEK[2.MIME] BINARY.PEEK[3]<0.10>)\r\n", 65536 + 25<<20 + 10},
		{"T4 fetch 1 (body.peek[header.fields (subject from)]<0.500>)\r\n", 500},
		{"T5 LOGIN user {12}\r\nT6 FETCH 1 BODY[]\r\n", 500}, // a literal is skipped, CRLF and all
		{"T7 UID FETCH " + strings.Repeat("1,", 30000) + "2 (UID BODY.PEEK[HEADER]<0.4096>)\r\n", 4096},
		{"T8 NOOP\r\n", 4096},
	}
	for _, c := range cmds {
		for i := 0; i < len(c.line); i += 5 { // written in pieces, as a flushing bufio.Writer may
			conn.c.feed([]byte(c.line[i:min(i+5, len(c.line))]))
		}
		if got := s.needed(); got != c.need {
			t.Errorf("after %.40q: need %d; want %d", c.line, got, c.need)
		}
	}
	if len(conn.c.line) != 0 || conn.c.tail != (lineTail{}) {
		t.Error("the command sniffer kept bytes of a finished line")
	}

	s.setNeed(1 << 20)
	ok := "* 1 FETCH (UID 1 BODY[HEADER]<0> {1048576}\r\n" + strings.Repeat("h", 1<<20) + ")\r\n" +
		"* 2 FETCH (UID 2 BODY[HEADER]<0> {1048576}\r\n" + strings.Repeat("h", 1<<20) + ")\r\n"
	if _, err := feedChunks(s, ok, 4096); err != nil {
		t.Fatalf("one header section per response: %v", err)
	}
	unasked := "* 3 FETCH (UID 3 BODY[HEADER]<0> {10}\r\n0123456789 " + strings.Repeat("BODY[1.1] {1048576}\r\n"+strings.Repeat("b", 1<<20)+" ", 3) + ")\r\n"
	n, err := feedChunks(s, unasked, 4096)
	var be *boundError
	if !errors.As(err, &be) || be.what != "body sections" {
		t.Fatalf("body sections nobody asked for: error %v", err)
	}
	if n > len("* 3 FETCH (UID 3 BODY[HEADER]<0> {10}\r\n0123456789 ")+(1<<20)+4096 {
		t.Errorf("%d bytes passed; the literal past the need must not", n)
	}
}
