package testmail

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// startEcho starts a line echo server and returns its address.
func startEcho(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

// echoLine writes line and reads the echo, with a deadline.
func echoLine(c net.Conn, br *bufio.Reader, line string, timeout time.Duration) (string, error) {
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return "", err
	}
	got, err := br.ReadString('\n')
	return strings.TrimSuffix(got, "\n"), err
}

func TestProxyForwardsAndCuts(t *testing.T) {
	p := StartProxy(t, startEcho(t))
	c, err := net.DialTimeout("tcp", p.Addr(), testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	if got, err := echoLine(c, br, "hello", testTimeout); err != nil || got != "hello" {
		t.Fatalf("echo = %q, %v", got, err)
	}
	if got := p.Connections(); got != 1 {
		t.Errorf("Connections() = %d, want 1", got)
	}
	if got := p.CutAll(); got != 1 {
		t.Errorf("CutAll() = %d, want 1", got)
	}
	_ = c.SetDeadline(time.Now().Add(testTimeout))
	_, err = br.ReadString('\n')
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("read after CutAll: %v, want connection reset", err)
	}
	waitUntil(t, "the proxy forgets the cut connection", func() bool { return p.Connections() == 0 })

	// New connections work again.
	c2, err := net.DialTimeout("tcp", p.Addr(), testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if got, err := echoLine(c2, bufio.NewReader(c2), "again", testTimeout); err != nil || got != "again" {
		t.Fatalf("echo after cut = %q, %v", got, err)
	}
	if got := p.TotalConnections(); got != 2 {
		t.Errorf("TotalConnections() = %d, want 2", got)
	}
}

func TestProxyFreeze(t *testing.T) {
	p := StartProxy(t, startEcho(t))
	c, err := net.DialTimeout("tcp", p.Addr(), testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	if got, err := echoLine(c, br, "before", testTimeout); err != nil || got != "before" {
		t.Fatalf("echo = %q, %v", got, err)
	}

	p.Freeze()
	// Frozen: the write succeeds (the socket is open), the answer never comes.
	_, err = echoLine(c, br, "during", 200*time.Millisecond)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("echo while frozen: %v, want a read timeout", err)
	}
	if got := p.Connections(); got != 1 {
		t.Errorf("Connections() while frozen = %d, want 1", got)
	}

	p.Unfreeze()
	_ = c.SetDeadline(time.Now().Add(testTimeout))
	if got, err := br.ReadString('\n'); err != nil || got != "during\n" {
		t.Fatalf("held echo after Unfreeze = %q, %v", got, err)
	}
	if got, err := echoLine(c, br, "after", testTimeout); err != nil || got != "after" {
		t.Fatalf("echo after Unfreeze = %q, %v", got, err)
	}
}

func TestProxyRefuse(t *testing.T) {
	p := StartProxy(t, startEcho(t))
	p.Refuse(true)
	expectReset(t, p.Addr())
	p.Refuse(false)
	c2, err := net.DialTimeout("tcp", p.Addr(), testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if got, err := echoLine(c2, bufio.NewReader(c2), "ok", testTimeout); err != nil || got != "ok" {
		t.Fatalf("echo after Refuse(false) = %q, %v", got, err)
	}
}

func TestProxyTargetDown(t *testing.T) {
	// Port 1 (tcpmux) has no listener here; a just-closed ephemeral port could be handed to the
	// proxy itself.
	p := StartProxy(t, "127.0.0.1:1")
	expectReset(t, p.Addr())
}

// expectReset dials addr and expects the connection to be reset, which the client may learn
// while connecting (the RST can beat the dial's completion) or at its first read.
func expectReset(t *testing.T, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, testTimeout)
	if err != nil {
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("dial: %v, want success or connection reset", err)
		}
		return
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(testTimeout))
	if _, err := c.Read(make([]byte, 1)); err == nil || os.IsTimeout(err) {
		t.Errorf("read: %v, want connection reset or EOF", err)
	}
}

// TestProxyIMAPClientSeesFaults drives a real IMAP client through the proxy: a freeze makes a
// NOOP hang (go-imap has no deadline), a cut ends the connection.
func TestProxyIMAPClientSeesFaults(t *testing.T) {
	s := StartMemServer(t, MemOptions{})
	p := StartProxy(t, s.Addr())
	w := dialWatcher(t, p.Addr(), s.User(), s.Password(), "INBOX")
	if s.Connections() != 1 || p.Connections() != 1 {
		t.Fatalf("connections: server %d, proxy %d; want 1, 1", s.Connections(), p.Connections())
	}

	p.Freeze()
	noop := make(chan error, 1)
	go func() { noop <- w.Noop().Wait() }()
	select {
	case err := <-noop:
		t.Fatalf("NOOP completed through a frozen proxy: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	p.Unfreeze()
	select {
	case err := <-noop:
		if err != nil {
			t.Fatalf("NOOP after Unfreeze: %v", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("NOOP still pending after Unfreeze")
	}

	p.CutAll()
	select {
	case <-w.Closed():
	case <-time.After(testTimeout):
		t.Fatal("client not closed after CutAll")
	}
	waitUntil(t, "the server sees the connection end", func() bool { return s.Connections() == 0 })

	// Reconnecting through the proxy works and sees the mailbox.
	if _, err := s.Append("INBOX", SampleCIFailure(1)); err != nil {
		t.Fatal(err)
	}
	c, err := imapclient.DialInsecure(p.Addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	watchdog := time.AfterFunc(testTimeout, func() { _ = c.Close() })
	defer watchdog.Stop()
	defer c.Close()
	if err := c.Login(s.User(), s.Password()).Wait(); err != nil {
		t.Fatal(err)
	}
	data, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if data.NumMessages != 1 {
		t.Errorf("EXISTS %d after reconnect, want 1", data.NumMessages)
	}
}

func TestDelayProxyAddsLatencyKeepsOrderAndPipelines(t *testing.T) {
	const oneWay = 25 * time.Millisecond
	p := StartDelayProxy(t, startEcho(t), oneWay)
	c, err := net.DialTimeout("tcp", p.Addr(), testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	start := time.Now()
	if got, err := echoLine(c, br, "hello", testTimeout); err != nil || got != "hello" {
		t.Fatalf("echo = %q, %v", got, err)
	}
	if rtt := time.Since(start); rtt < 2*oneWay {
		t.Errorf("round trip took %s, want at least %s", rtt, 2*oneWay)
	}

	// Many lines sent back to back come back in order, in about one round trip rather than one
	// per line: the proxy delays, it does not serialise. The bound is loose (a quarter of what one
	// round trip per line would take) so that a loaded machine does not fail it.
	const lines = 40
	_ = c.SetDeadline(time.Now().Add(testTimeout))
	start = time.Now()
	var out strings.Builder
	for i := range lines {
		out.WriteString(strings.Repeat("x", i) + "\n")
	}
	if _, err := io.WriteString(c, out.String()); err != nil {
		t.Fatal(err)
	}
	for i := range lines {
		got, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
		if want := strings.Repeat("x", i) + "\n"; got != want {
			t.Fatalf("line %d = %q, want %q (order lost)", i, got, want)
		}
	}
	if took := time.Since(start); took < 2*oneWay || took > lines*2*oneWay/4 {
		t.Errorf("%d pipelined lines took %s; want between one round trip (%s) and %s", lines, took, 2*oneWay, lines*2*oneWay/4)
	}
}
