package dispatch

import (
	"errors"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/mailhook/mailhook/store"
)

// TestLocalhostNameDelivered: configuration trusts names under .localhost as loopback (plain http
// is allowed to them), so the dialer sends them to the loopback and never asks DNS, which could
// answer with any address (or, as here, not at all).
func TestLocalhostNameDelivered(t *testing.T) {
	_, key := testSecret(t, 1, 32)
	srv, got := receiver(t, nil)
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	out := newFakeOutbox()
	start(t, mustNew(t, out, []Endpoint{{Name: "local", URL: "http://hook.example.localhost:" + u.Port() + "/in",
		Secrets: [][]byte{key}, Timeout: 5 * time.Second}}, Options{}))
	out.add(newJob("msg_L", "local", time.Now()))
	next(t, got)
	out.waitState(t, "msg_L", store.StateDone)
}

// TestProxyFor: with HTTP(S)_PROXY set, the proxy dials the webhook, out of sight of the dial-time
// address check. Localhost names and loopback addresses never go to the proxy; a guarded address
// literal is refused before the proxy sees it (unless allow_link_local); other hosts go through
// the proxy, whose own policy must refuse what resolves to a metadata address.
func TestProxyFor(t *testing.T) {
	proxy, _ := url.Parse("http://proxy.example:3128")
	fromEnv := func(*http.Request) (*url.URL, error) { return proxy, nil }
	for _, tc := range []struct {
		url            string
		allowLinkLocal bool
		want           string // "direct", "proxy" or "refused"
	}{
		{"http://hook.localhost:8080/", false, "direct"},
		{"http://localhost/", false, "direct"},
		{"http://127.0.0.1:9/", false, "direct"},
		{"http://[::1]:9/", false, "direct"},
		{"http://169.254.169.254/latest/meta-data/", false, "refused"},
		{"http://[fd20:ce::254]/", false, "refused"},
		{"http://168.63.129.16/", false, "refused"},
		{"http://[::ffff:169.254.169.254]/", false, "refused"},
		{"http://169.254.169.254/", true, "proxy"},
		{"https://hooks.example.com/x", false, "proxy"},
		{"http://10.0.0.5/", false, "proxy"},
	} {
		r, _ := http.NewRequest(http.MethodPost, tc.url, nil)
		p, err := proxyFor(tc.allowLinkLocal, fromEnv)(r)
		got := "proxy"
		var refused *refusedAddrError
		switch {
		case errors.As(err, &refused):
			got = "refused"
		case err != nil:
			got = err.Error()
		case p == nil:
			got = "direct"
		}
		if got != tc.want {
			t.Errorf("%s (allow_link_local %v): %s; want %s", tc.url, tc.allowLinkLocal, got, tc.want)
		}
	}
}
