package watcher_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/mailhook/mailhook/internal/testmail"
	"github.com/mailhook/mailhook/watcher"
)

// startTLSFront terminates implicit TLS (port-993 style) on a loopback port and forwards the
// plaintext to target. It returns the address and a pool that trusts its certificate.
func startTLSFront(t *testing.T, target string) (string, *x509.CertPool) {
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
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
	})
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
