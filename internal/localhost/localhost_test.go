package localhost

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
)

// TestDial: every localhost name goes to 127.0.0.1, then ::1; other names as given.
func TestDial(t *testing.T) {
	var dialled []string
	dial := Dial(func(_ context.Context, _, addr string) (net.Conn, error) {
		dialled = append(dialled, addr)
		return nil, errors.New("no")
	})
	for _, addr := range []string{"localhost:80", "a.b.LOCALHOST.:443", "example.com:80", "localhost.example.com:80", "[::1]:25"} {
		dial(context.Background(), "tcp", addr)
	}
	want := "127.0.0.1:80 [::1]:80 127.0.0.1:443 [::1]:443 example.com:80 localhost.example.com:80 [::1]:25"
	if strings.Join(dialled, " ") != want {
		t.Errorf("dialled %v; want %s", dialled, want)
	}
}
