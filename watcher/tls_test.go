package watcher_test

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailhook/mailhook/internal/testmail"
	"github.com/mailhook/mailhook/watcher"
)

// testCert returns a self-signed certificate for imap.test and a pool that trusts it.
func testCert(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "imap.test"},
		DNSNames:     []string{"imap.test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool
}

// startTLSFront terminates implicit TLS (port-993 style) on a loopback port and forwards the
// plaintext to target. It returns the address and a pool that trusts its certificate.
func startTLSFront(t *testing.T, target string) (string, *x509.CertPool) {
	t.Helper()
	cert, pool := testCert(t)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, up)
			mu.Unlock()
			wg.Go(func() { io.Copy(up, c); up.Close() })
			wg.Go(func() { io.Copy(c, up); c.Close() })
		}
	})
	return ln.Addr().String(), pool
}

func TestImplicitTLS(t *testing.T) {
	srv := testmail.StartMemServer(t, testmail.MemOptions{})
	addr, pool := startTLSFront(t, srv.Addr())
	logs := &syncBuffer{}
	st, rec := newFakeState(), newRecorder()
	cfg := baseConfig(addr, srv.User(), srv.Password(), logs)
	cfg.Security = watcher.SecurityTLS
	cfg.TLS = &tls.Config{RootCAs: pool, ServerName: "imap.test"}
	w := mustNew(t, cfg, st, rec)
	runWatcher(t, w, logs)

	waitState(t, w, watcher.StateIdle)
	uids := appendN(t, srv, 0, 1)
	rec.waitUIDs(t, uids...)
	s := w.Status()
	if s.BytesRead == 0 || s.LastActivity.IsZero() {
		t.Errorf("no bytes counted: %+v", s)
	}
}

func TestTLSRejectsUntrustedCertificate(t *testing.T) {
	srv := testmail.StartMemServer(t, testmail.MemOptions{})
	addr, _ := startTLSFront(t, srv.Addr())
	logs := &syncBuffer{}
	cfg := baseConfig(addr, srv.User(), srv.Password(), logs)
	cfg.Security = watcher.SecurityTLS
	cfg.TLS = &tls.Config{ServerName: "imap.test"} // system roots do not trust the test CA
	w := mustNew(t, cfg, newFakeState(), newRecorder())
	runWatcher(t, w, logs)

	eventually(t, "tls failure reason", func() bool {
		return containsAny(w.Status().Reason, "tls handshake", "certificate")
	})
	if st := w.Status(); st.State == watcher.StateIdle {
		t.Errorf("session became ready despite an untrusted certificate")
	}
}

// startStartTLSFront is a port-143 front: it greets in plaintext, answers STARTTLS (with inject,
// followed by a plaintext response that must be ignored), runs the TLS handshake, then connects to
// target (a plaintext IMAP server), drops target's greeting and forwards the rest both ways. It
// returns the address and a pool that trusts its certificate.
func startStartTLSFront(t *testing.T, target string, inject bool) (string, *x509.CertPool) {
	t.Helper()
	cert, pool := testCert(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	serve := func(c net.Conn) {
		defer c.Close()
		io.WriteString(c, "* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] front ready\r\n")
		r := bufio.NewReader(c)
		line, err := r.ReadString('\n')
		tag, cmd, _ := strings.Cut(strings.TrimSpace(line), " ")
		if err != nil || !strings.EqualFold(cmd, "STARTTLS") {
			io.WriteString(c, tag+" BAD STARTTLS first\r\n")
			return
		}
		io.WriteString(c, tag+" OK begin TLS\r\n")
		if inject { // plaintext after the OK must never be read as protocol by the client
			io.WriteString(c, "* BYE [ALERT] injected before TLS\r\n")
		}
		tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}})
		if err := tc.Handshake(); err != nil {
			return
		}
		up, err := net.Dial("tcp", target)
		if err != nil {
			return
		}
		mu.Lock()
		conns = append(conns, tc, up)
		mu.Unlock()
		ur := bufio.NewReader(up)
		if _, err := ur.ReadString('\n'); err != nil { // target's greeting
			up.Close()
			return
		}
		wg.Go(func() { io.Copy(up, tc); up.Close() })
		io.Copy(tc, ur)
		tc.Close()
	}
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() { serve(c) })
		}
	})
	return ln.Addr().String(), pool
}

func TestStartTLS(t *testing.T) {
	srv := testmail.StartMemServer(t, testmail.MemOptions{})
	addr, pool := startStartTLSFront(t, srv.Addr(), true)
	logs := &syncBuffer{}
	st, rec := newFakeState(), newRecorder()
	cfg := baseConfig(addr, srv.User(), srv.Password(), logs)
	cfg.Security = watcher.SecurityStartTLS
	cfg.TLS = &tls.Config{RootCAs: pool, ServerName: "imap.test"}
	w := mustNew(t, cfg, st, rec)
	runWatcher(t, w, logs)

	waitState(t, w, watcher.StateIdle)
	uids := appendN(t, srv, 0, 1)
	rec.waitUIDs(t, uids...)
	if strings.Contains(logs.String(), "injected") {
		t.Error("plaintext sent after the STARTTLS OK was read as a response")
	}
}

// TestStartTLSHostileNesting: with STARTTLS, go-imap replaced the connection below the response
// sniffer, so none of its bounds held: the 8 MB line of parentheses killed the process.
func TestStartTLSHostileNesting(t *testing.T) {
	hostileFirstPassVia(t, "server response nests lists 257 deep", func(t *testing.T, addr string, cfg *watcher.Config) {
		front, pool := startStartTLSFront(t, addr, false)
		cfg.Addr = front
		cfg.Security = watcher.SecurityStartTLS
		cfg.TLS = &tls.Config{RootCAs: pool, ServerName: "imap.test"}
	}, deepParens)
}
