package oauth_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/mailhook/mailhook/internal/testmail"
	"github.com/mailhook/mailhook/oauth"
)

func flowConfig(ts *testmail.TokenServer) *oauth2.Config {
	return &oauth2.Config{
		ClientID: ts.ClientID(), ClientSecret: ts.ClientSecret(), Scopes: []string{"mail"},
		Endpoint: oauth2.Endpoint{AuthURL: ts.AuthURL(), TokenURL: ts.TokenURL(), DeviceAuthURL: ts.DeviceURL(),
			AuthStyle: oauth2.AuthStyleInParams},
	}
}

// TestLoopbackFlow: the test plays the browser. It first sends a redirect with a forged state,
// which is refused while the flow keeps waiting, then follows the authorization URL; the token
// server redirects to the loopback listener with a code, which is exchanged with the PKCE verifier.
func TestLoopbackFlow(t *testing.T) {
	ts := testmail.StartTokenServer(t, testmail.TokenOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	browser := make(chan error, 1)
	tok, err := oauth.Loopback(ctx, flowConfig(ts), oauth.LoopbackOptions{
		Show: func(authURL string) {
			go func() {
				u, err := url.Parse(authURL)
				if err != nil {
					browser <- err
					return
				}
				q := u.Query()
				if q.Get("code_challenge_method") != "S256" || !strings.HasPrefix(q.Get("redirect_uri"), "http://127.0.0.1:") {
					t.Errorf("authorization URL lacks PKCE or a loopback redirect: %s", authURL)
				}
				forged := q.Get("redirect_uri") + "?code=stolen&state=forged"
				resp, err := http.Get(forged)
				if err == nil {
					resp.Body.Close()
					if resp.StatusCode != http.StatusBadRequest {
						t.Errorf("forged state answered %d, want 400", resp.StatusCode)
					}
				}
				resp, err = http.Get(authURL) // follows the 302 to the loopback listener
				if err == nil {
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						t.Errorf("redirect landed with %d", resp.StatusCode)
					}
				}
				browser <- err
			}()
		},
	})
	if err != nil {
		t.Fatalf("Loopback: %v", err)
	}
	if err := <-browser; err != nil {
		t.Fatalf("browser: %v", err)
	}
	if !ts.LiveRefreshToken(tok.RefreshToken) {
		t.Error("the flow did not return a live refresh token")
	}
}

func TestLoopbackRefusesNonLoopbackListen(t *testing.T) {
	ts := testmail.StartTokenServer(t, testmail.TokenOptions{})
	_, err := oauth.Loopback(context.Background(), flowConfig(ts), oauth.LoopbackOptions{Listen: "0.0.0.0:0", Show: func(string) {}})
	if err == nil {
		t.Fatal("listening on 0.0.0.0 was accepted")
	}
}

// TestDeviceFlow: the user code is shown, the user approves it on the token server, and the poll
// (every second, as the server asks) returns the tokens.
func TestDeviceFlow(t *testing.T) {
	ts := testmail.StartTokenServer(t, testmail.TokenOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	oc := flowConfig(ts)
	oc.ClientSecret = "" // a public client, as Microsoft's device flow uses
	tok, err := oauth.Device(ctx, oc, nil, func(da *oauth2.DeviceAuthResponse) {
		if da.UserCode == "" || da.VerificationURI == "" {
			t.Errorf("device response %+v lacks a code or URL", da)
		}
		if !ts.ApproveDevice(da.UserCode) {
			t.Error("unknown user code")
		}
	})
	if err != nil {
		t.Fatalf("Device: %v", err)
	}
	if !ts.LiveRefreshToken(tok.RefreshToken) {
		t.Error("the flow did not return a live refresh token")
	}
}
