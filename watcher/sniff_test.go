package watcher

import (
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
