package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailhook/mailhook/internal/testmail"
	"github.com/mailhook/mailhook/oauth"
)

// oauthYAML is a minimal configuration whose account signs in with oauth2; %OAUTH% is replaced by
// the oauth2 section's lines (indented under imap:).
const oauthYAML = `
state_dir: STATE
accounts:
  - name: work
    imap:
      host: HOST
      port: PORT
      security: plain
      username: demo@example.test
      oauth2:
%OAUTH%
webhooks:
  - name: hook
    url: https://hooks.example.com/mail
    secret: ` + cfgSecret + `
rules:
  - name: all
    when: "true"
    actions:
      - webhook: hook
`

func oauthConfig(t *testing.T, oauthLines, host string, port int) string {
	t.Helper()
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimSpace(oauthLines), "\n") {
		b.WriteString("        " + strings.TrimSpace(l) + "\n")
	}
	y := strings.Replace(oauthYAML, "%OAUTH%\n", b.String(), 1)
	y = strings.NewReplacer("STATE", filepath.Join(t.TempDir(), "state"), "HOST", host, "PORT", strconv.Itoa(port)).Replace(y)
	return y
}

func TestOAuth2ConfigLoads(t *testing.T) {
	dir := t.TempDir()
	secretFile, tokenFile := filepath.Join(dir, "secret"), filepath.Join(dir, "refresh")
	os.WriteFile(secretFile, []byte("the-client-secret\n"), 0o600)
	os.WriteFile(tokenFile, []byte("the-refresh-token\n"), 0o600)
	y := oauthConfig(t, `
provider: google
client_id: ${CLIENT_ID}
client_secret_file: `+secretFile+`
refresh_token_file: `+tokenFile, "imap.gmail.com", 993)
	y = strings.Replace(y, "security: plain", "security: tls", 1)
	cfg, _, err := cfgLoad(t, y, map[string]string{"CLIENT_ID": "123.apps.googleusercontent.com"})
	if err != nil {
		t.Fatal(err)
	}
	o := cfg.Accounts[0].IMAP.OAuth2
	if o.ClientID != "123.apps.googleusercontent.com" || o.ClientSecret != "the-client-secret" ||
		o.RefreshToken != "the-refresh-token" || o.Mechanism != MechanismXOAuth2 ||
		len(o.Scopes) != 1 || o.Scopes[0] != oauth.ScopeGoogleMail {
		t.Errorf("oauth2 section loaded as %+v", o)
	}
}

// TestOAuth2ConfigErrors: every problem names its field, and none repeats a secret.
func TestOAuth2ConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name, lines, extra, field string
	}{
		{"password and oauth2", "provider: google\nclient_id: c\nrefresh_token: rt-secret", "password: pw-secret", "imap.password"},
		{"unknown provider", "provider: yahoo\nclient_id: c\nrefresh_token: rt-secret", "", "imap.oauth2.provider"},
		{"custom without token_url", "provider: custom\nclient_id: c\nrefresh_token: rt-secret\nscopes: [mail]", "", "imap.oauth2.token_url"},
		{"custom without scopes", "provider: custom\nclient_id: c\nrefresh_token: rt-secret\ntoken_url: https://id.example.com/token", "", "imap.oauth2.scopes"},
		{"token_url for google", "provider: google\nclient_id: c\nrefresh_token: rt-secret\ntoken_url: https://id.example.com/token", "", "imap.oauth2.token_url"},
		{"plain http token_url", "provider: custom\nclient_id: c\nrefresh_token: rt-secret\nscopes: [mail]\ntoken_url: http://id.example.com/token", "", "imap.oauth2.token_url"},
		{"tenant for google", "provider: google\nclient_id: c\nrefresh_token: rt-secret\ntenant: contoso.com", "", "imap.oauth2.tenant"},
		{"no client_id", "provider: microsoft\nrefresh_token: rt-secret", "", "imap.oauth2.client_id"},
		{"no refresh token", "provider: microsoft\nclient_id: c", "", "imap.oauth2.refresh_token"},
		{"bad mechanism", "provider: google\nclient_id: c\nrefresh_token: rt-secret\nmechanism: plain", "", "imap.oauth2.mechanism"},
		{"secret twice", "provider: google\nclient_id: c\nrefresh_token: rt-secret\nclient_secret: cs-secret\nclient_secret_file: /nonexistent", "", "imap.oauth2.client_secret_file"},
		{"unknown key", "provider: google\nclient_id: c\nrefresh_token: rt-secret\nrefresh: x", "", "imap.oauth2.refresh"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			y := oauthConfig(t, tc.lines, "127.0.0.1", 143)
			if tc.extra != "" {
				y = strings.Replace(y, "      oauth2:\n", "      "+tc.extra+"\n      oauth2:\n", 1)
			}
			_, _, err := cfgLoad(t, y, nil)
			if err == nil {
				t.Fatal("loaded")
			}
			var fe *FieldError
			found := false
			for _, e := range flattenErrs(err) {
				if errors.As(e, &fe) && strings.HasSuffix(fe.Field, tc.field) {
					found = true
				}
			}
			if !found {
				t.Errorf("error %q does not name %s", err, tc.field)
			}
			for _, s := range []string{"rt-secret", "pw-secret", "cs-secret"} {
				if strings.Contains(err.Error(), s) {
					t.Errorf("error repeats a secret: %q", err)
				}
			}
		})
	}
}

