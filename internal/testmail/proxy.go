package testmail

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"
)

// proxyDialTimeout bounds the proxy's connection to its target.
const proxyDialTimeout = 5 * time.Second

// Proxy is a TCP proxy on 127.0.0.1 that forwards byte streams to a target and injects network
// faults: CutAll resets every connection, Freeze turns the path into a blackhole (sockets stay
// open, nothing flows either way, as with a silently dropped NAT mapping), Refuse turns new
// connections away. A latency proxy (NewDelayProxy) also holds every chunk for a fixed time in
// each direction, as a long link would: order is kept and bandwidth is not limited (the proxy
// keeps reading while earlier chunks wait), so a round trip costs twice the delay and pipelined
// commands cost it once.
type Proxy struct {
	target string
	ln     net.Listener
	delay  time.Duration // added to each direction; fixed at construction

	mu      sync.Mutex
	pairs   map[*proxyPair]struct{}
	thawed  chan struct{} // nil while not frozen; closed by Unfreeze
	refuse  bool
	total   int
	closed  bool
	serving sync.WaitGroup // the accept loop and every pair's pumps
}

// proxyPair is one client connection and its connection to the target.
type proxyPair struct {
	client, server net.Conn
	done           chan struct{} // closed when the pair is torn down
	once           sync.Once
}

// NewProxy starts a proxy to target ("host:port"). Call Close when done.
func NewProxy(target string) (*Proxy, error) { return NewDelayProxy(target, 0) }

// NewDelayProxy starts a proxy to target that delivers every byte oneWay after it arrived, in
// each direction (a round trip through it costs 2 × oneWay more than directly). Call Close when
// done.
func NewDelayProxy(target string, oneWay time.Duration) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for proxy: %w", err)
	}
	p := &Proxy{target: target, ln: ln, delay: oneWay, pairs: make(map[*proxyPair]struct{})}
	p.serving.Add(1)
	go p.accept()
	return p, nil
}

// StartProxy starts a proxy to target and closes it when the test ends.
func StartProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	p, err := NewProxy(target)
	if err != nil {
		t.Fatalf("start proxy: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// StartDelayProxy starts a latency proxy (NewDelayProxy) to target and closes it when the test
// ends.
func StartDelayProxy(t testing.TB, target string, oneWay time.Duration) *Proxy {
	t.Helper()
	p, err := NewDelayProxy(target, oneWay)
	if err != nil {
		t.Fatalf("start proxy: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// Addr returns the proxy's "127.0.0.1:port"; clients dial it instead of the target.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Connections returns the number of client connections open through the proxy now.
func (p *Proxy) Connections() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.pairs)
}

// TotalConnections returns how many client connections the proxy has accepted and forwarded.
func (p *Proxy) TotalConnections() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.total
}

// CutAll resets every current connection on both sides (SO_LINGER 0, so the peers see a TCP RST
// rather than a FIN) and returns how many client connections it cut. New connections are still
// accepted.
func (p *Proxy) CutAll() int {
	p.mu.Lock()
	pairs := make([]*proxyPair, 0, len(p.pairs))
	for pair := range p.pairs {
		pairs = append(pairs, pair)
	}
	p.mu.Unlock()
	for _, pair := range pairs {
		pair.teardown(true)
	}
	return len(pairs)
}

// Freeze stops forwarding in both directions on every connection, current and new, while
// keeping the sockets open: peers see neither data nor a close. Bytes already read by the proxy
// are held and delivered after Unfreeze. Freezing a frozen proxy does nothing.
func (p *Proxy) Freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.thawed == nil {
		p.thawed = make(chan struct{})
	}
}

// Unfreeze resumes forwarding after Freeze.
func (p *Proxy) Unfreeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.thawed != nil {
		close(p.thawed)
		p.thawed = nil
	}
}

