package testmail

import (
	"bytes"
	"errors"
	"net"
	"strconv"
	"sync"
)

// connTracker counts the connections a listener accepted: open now, peak, and total.
type connTracker struct {
	mu    sync.Mutex
	open  map[*trackedConn]struct{}
	peak  int
	total int
}

func newConnTracker() *connTracker {
	return &connTracker{open: make(map[*trackedConn]struct{})}
}

func (t *connTracker) add(c *trackedConn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.open[c] = struct{}{}
	t.total++
	t.peak = max(t.peak, len(t.open))
}

func (t *connTracker) remove(c *trackedConn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.open, c)
}

func (t *connTracker) counts() (open, peak, total int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.open), t.peak, t.total
}

// closeAll closes every open connection and returns how many it closed.
func (t *connTracker) closeAll() int {
	t.mu.Lock()
	conns := make([]*trackedConn, 0, len(t.open))
	for c := range t.open {
		conns = append(conns, c)
	}
	t.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
	return len(conns)
}

// trackingListener registers every accepted connection with a connTracker and, when noIdle is
// set, hides the IDLE capability in what the server writes.
type trackingListener struct {
	net.Listener
	tracker *connTracker
	noIdle  bool
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, tracker: l.tracker}
	if l.noIdle {
		tc.filter = &capFilter{dst: c}
	}
	l.tracker.add(tc)
	return tc, nil
}

// trackedConn is a server-side connection that leaves its tracker when closed.
type trackedConn struct {
	net.Conn
	tracker *connTracker
	filter  *capFilter // nil: writes go straight to Conn
	once    sync.Once
}

func (c *trackedConn) Write(p []byte) (int, error) {
	if c.filter == nil {
		return c.Conn.Write(p)
	}
	return c.filter.Write(p)
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.tracker.remove(c) })
	return err
}

// capFilter removes the IDLE capability from the server's CAPABILITY lists: the untagged
// CAPABILITY response and the [CAPABILITY …] response code of the greeting and of the LOGIN/
// AUTHENTICATE completion (RFC 3501 §7.2.1, §7.1). imapserver always advertises IDLE for
// IMAP4rev1, so this is the only way to offer a server without it.
//
// It works line by line and passes literals (RFC 3501 §4.3: "{n}" CRLF then n octets) through
// untouched, so message content that happens to contain "CAPABILITY" is never rewritten. A partial
// line is held back until its CRLF arrives; the server always ends a response line with CRLF
// before flushing.
type capFilter struct {
	dst     net.Conn
	mu      sync.Mutex
	line    []byte
	literal int64 // octets of literal data still to pass through untouched
}

func (f *capFilter) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		if f.literal > 0 {
			k := int(min(f.literal, int64(len(p))))
			if _, err := f.dst.Write(p[:k]); err != nil {
				return 0, err
			}
			f.literal -= int64(k)
			p = p[k:]
			continue
		}
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			f.line = append(f.line, p...)
			break
		}
		f.line = append(f.line, p[:i+1]...)
		p = p[i+1:]
		line := f.line
		f.line = nil
		f.literal = literalSize(line)
		if _, err := f.dst.Write(withoutIdle(line)); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// literalSize returns n when line ends with a literal announcement "{n}\r\n", else 0.
func literalSize(line []byte) int64 {
	line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
	if !bytes.HasSuffix(line, []byte("}")) {
		return 0
	}
	open := bytes.LastIndexByte(line, '{')
	if open < 0 {
		return 0
	}
	n, err := strconv.ParseInt(string(bytes.TrimSuffix(line[open+1:len(line)-1], []byte("+"))), 10, 64)
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// withoutIdle drops the IDLE atom from a line that carries a capability list.
func withoutIdle(line []byte) []byte {
	if !bytes.HasPrefix(line, []byte("* CAPABILITY ")) && !bytes.Contains(line, []byte("[CAPABILITY ")) {
		return line
	}
	line = bytes.ReplaceAll(line, []byte(" IDLE "), []byte(" "))
	line = bytes.ReplaceAll(line, []byte(" IDLE]"), []byte("]"))
	line = bytes.ReplaceAll(line, []byte(" IDLE\r\n"), []byte("\r\n"))
	return line
}

// pipeListener is an in-process net.Listener over net.Pipe. The MemServer serves its own
// administrative sessions on it so that they never show in the connection counts.
type pipeListener struct {
	conns     chan net.Conn
	done      chan struct{}
	closeOnce sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

var errPipeListenerClosed = errors.New("testmail: pipe listener closed")

// dial returns the client end of a new in-process connection.
func (l *pipeListener) dial() (net.Conn, error) {
	client, server := net.Pipe()
	select {
	case l.conns <- server:
		return client, nil
	case <-l.done:
		return nil, errPipeListenerClosed
	}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }
