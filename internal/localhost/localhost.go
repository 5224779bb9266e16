// Package localhost keeps localhost names on the local machine. Configuration trusts "localhost"
// and names under .localhost as loopback (RFC 6761 §6.3) and allows plaintext to them, but Go's
// resolver asks DNS for a name under .localhost that /etc/hosts lacks, and DNS may answer with any
// address: every dialer of mailhook wraps itself with Dial so such a name reaches the loopback only.
package localhost

import (
	"context"
	"net"
	"strings"
)

// IsName reports whether host is "localhost" or a name under .localhost, in any case, with or
// without a trailing dot.
func IsName(host string) bool {
	h := strings.TrimSuffix(strings.ToLower(host), ".")
	return h == "localhost" || strings.HasSuffix(h, ".localhost")
}

// DialFunc is the shape of net.Dialer.DialContext.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// Dial wraps dial so that an address whose host is a localhost name is dialled on 127.0.0.1 and,
// failing that, on ::1, without any name lookup; other addresses are dialled as given.
func Dial(dial DialFunc) DialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil || !IsName(host) {
			return dial(ctx, network, addr)
		}
		c, err := dial(ctx, network, net.JoinHostPort("127.0.0.1", port))
		if err == nil {
			return c, nil
		}
		if c, err6 := dial(ctx, network, net.JoinHostPort("::1", port)); err6 == nil {
			return c, nil
		}
		return nil, err
	}
}
