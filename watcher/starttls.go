package watcher

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
)

// maxPlainLine bounds a line of the plaintext exchange before TLS.
const maxPlainLine = 8 << 10

// startTLS reads the server's plaintext greeting, sends STARTTLS (RFC 3501 §6.2.1) and waits for
// its OK, then runs the TLS handshake on conn. The connection it returns starts with a greeting
// of its own ("* OK"), since the IMAP library expects one: the library then asks for the
// capabilities again, as a client must after STARTTLS (they may differ over TLS). Bytes the server
// sent after its OK and before the handshake are discarded, never read as protocol (a plaintext
// injection, RFC 2595 §3.1 and CVE-2011-0411).
func startTLS(ctx context.Context, conn net.Conn, cfg *tls.Config) (net.Conn, error) {
	r := bufio.NewReaderSize(conn, 4096)
	greeting, err := plainLine(r)
	if err != nil {
		return nil, fmt.Errorf("greeting: %w", err)
	}
	switch f := strings.Fields(greeting); {
	case len(f) >= 2 && f[0] == "*" && strings.EqualFold(f[1], "OK"):
	case len(f) >= 2 && f[0] == "*" && strings.EqualFold(f[1], "PREAUTH"):
		return nil, errors.New("the server greeted with PREAUTH: the session is authenticated before STARTTLS could protect it")
	default:
		return nil, fmt.Errorf("greeting %q is not OK", truncateLine(greeting))
	}
	const tag = "S0"
	if _, err := io.WriteString(conn, tag+" STARTTLS\r\n"); err != nil {
		return nil, err
	}
	for {
		line, err := plainLine(r)
		if err != nil {
			return nil, err
		}
		f := strings.Fields(line)
		switch {
		case len(f) >= 2 && f[0] == tag && strings.EqualFold(f[1], "OK"):
			tc := tls.Client(conn, cfg) // reads conn itself: whatever r buffered is dropped
			if err := tc.HandshakeContext(ctx); err != nil {
				return nil, fmt.Errorf("tls handshake: %w", err)
			}
			return &greetedConn{Conn: tc, greeting: "* OK TLS established\r\n"}, nil
		case len(f) >= 1 && f[0] == tag:
			return nil, fmt.Errorf("server refused STARTTLS: %q", truncateLine(line))
		case len(f) >= 2 && f[0] == "*" && strings.EqualFold(f[1], "BYE"):
			return nil, fmt.Errorf("server closed the connection: %q", truncateLine(line))
		}
		// Other untagged responses (a CAPABILITY, say) are not needed: the library asks again.
	}
}

// plainLine reads one CRLF-terminated line of at most maxPlainLine bytes.
func plainLine(r *bufio.Reader) (string, error) {
	var b []byte
	for {
		chunk, isPrefix, err := r.ReadLine()
		if err != nil {
			return "", err
		}
		b = append(b, chunk...)
		if len(b) > maxPlainLine {
			return "", fmt.Errorf("line longer than %d bytes before TLS", maxPlainLine)
		}
		if !isPrefix {
			return string(b), nil
		}
	}
}

func truncateLine(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}

// greetedConn returns greeting before what it reads from Conn.
type greetedConn struct {
	net.Conn
	greeting string
}

func (c *greetedConn) Read(p []byte) (int, error) {
	if c.greeting != "" {
		n := copy(p, c.greeting)
		c.greeting = c.greeting[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}
