package oauth_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailhook/mailhook/internal/testmail"
	"github.com/mailhook/mailhook/oauth"
	"github.com/mailhook/mailhook/store"
	"github.com/mailhook/mailhook/store/sqlite"
	"github.com/mailhook/mailhook/watcher"
)

// waitTimeout bounds every wait in these tests.
const waitTimeout = 20 * time.Second

// eventually polls cond every 5 ms until it holds or waitTimeout passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", waitTimeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// logSink is a goroutine-safe log buffer.
type logSink struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logSink) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logSink) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logSink) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// assertNoSecrets is the log-scanning check that no secret leaks: no token, code or client secret
// the token server issued appears in any log line.
func assertNoSecrets(t *testing.T, ts *testmail.TokenServer, logs string) {
	t.Helper()
	if logs == "" {
		t.Error("no logs captured: the scan would prove nothing")
	}
	for _, s := range ts.Secrets() {
		if strings.Contains(logs, s) {
			t.Errorf("secret %.6s… appears in the logs", s)
		}
	}
}

type env struct {
	ts   *testmail.TokenServer
	logs *logSink
	src  *oauth.Source
}

func newEnv(t *testing.T, tokOpts testmail.TokenOptions, cfg func(*oauth.Config)) *env {
	t.Helper()
	e := &env{ts: testmail.StartTokenServer(t, tokOpts), logs: &logSink{}}
	c := oauth.Config{
		Name: "acct", Provider: oauth.Custom, TokenURL: e.ts.TokenURL(), Scopes: []string{"mail"},
		ClientID: e.ts.ClientID(), ClientSecret: e.ts.ClientSecret(), RefreshToken: e.ts.IssueRefreshToken(),
		StateFile: t.TempDir() + "/oauth/acct.json", Logger: e.logs.logger(),
	}
	if cfg != nil {
		cfg(&c)
	}
	src, err := oauth.NewSource(c)
	if err != nil {
		t.Fatal(err)
	}
	e.src = src
	t.Cleanup(func() { assertNoSecrets(t, e.ts, e.logs.String()) })
	return e
}

func (e *env) check(_, token string) bool {
	_, ok := e.ts.Active(token)
	return ok
}

func dialIMAP(t *testing.T, addr string) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	watchdog := time.AfterFunc(waitTimeout, func() { c.Close() })
	t.Cleanup(func() { watchdog.Stop(); c.Close() })
	return c
}

// TestIMAPLogin drives imapclient.Authenticate with the Authenticator against an imapserver that
// checks tokens with the token server: accepted while live; after the server expired it, refused
// through the error challenge, which invalidates it, so the next login refreshes once and works.
func TestIMAPLogin(t *testing.T) {
	for _, tc := range []struct {
		mech string
		bare bool // refuse with a bare NO (Microsoft 365), no error challenge
	}{{oauth.MechXOAuth2, false}, {oauth.MechXOAuth2, true}, {oauth.MechOAuthBearer, false}} {
		t.Run(tc.mech+map[bool]string{true: "-bare-no"}[tc.bare], func(t *testing.T) {
			e := newEnv(t, testmail.TokenOptions{}, nil)
			srv := testmail.StartOAuthMemServer(t, testmail.OAuthMemOptions{Check: e.check, BareRefusal: tc.bare})
			host, port, _ := net.SplitHostPort(srv.Addr())
			p, _ := strconv.Atoi(port)
			au, err := e.src.Authenticator(tc.mech, srv.User(), host, p)
			if err != nil {
				t.Fatal(err)
			}
			login := func() error {
				sc, err := au.SASL(context.Background())
				if err != nil {
					return err
				}
				return dialIMAP(t, srv.Addr()).Authenticate(sc)
			}
			if err := login(); err != nil {
				t.Fatalf("first login: %v", err)
			}
			e.ts.ExpireAccessTokens() // the server no longer accepts the cached token
			err = login()
			var ie *imap.Error
			if !errors.As(err, &ie) || ie.Type != imap.StatusResponseTypeNo {
				t.Fatalf("login with an expired token: %v, want a tagged NO", err)
			}
			if tc.bare {
				au.AuthFailed() // what the watcher does after a refused login
			}
			if err := login(); err != nil {
				t.Fatalf("login after the refusal: %v", err)
			}
			if n := e.ts.Refreshes(); n != 2 {
				t.Errorf("%d refreshes, want 2 (one at start, one after the refusal)", n)
			}
			at := srv.Attempts()
			if len(at) != 3 || !at[0].OK || at[1].OK || !at[2].OK || at[1].Mech != tc.mech {
				t.Errorf("attempts %+v, want ok, refused, ok with %s", at, tc.mech)
			}
		})
	}
}

// handler collects delivered messages.
type handler struct {
	mu   sync.Mutex
	uids []uint32
}

func (h *handler) Handle(_ context.Context, ev *watcher.Event) ([]store.Job, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.uids = append(h.uids, ev.UID)
	return nil, nil
}

