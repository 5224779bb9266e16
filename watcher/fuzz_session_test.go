package watcher_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailhook/mailhook/watcher"
)

// sessionScript is an honest server's side of one session, one chunk per client line (the
// first is the greeting), separated by NUL; "TAG" stands for the tag of the command answered.
var sessionScript = strings.Join([]string{
	"* OK [CAPABILITY IMAP4rev1 IDLE LITERAL+ UIDPLUS MOVE AUTH=PLAIN] ready\r\n",
	"TAG OK [CAPABILITY IMAP4rev1 IDLE LITERAL+ UIDPLUS MOVE] Logged in\r\n",
	"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n* 2 EXISTS\r\n* 0 RECENT\r\n" +
		"* OK [UIDVALIDITY 1796282588] UIDs valid\r\n* OK [UIDNEXT 9] Predicted next UID\r\nTAG OK [READ-WRITE] Select completed\r\n",
	"* SEARCH 7 8\r\nTAG OK Search completed\r\n",
	"* 1 FETCH (UID 7 FLAGS (\\Seen) RFC822.SIZE 321 INTERNALDATE \"26-Nov-2026 10:00:00 +0000\" BODYSTRUCTURE " +
		"((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 12 1 NIL NIL NIL NIL)" +
		"(\"application\" \"pdf\" (\"name\" {9}\r\nr\"(e)p.pdf) NIL NIL \"base64\" 100 NIL (\"attachment\" (\"filename\" \"r.pdf\")) NIL NIL) " +
		"\"mixed\" (\"boundary\" \"b1\") NIL NIL NIL) BODY[HEADER]<0> {61}\r\n" +
		"From: a@example.com\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\nX-P: (\r\n\r\n)\r\n" +
		"* 2 FETCH (UID 8 FLAGS () RFC822.SIZE 99 INTERNALDATE \"26-Nov-2026 10:00:01 +0000\" BODYSTRUCTURE " +
		"(\"text\" \"plain\" NIL NIL NIL \"7bit\" 2 1 NIL NIL NIL NIL) BODY[HEADER]<0> {20}\r\nSubject: \"quoted\"\r\n\r\n)\r\n" +
		"TAG OK Fetch completed\r\n",
	"+ idling\r\n",
	"* 3 EXISTS\r\n* 1 FETCH (FLAGS (\\Seen \\Flagged))\r\n* OK Still here\r\nTAG OK Idle completed\r\n",
	"* SEARCH 9\r\nTAG OK Search completed\r\n",
	"* BYE [ALERT] going away\r\n",
}, "\x00")

// FuzzSession feeds mutated server responses to a watcher's session over an in-memory
// connection: greeting, login, SELECT, SEARCH, FETCH with BODYSTRUCTURE and literals, IDLE. The
// watcher must not panic, must give up on a silent server within its command timeout, and must
// stop when asked; the heap stays bounded.
func FuzzSession(f *testing.F) {
	f.Add([]byte(sessionScript))
	f.Add([]byte(strings.Replace(sessionScript, "BODY[HEADER]<0> {61}", "BODY[HEADER]<0> {9999999}", 1)))
	f.Add([]byte(strings.Replace(sessionScript, "\"mixed\"", strings.Repeat("(", 300)+"\"mixed\"", 1)))
	f.Add([]byte(strings.Replace(sessionScript, "* SEARCH 7 8", "* SEARCH 4294967295 0 7", 1)))
	f.Add([]byte(strings.Replace(sessionScript, "TAG OK Fetch completed", "TAG NO [UNAVAILABLE] try later", 1)))
	f.Fuzz(func(t *testing.T, script []byte) {
		chunks := bytes.Split(script, []byte{0})
		if len(script) > 64<<10 || len(chunks) > 32 {
			return
		}
		runScript(t, chunks)
	})
}

// runScript runs one watcher against a server that answers each client line with the next chunk.
func runScript(t *testing.T, chunks [][]byte) {
	const commandTimeout = 100 * time.Millisecond
	logs := &syncBuffer{}
	cfg := baseConfig("script:143", "user@example.test", "secret-pw", logs)
	cfg.Start = watcher.StartAll
	cfg.CommandTimeout = commandTimeout
	cfg.WatchdogSlack = 50 * time.Millisecond
	cfg.IdleRefresh = 50 * time.Millisecond
	cfg.MaxMessageSize = 1 << 20
	served := make(chan struct{})
	var once sync.Once
	cfg.Dial = func(ctx context.Context, _, _ string) (net.Conn, error) {
		dialed := false
		once.Do(func() { dialed = true })
		if !dialed {
			return nil, errors.New("script played")
		}
		client, server := net.Pipe()
		go func() {
			defer close(served)
			defer server.Close()
			serveScript(server, chunks)
		}()
		return client, nil
	}
	w, err := watcher.New(cfg, newFakeState(), newRecorder())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	// The server plays every chunk unless the watcher hangs up first; either way the session
	// ends, at the latest when the watchdog gives up on a server that stopped answering.
	limit := time.Duration(len(chunks)+2)*(commandTimeout+cfg.WatchdogSlack) + 2*time.Second
	select {
	case <-served:
	case <-time.After(limit):
		cancel()
		buf := make([]byte, 1<<20)
		t.Fatalf("session still running after %v; goroutines:\n%s", limit, buf[:runtime.Stack(buf, true)])
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		buf := make([]byte, 1<<20)
		t.Fatalf("Run did not return within 5 s of cancel; log:\n%s\ngoroutines:\n%s", logs.String(), buf[:runtime.Stack(buf, true)])
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	if ms.HeapAlloc > 512<<20 {
		t.Fatalf("heap %d MiB after one session", ms.HeapAlloc>>20)
	}
}

// serveScript writes chunks[0], then one chunk per line the client sends, with TAG replaced by
// the line's tag, and returns when the chunks run out or the client hangs up.
func serveScript(conn net.Conn, chunks [][]byte) {
	r := bufio.NewReader(conn)
	for i, c := range chunks {
		tag := "*"
		if i > 0 {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			tag, _, _ = strings.Cut(line, " ")
		}
		if _, err := conn.Write(bytes.ReplaceAll(c, []byte("TAG"), []byte(tag))); err != nil {
			return
		}
	}
}