func flattenErrs(err error) []error {
	if u, ok := err.(interface{ Unwrap() []error }); ok {
		return u.Unwrap()
	}
	return []error{err}
}

// TestOAuth2Wiring: the watcher configuration of an oauth2 account signs in with XOAUTH2 through
// a token source persisting rotations under state_dir/oauth/, and an identical smtp.oauth2
// section shares that source.
func TestOAuth2Wiring(t *testing.T) {
	ts := testmail.StartTokenServer(t, testmail.TokenOptions{Rotate: true})
	srv := testmail.StartOAuthMemServer(t, testmail.OAuthMemOptions{Check: func(_, tok string) bool {
		_, ok := ts.Active(tok)
		return ok
	}})
	host, port, _ := net.SplitHostPort(srv.Addr())
	p, _ := strconv.Atoi(port)
	lines := "provider: custom\nclient_id: " + ts.ClientID() + "\nclient_secret: " + ts.ClientSecret() +
		"\nrefresh_token: " + ts.IssueRefreshToken() + "\ntoken_url: " + ts.TokenURL() + "\nscopes: [mail]"
	y := oauthConfig(t, lines, host, p)
	// The same section for SMTP, through a YAML anchor.
	y = strings.Replace(y, "      oauth2:\n", "      oauth2: &oauth\n", 1)
	y = strings.Replace(y, "webhooks:", "    smtp:\n      host: 127.0.0.1\n      security: plain\n      username: demo@example.test\n      from: demo@example.test\n      oauth2: *oauth\nwebhooks:", 1)
	var stderr bytes.Buffer
	l, code := load(cfgWrite(t, y), cfgEnv(nil), &stderr)
	if code != exitOK {
		t.Fatalf("load: %s", stderr.String())
	}
	a := l.cfg.Accounts[0]
	wc, err := watcherConfig(l, a, "INBOX", nil)
	if err != nil {
		t.Fatal(err)
	}
	if wc.SASL == nil || wc.OnAuthFailure == nil || wc.Password != "" {
		t.Fatal("watcher config does not use oauth2")
	}
	sc, err := wc.SASL(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	c, err := imapclient.DialInsecure(srv.Addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Authenticate(sc); err != nil {
		t.Fatalf("authenticate: %v", err)
	}
	imapSrc, _ := l.tokenSource(a, false, nil)
	smtpSrc, _ := l.tokenSource(a, true, nil)
	if imapSrc != smtpSrc {
		t.Error("identical imap and smtp oauth2 sections got separate token sources")
	}
	if newClient, _, err := l.smtpSASL(a, nil); err != nil || newClient == nil {
		t.Errorf("smtpSASL: %v", err)
	}
	fi, err := os.Stat(filepath.Join(l.cfg.StateDir, "oauth", "work.json"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("rotated refresh token not persisted in state_dir/oauth/work.json with mode 0600: %v", err)
	}
}

// browser reads what `mailhook auth` prints and acts as the user: it opens the authorization URL
// (loopback flow) or approves the user code (device flow).
type browser struct {
	t  *testing.T
	ts *testmail.TokenServer

	mu   sync.Mutex
	buf  bytes.Buffer
	done bool
	err  chan error
}

var (
	authURLPattern  = regexp.MustCompile(`http://127\.0\.0\.1:\d+/authorize\?\S+`)
	userCodePattern = regexp.MustCompile(`enter the code (\S+)`)
)

func (b *browser) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	if b.done {
		return len(p), nil
	}
	if u := authURLPattern.FindString(b.buf.String()); u != "" {
		b.done = true
		go func() {
			resp, err := http.Get(u)
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			b.err <- err
		}()
	}
	if m := userCodePattern.FindStringSubmatch(b.buf.String()); m != nil {
		b.done = true
		if !b.ts.ApproveDevice(m[1]) {
			b.t.Errorf("unknown user code %q", m[1])
		}
		b.err <- nil
	}
	return len(p), nil
}

func (b *browser) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestAuthVerb runs `mailhook auth` against the fake token server with both flows: the refresh
// token lands in --out with mode 0600 and is never printed.
func TestAuthVerb(t *testing.T) {
	for _, tc := range []struct {
		name string
		args func(ts *testmail.TokenServer) []string
	}{
		{"loopback", func(ts *testmail.TokenServer) []string {
			return []string{"custom", "--client-id", ts.ClientID(), "--client-secret", ts.ClientSecret(),
				"--auth-url", ts.AuthURL(), "--token-url", ts.TokenURL(), "--scope", "mail"}
		}},
		{"device", func(ts *testmail.TokenServer) []string {
			return []string{"microsoft", "--client-id", ts.ClientID(), "--token-url", ts.TokenURL(), "--device-url", ts.DeviceURL()}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := testmail.StartTokenServer(t, testmail.TokenOptions{})
			out := filepath.Join(t.TempDir(), "secrets", "refresh")
			b := &browser{t: t, ts: ts, err: make(chan error, 1)}
			var stderr bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			args := append([]string{"auth"}, tc.args(ts)...)
			args = append(args, "--out", out)
			if code := cli(ctx, args, b, &stderr); code != exitOK {
				t.Fatalf("exit %d: %s\n%s", code, stderr.String(), b.String())
			}
			if err := <-b.err; err != nil {
				t.Fatalf("browser: %v", err)
			}
			data, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			rt := strings.TrimSpace(string(data))
			if !ts.LiveRefreshToken(rt) {
				t.Errorf("--out holds %d bytes that are not a live refresh token", len(rt))
			}
			if fi, _ := os.Stat(out); fi.Mode().Perm() != 0o600 {
				t.Errorf("--out mode %v, want 0600", fi.Mode().Perm())
			}
			for _, s := range ts.Secrets() {
				if strings.Contains(b.String()+stderr.String(), s) {
					t.Errorf("a secret (%.6s…) was printed:\n%s%s", s, b.String(), stderr.String())
				}
			}
		})
	}
}

func TestAuthVerbUsage(t *testing.T) {
	for _, args := range [][]string{
		{"auth"},
		{"auth", "yahoo", "--client-id", "c", "--out", "f"},
		{"auth", "google", "--out", "f"},
		{"auth", "google", "--client-id", "c"},
		{"auth", "custom", "--client-id", "c", "--out", "f", "--token-url", "https://x.example/token"},
	} {
		var stdout, stderr bytes.Buffer
		if code := cli(context.Background(), args, &stdout, &stderr); code != exitConfig {
			t.Errorf("%q: exit %d, want %d", args, code, exitConfig)
		}
	}
}
