package main

import (
	"bytes"
	"context"
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
