package watcher_test

import (
	"bufio"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/mailhook/mailhook/watcher"
)

// hostileFirstPass runs the scripted server's one message (UID 3) through a first pass answered
// by write, and checks that the watcher survives it: the connection is dropped with a reason
// containing want, three times, and the message is then delivered degraded with "fetch_failed"
// (the minimal fetch asks for no BODYSTRUCTURE), the mailbox moving on.
func hostileFirstPass(t *testing.T, want string, write func(w *bufio.Writer, tag string) error) {
	t.Helper()
	hostileFirstPassVia(t, want, nil, write)
}

// hostileFirstPassVia is hostileFirstPass with via, when not nil, changing the config to reach
// the scripted server at addr another way (through a STARTTLS front, say).
func hostileFirstPassVia(t *testing.T, want string, via func(t *testing.T, addr string, cfg *watcher.Config), write func(w *bufio.Writer, tag string) error) {
	t.Helper()
	srv := startScripted(t)
	srv.setFirstPass(write)
	logs := &syncBuffer{}
	st, rec := newFakeState(), newRecorder()
	cfg := baseConfig(srv.ln.Addr().String(), "user@example.test", "secret-pw", logs)
	cfg.Start = watcher.StartAll
	if via != nil {
		via(t, srv.ln.Addr().String(), &cfg)
	}
	w := mustNew(t, cfg, st, rec)
	runWatcher(t, w, logs)

	rec.waitUIDs(t, 3)
	rec.mu.Lock()
	m := rec.events[0].Message
	rec.mu.Unlock()
	if !slices.Contains(m.Defects, "fetch_failed") {
		t.Errorf("message delivered with defects %v; want fetch_failed after the dropped connections", m.Defects)
	}
	if n := strings.Count(logs.String(), want); n < 1 {
		t.Errorf("no log line names the bound %q", want)
	}
	if got := st.committedUIDs(); !slices.Equal(got, []uint32{3}) {
		t.Errorf("committed %v", got)
	}
}

// TestHostileNesting: an 8 MB FETCH line of parentheses made go-imap's BODYSTRUCTURE reader
// recurse until the process died of a stack overflow (fatal, not a panic). The sniffer drops the
// connection at maxResponseDepth.
func TestHostileNesting(t *testing.T) {
	hostileFirstPass(t, "server response nests lists 257 deep", deepParens)
}

// deepParens answers a first pass with one FETCH line of 8 MiB of "(".
func deepParens(w *bufio.Writer, tag string) error {
	w.WriteString("* 1 FETCH (UID 3 RFC822.SIZE 1234 BODYSTRUCTURE ")
	for range 8 << 10 {
		if _, err := w.WriteString(strings.Repeat("(", 1024)); err != nil {
			return err
		}
	}
	_, err := w.WriteString("\r\n" + tag + " OK done\r\n")
	return err
}

// TestHostileQuotedString: a 6 MiB quoted string inside BODYSTRUCTURE was buffered whole by
// go-imap (a 128 MiB one peaked the heap at 435 MiB) and the message committed. The response cap
// (4 MiB for a small mailbox) drops the connection. (Only the first drop is waited for: go-imap
// reads a quoted string a byte at a time, seconds per attempt under the race detector.)
func TestHostileQuotedString(t *testing.T) {
	srv := startScripted(t)
	srv.setFirstPass(hugeQuoted)
	logs := &syncBuffer{}
	st, rec := newFakeState(), newRecorder()
	cfg := baseConfig(srv.ln.Addr().String(), "user@example.test", "secret-pw", logs)
	cfg.Start = watcher.StartAll
	runWatcher(t, mustNew(t, cfg, st, rec), logs)
	eventually(t, "the connection dropped at the response cap", func() bool {
		return strings.Contains(logs.String(), "bytes outside body-section literals, more than the limit of 4194304")
	})
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, ev := range rec.events {
		if !slices.Contains(ev.Message.Defects, "fetch_failed") {
			t.Errorf("message %d delivered from the oversized response", ev.UID)
		}
	}
}

// hugeQuoted answers a first pass with a 6 MiB quoted string inside BODYSTRUCTURE.
func hugeQuoted(w *bufio.Writer, tag string) error {
	w.WriteString(`* 1 FETCH (UID 3 RFC822.SIZE 1234 BODYSTRUCTURE ("text" "plain" ("name" "`)
	for range 6 << 10 {
		if _, err := w.WriteString(strings.Repeat("x", 1024)); err != nil {
			return err
		}
	}
	_, err := w.WriteString(`") NIL NIL "7bit" 1 1))` + "\r\n" + tag + " OK done\r\n")
	return err
}

// TestHostileBodySections: a first pass asks for the header section alone, and every body section
// the server adds was kept (100 sections of 1 MiB: 167 MiB of heap for one message). The total
// of body-section literals in one response is bounded by what the FETCH asked.
func TestHostileBodySections(t *testing.T) {
	hostileFirstPass(t, "body-section literals; the FETCH asked for at most", func(w *bufio.Writer, tag string) error {
		fmt.Fprintf(w, "* 1 FETCH (UID 3 RFC822.SIZE 1234 BODYSTRUCTURE (\"text\" \"plain\" NIL NIL NIL \"7bit\" 1 1) "+
			"BODY[HEADER]<0> {18}\r\nSubject: hostile\r\n")
		chunk := strings.Repeat("b", 64<<10)
		for i := range 100 {
			fmt.Fprintf(w, " BODY[%d] {%d}\r\n", i+1, 16*len(chunk))
			for range 16 {
				if _, err := w.WriteString(chunk); err != nil {
					return err
				}
			}
		}
		_, err := w.WriteString(")\r\n" + tag + " OK done\r\n")
		return err
	})
}