// Refuse makes the proxy reset new connections at once (on) or forward them again (off), as a
// server that is down would. Current connections are not affected.
func (p *Proxy) Refuse(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refuse = on
}

// Close stops accepting, closes every connection and waits for the forwarding goroutines.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	err := p.ln.Close()
	p.CutAll()
	p.serving.Wait()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

func (p *Proxy) accept() {
	defer p.serving.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return // listener closed
		}
		p.mu.Lock()
		refuse, closed := p.refuse, p.closed
		p.mu.Unlock()
		if refuse || closed {
			resetConn(client)
			continue
		}
		p.serving.Add(1)
		go p.connect(client)
	}
}

// connect dials the target for one client and starts the two pumps.
func (p *Proxy) connect(client net.Conn) {
	defer p.serving.Done()
	server, err := net.DialTimeout("tcp", p.target, proxyDialTimeout)
	if err != nil {
		resetConn(client) // the target is down: the client sees a reset, as it would directly
		return
	}
	pair := &proxyPair{client: client, server: server, done: make(chan struct{})}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		pair.teardown(true)
		return
	}
	p.pairs[pair] = struct{}{}
	p.total++
	p.serving.Add(2)
	p.mu.Unlock()

	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer p.serving.Done(); defer wg.Done(); p.pump(pair, server, client) }()
	go func() { defer p.serving.Done(); defer wg.Done(); p.pump(pair, client, server) }()
	wg.Wait()
	pair.teardown(false)
	p.mu.Lock()
	delete(p.pairs, pair)
	p.mu.Unlock()
}

// pump copies src to dst, holding each chunk while the proxy is frozen. The first read or write
// error ends the whole pair: a half-closed stream is treated as closed, which is what IMAP and
// HTTP/1.1 peers do anyway.
func (p *Proxy) pump(pair *proxyPair, dst, src net.Conn) {
	defer pair.teardown(false)
	if p.delay > 0 {
		p.pumpDelayed(pair, dst, src)
		return
	}
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.waitThawed(pair) {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// delayedChunk is bytes read from one side and the time they may be written to the other.
type delayedChunk struct {
	b   []byte
	due time.Time
}

// delayQueue is how many chunks one direction may hold in flight: enough that the reader never
// waits on loopback (32 KiB × 4096 = 128 MiB per 2 × delay), so bandwidth is not limited.
const delayQueue = 4096

// pumpDelayed copies src to dst, each chunk written p.delay after it was read: one goroutine
// reads and stamps, this one writes in order.
func (p *Proxy) pumpDelayed(pair *proxyPair, dst, src net.Conn) {
	q := make(chan delayedChunk, delayQueue)
	p.serving.Add(1)
	go func() {
		defer p.serving.Done()
		defer close(q)
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				select {
				case q <- delayedChunk{b: buf[:n], due: time.Now().Add(p.delay)}:
				case <-pair.done:
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for c := range q {
		if wait := time.Until(c.due); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-pair.done:
				return
			}
		}
		if !p.waitThawed(pair) {
			return
		}
		if _, err := dst.Write(c.b); err != nil {
			return
		}
	}
}

// waitThawed blocks while the proxy is frozen; it reports false if the pair was torn down.
func (p *Proxy) waitThawed(pair *proxyPair) bool {
	for {
		p.mu.Lock()
		thawed := p.thawed
		p.mu.Unlock()
		if thawed == nil {
			return true
		}
		select {
		case <-thawed:
		case <-pair.done:
			return false
		}
	}
}

// teardown closes both sides once; with reset, peers get an RST instead of a FIN.
func (pair *proxyPair) teardown(reset bool) {
	pair.once.Do(func() {
		close(pair.done)
		if reset {
			resetConn(pair.client)
			resetConn(pair.server)
			return
		}
		_ = pair.client.Close()
		_ = pair.server.Close()
	})
}

// resetConn closes c so that the peer sees a TCP RST (SO_LINGER 0).
func resetConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}