func (h *handler) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.uids)
}

func startWatcher(t *testing.T, e *env, addr, user string, backoff watcher.Backoff) (*watcher.Watcher, *handler) {
	t.Helper()
	au, err := e.src.Authenticator("", user, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	mw, err := st.Mailbox(context.Background(), "acct", "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	h := &handler{}
	w, err := watcher.New(watcher.Config{
		Account: "acct", Mailbox: "INBOX", Addr: addr, Security: watcher.SecurityPlain, Username: user,
		SASL: au.SASL, OnAuthFailure: au.AuthFailed, Start: watcher.StartAll,
		IdleRefresh: time.Minute, CommandTimeout: 10 * time.Second, Backoff: backoff, Logger: e.logs.logger(),
	}, mw, watcher.HandlerFunc(h.Handle))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(waitTimeout):
			t.Error("watcher did not stop")
		}
		st.Close()
	})
	return w, h
}

// TestWatcherRefusedTokenNoTightLoop: a server that refuses every token gets one login attempt
// per backoff.auth_min, each with a token refreshed once, never a tight loop.
// With BareRefusal (Microsoft 365's bare "NO AUTHENTICATE failed.", no challenge) the token is
// dropped through watcher.Config.OnAuthFailure instead of the error challenge.
func TestWatcherRefusedTokenNoTightLoop(t *testing.T) {
	for _, bare := range []bool{false, true} {
		t.Run(map[bool]string{false: "challenge", true: "bare-no"}[bare], func(t *testing.T) {
			testRefusedTokenNoTightLoop(t, bare)
		})
	}
}

func testRefusedTokenNoTightLoop(t *testing.T, bare bool) {
	e := newEnv(t, testmail.TokenOptions{}, nil)
	srv := testmail.StartOAuthMemServer(t, testmail.OAuthMemOptions{Check: func(string, string) bool { return false }, BareRefusal: bare})
	const authMin = 150 * time.Millisecond
	w, _ := startWatcher(t, e, srv.Addr(), srv.User(), watcher.Backoff{Min: time.Millisecond, Max: 2 * time.Millisecond, AuthMin: authMin})
	eventually(t, "four refused logins", func() bool { return len(srv.Attempts()) >= 4 })
	at := srv.Attempts()[:4]
	for i := 1; i < len(at); i++ {
		if gap := at[i].At.Sub(at[i-1].At); gap < authMin {
			t.Errorf("attempt %d came %v after the previous one, want ≥ auth_min %v", i, gap, authMin)
		}
		if at[i].Token == at[i-1].Token {
			t.Errorf("attempt %d reused the refused token", i)
		}
	}
	if n := e.ts.Refreshes(); n < 4 || n > len(srv.Attempts())+1 {
		t.Errorf("%d refreshes for %d attempts, want one per attempt", n, len(srv.Attempts()))
	}
	if r := w.Status().Reason; !strings.Contains(r, "Invalid credentials") && !strings.Contains(r, "AUTHENTICATE failed") {
		t.Errorf("status reason %q does not show the refusal", r)
	}
}

// TestWatcherInvalidGrant: when the refresh token is revoked, the watcher's status reason says
// "re-authorisation needed (invalid_grant)" (what /readyz reports, so an operator knows to re-authorise) and the
// next attempt waits out the token source's hold-off instead of asking again.
func TestWatcherInvalidGrant(t *testing.T) {
	const hold = 400 * time.Millisecond
	e := newEnv(t, testmail.TokenOptions{}, func(c *oauth.Config) { c.HoldMin, c.HoldMax = hold, 4*hold })
	srv := testmail.StartOAuthMemServer(t, testmail.OAuthMemOptions{Check: e.check})
	e.ts.Revoke("")
	w, _ := startWatcher(t, e, srv.Addr(), srv.User(), watcher.Backoff{Min: time.Millisecond, Max: 2 * time.Millisecond, AuthMin: time.Millisecond})
	eventually(t, "status reason re-authorisation needed", func() bool {
		return strings.Contains(w.Status().Reason, "re-authorisation needed (invalid_grant)")
	})
	st := w.Status()
	if st.State != watcher.StateBackoff || st.NextAttempt.Sub(st.Since) < hold-50*time.Millisecond {
		t.Errorf("status %+v: want backoff for about the %v hold-off", st, hold)
	}
	eventually(t, "a second refused refresh", func() bool { return e.ts.Refreshes() >= 2 })
	eventually(t, "a third refused refresh", func() bool { return e.ts.Refreshes() >= 3 })
	// Refreshes 1→2 waited one hold, 2→3 two: with 1 ms backoffs, a loop would have made hundreds.
	if n := e.ts.Refreshes(); n > 4 {
		t.Errorf("%d token requests, want the hold-off to space them", n)
	}
	if len(srv.Attempts()) != 0 {
		t.Errorf("%d logins attempted without a token", len(srv.Attempts()))
	}
}
