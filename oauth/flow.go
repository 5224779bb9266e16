package oauth

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"html"
	"net"
	"net/http"
	"time"

	"golang.org/x/oauth2"

	"github.com/mailhook/mailhook/internal/localhost"
)

// AuthCodeOptions returns the extra authorization-request parameters a provider needs to issue a
// refresh token: Google wants access_type=offline, and prompt=consent so a second authorisation
// still returns one. Microsoft issues one for the offline_access scope.
func AuthCodeOptions(provider string) []oauth2.AuthCodeOption {
	if provider == Google {
		return []oauth2.AuthCodeOption{oauth2.AccessTypeOffline, oauth2.SetAuthURLParam("prompt", "consent")}
	}
	return nil
}

// LoopbackOptions configures Loopback.
type LoopbackOptions struct {
	// Listen is the address to receive the redirect on; "" means 127.0.0.1 on a free port. Give a
	// fixed port to forward it from a workstation (ssh -L PORT:127.0.0.1:PORT host).
	Listen string
	// Show is given the authorization URL for the user to open in a browser. Required.
	Show func(authURL string)
	// HTTPClient makes the token request (nil: a client with DefaultHTTPTimeout).
	HTTPClient *http.Client
	// Options are added to the authorization request (see AuthCodeOptions).
	Options []oauth2.AuthCodeOption
}

// Loopback runs the authorization-code flow for native apps (RFC 8252): it listens on a loopback
// address, shows the authorization URL with a PKCE S256 challenge (RFC 7636) and a random state,
// waits for the browser's redirect carrying the code, and exchanges the code for tokens. A
// redirect with the wrong state is refused and the wait goes on (RFC 6749 §10.12). oc is not
// modified; its RedirectURL is replaced by the loopback address.
func Loopback(ctx context.Context, oc *oauth2.Config, opts LoopbackOptions) (*oauth2.Token, error) {
	if opts.Show == nil {
		return nil, errors.New("loopback flow: no way to show the URL")
	}
	listen := opts.Listen
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("loopback flow: listen address %q: %w", listen, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("loopback flow: listen address %q is not a loopback IP (RFC 8252 §8.3)", listen)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("loopback flow: %w", err)
	}
	defer ln.Close()

	c := *oc
	c.RedirectURL = "http://" + ln.Addr().String() + "/"
	state, err := randomString()
	if err != nil {
		return nil, err
	}
	verifier := oauth2.GenerateVerifier()

	type result struct {
		code string
		err  error
	}
	done := make(chan result, 1)
	finish := func(r result) {
		select {
		case done <- r:
		default:
		}
	}
	srv := &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			q := r.URL.Query()
			if r.URL.Path != "/" || (q.Get("state") == "" && q.Get("code") == "" && q.Get("error") == "") {
				http.NotFound(w, r) // favicon and the like
				return
			}
			if q.Get("state") != state {
				http.Error(w, "mailhook: state mismatch; start again from the URL mailhook printed", http.StatusBadRequest)
				return
			}
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			if e := q.Get("error"); e != "" {
				w.WriteHeader(http.StatusForbidden)
				fmt.Fprintf(w, "<p>mailhook: authorisation failed: %s</p>", html.EscapeString(e))
				finish(result{err: fmt.Errorf("authorisation refused: %s %s", e, sanitise(q.Get("error_description")))})
				return
			}
			if q.Get("code") == "" {
				http.Error(w, "mailhook: no code in the redirect", http.StatusBadRequest)
				return
			}
			fmt.Fprint(w, "<p>mailhook is authorised. You can close this tab.</p>")
			finish(result{code: q.Get("code")})
		}),
	}
	go srv.Serve(ln) //nolint:errcheck // ends with Close below
	defer srv.Close()

	opts.Show(c.AuthCodeURL(state, append([]oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier)}, opts.Options...)...))

	var res result
	select {
	case res = <-done:
	case <-ctx.Done():
		return nil, fmt.Errorf("loopback flow: waiting for the browser: %w", ctx.Err())
	}
	if res.err != nil {
		return nil, fmt.Errorf("loopback flow: %w", res.err)
	}
	tok, err := c.Exchange(withClient(ctx, opts.HTTPClient), res.code, oauth2.VerifierOption(verifier))
	if err != nil {
		return nil, fmt.Errorf("loopback flow: exchange the code: %w", describe(err))
	}
	return checkRefresh(tok)
}

// Device runs the device authorization grant (RFC 8628): it asks for a user code, gives it to
// show (with the verification URL) and polls the token endpoint at the interval the server asks
// for until the user approves, refuses or the code expires. It needs no browser on this host.
func Device(ctx context.Context, oc *oauth2.Config, httpClient *http.Client, show func(*oauth2.DeviceAuthResponse)) (*oauth2.Token, error) {
	ctx = withClient(ctx, httpClient)
	da, err := oc.DeviceAuth(ctx)
	if err != nil {
		return nil, fmt.Errorf("device flow: request a code: %w", describe(err))
	}
	show(da)
	tok, err := oc.DeviceAccessToken(ctx, da)
	if err != nil {
		return nil, fmt.Errorf("device flow: %w", describe(err))
	}
	return checkRefresh(tok)
}

// defaultClient is the HTTP client of token requests when none is configured: Go's default
// transport, except that a localhost name (plain http is allowed to it) dials the loopback and
// never asks DNS.
func defaultClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = localhost.Dial((&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext)
	return &http.Client{Timeout: DefaultHTTPTimeout, Transport: tr}
}

func withClient(ctx context.Context, c *http.Client) context.Context {
	if c == nil {
		c = defaultClient()
	}
	return context.WithValue(ctx, oauth2.HTTPClient, c)
}

func checkRefresh(tok *oauth2.Token) (*oauth2.Token, error) {
	if tok.RefreshToken == "" {
		return nil, errors.New("the provider issued no refresh token: Google needs access_type=offline and " +
			"prompt=consent, Microsoft the offline_access scope")
	}
	return tok, nil
}

// describe shortens a token endpoint error to its OAuth code and description; RetrieveError
// otherwise prints the whole response body.
func describe(err error) error {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		return redactURLError(err)
	}
	status := 0
	if re.Response != nil {
		status = re.Response.StatusCode
	}
	if re.ErrorCode == "" {
		return fmt.Errorf("token endpoint answered HTTP %d", status)
	}
	if d := sanitise(re.ErrorDescription); d != "" {
		return fmt.Errorf("token endpoint refused (%s): %s", re.ErrorCode, d)
	}
	return fmt.Errorf("token endpoint refused (%s)", re.ErrorCode)
}

// randomString returns 32 random bytes, base64url-encoded.
func randomString() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random state: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}
