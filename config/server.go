package config

// Connection security shared by the imap and smtp sections: TLS, STARTTLS or plain, and the
// certificate settings.

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/mailhook/mailhook/internal/localhost"
)

// Connection security values for imap.security and smtp.security.
const (
	SecurityTLS      = "tls"      // implicit TLS from the first byte
	SecurityStartTLS = "starttls" // plaintext, upgraded with STARTTLS before authenticating
	SecurityPlain    = "plain"    // no TLS: loopback only, unless insecure: true
)

// TLSConfig adjusts certificate verification for a server.
type TLSConfig struct {
	CAFile     string `mapstructure:"ca_file"`     // PEM bundle that replaces the system roots; "" = system roots
	ServerName string `mapstructure:"server_name"` // name to verify; "" = the host
}

// ClientConfig returns the crypto/tls client configuration for a server named host: certificates
// are verified against CAFile (or the system roots) and ServerName (or host), TLS 1.2 at least.
func (t TLSConfig) ClientConfig(host string) (*tls.Config, error) {
	cfg := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	if t.ServerName != "" {
		cfg.ServerName = t.ServerName
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("no PEM certificate in %s", t.CAFile)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

// isLoopback reports whether host names the local machine without asking DNS: "localhost" and
// names under .localhost (RFC 6761 §6.3), which every dialer sends to the loopback (package
// localhost), or a loopback IP address.
func isLoopback(host string) bool {
	if localhost.IsName(host) {
		return true
	}
	h := strings.TrimSuffix(strings.ToLower(host), ".")
	ip := net.ParseIP(strings.TrimSuffix(strings.TrimPrefix(h, "["), "]"))
	return ip != nil && ip.IsLoopback()
}

// validateServer checks the connection settings shared by imap and smtp.
func validateServer(p *problems, path, host string, port int, security string, insecure bool, t TLSConfig) {
	switch {
	case host == "":
		p.add(path+".host", "required")
	case strings.Contains(host, "://") || strings.Contains(host, "/"):
		p.add(path+".host", "want a host name only, without scheme or path")
	case strings.ContainsFunc(host, isSpaceOrControl):
		p.add(path+".host", "must not contain spaces")
	}
	if port < 1 || port > 65535 {
		p.add(path+".port", "%d is not a TCP port", port)
	}
	if oneOf(p, path+".security", security, SecurityTLS, SecurityStartTLS, SecurityPlain) && security == SecurityPlain {
		if host != "" && !isLoopback(host) && !insecure {
			p.add(path+".security", "plain sends the password unencrypted; allowed only to a loopback host or with insecure: true")
		}
		if t != (TLSConfig{}) {
			p.add(path+".tls", "set, but security is plain")
		}
	}
}
