package oauth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailhook/mailhook/internal/testmail"
)

// clock is an adjustable time source for Config.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// noSecrets fails the test if any secret the token server issued appears in logs:
// no log line may carry a token, an authorisation code or a client secret.
func noSecrets(t *testing.T, ts *testmail.TokenServer, logs string) {
	t.Helper()
	for _, s := range ts.Secrets() {
		if strings.Contains(logs, s) {
			t.Errorf("a secret (%.6s…) appears in the logs:\n%s", s, logs)
		}
	}
}

type fixture struct {
	ts   *testmail.TokenServer
	clk  *clock
	logs *syncBuffer
	cfg  Config
}

func newFixture(t *testing.T, opts testmail.TokenOptions) *fixture {
	t.Helper()
	f := &fixture{ts: testmail.StartTokenServer(t, opts), clk: &clock{t: time.Now()}, logs: &syncBuffer{}}
	f.cfg = Config{
		Name: "acct", Provider: Custom, TokenURL: f.ts.TokenURL(), Scopes: []string{"mail"},
		ClientID: f.ts.ClientID(), ClientSecret: f.ts.ClientSecret(),
		RefreshToken: f.ts.IssueRefreshToken(),
		StateFile:    filepath.Join(t.TempDir(), "oauth", "acct.json"),
		Logger:       slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:          f.clk.Now,
		HoldMin:      time.Minute, HoldMax: 4 * time.Minute,
	}
	t.Cleanup(func() { noSecrets(t, f.ts, f.logs.String()) })
	return f
}

func (f *fixture) source(t *testing.T) *Source {
	t.Helper()
	s, err := NewSource(f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestRefreshMargin: a cached token is used while more than 5 minutes of validity remain and
// refreshed before use once fewer do.
func TestRefreshMargin(t *testing.T) {
	for _, tc := range []struct {
		elapsed     time.Duration // since the token was issued (lifetime 10m)
		wantRefresh bool
	}{
		{0, false},
		{4*time.Minute + 50*time.Second, false}, // 5m10s left
		{5*time.Minute + 10*time.Second, true},  // 4m50s left
		{11 * time.Minute, true},                // expired
	} {
		t.Run(tc.elapsed.String(), func(t *testing.T) {
			f := newFixture(t, testmail.TokenOptions{Lifetime: 10 * time.Minute})
			s := f.source(t)
			ctx := context.Background()
			first, err := s.Token(ctx)
			if err != nil {
				t.Fatal(err)
			}
			f.clk.Add(tc.elapsed)
			second, err := s.Token(ctx)
			if err != nil {
				t.Fatal(err)
			}
			refreshed := first.AccessToken != second.AccessToken
			if refreshed != tc.wantRefresh || f.ts.Refreshes() != 1+btoi(tc.wantRefresh) {
				t.Errorf("after %v: refreshed=%v (%d requests), want %v", tc.elapsed, refreshed, f.ts.Refreshes(), tc.wantRefresh)
			}
			if _, ok := f.ts.Active(second.AccessToken); !ok {
				t.Error("the returned token is not live")
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestConcurrentCallersShareOneRefresh: many sessions of one account cause one token request.
func TestConcurrentCallersShareOneRefresh(t *testing.T) {
	f := newFixture(t, testmail.TokenOptions{})
	s := f.source(t)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, err := s.Token(context.Background()); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := f.ts.Refreshes(); n != 1 {
		t.Errorf("%d refresh requests, want 1", n)
	}
}

// TestRotationPersisted: a rotated refresh token is written to the state file (0600, in a 0700
// folder) and preferred by the next Source, while the server has retired the configured one.
func TestRotationPersisted(t *testing.T) {
	f := newFixture(t, testmail.TokenOptions{Rotate: true})
	s := f.source(t)
	if _, err := s.Token(context.Background()); err != nil {
		t.Fatal(err)
	}
	if f.ts.LiveRefreshToken(f.cfg.RefreshToken) {
		t.Fatal("the server did not retire the configured refresh token")
	}
	fi, err := os.Stat(f.cfg.StateFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("state file mode %v, want 0600", fi.Mode().Perm())
	}
	if di, err := os.Stat(filepath.Dir(f.cfg.StateFile)); err != nil || di.Mode().Perm() != 0o700 {
		t.Errorf("state folder: %v %v, want mode 0700", di.Mode().Perm(), err)
	}
	var st stateFile
	b, _ := os.ReadFile(f.cfg.StateFile)
	if err := json.Unmarshal(b, &st); err != nil || !f.ts.LiveRefreshToken(st.RefreshToken) {
		t.Fatalf("state file does not hold the live refresh token (err %v)", err)
	}
	if entries, _ := os.ReadDir(filepath.Dir(f.cfg.StateFile)); len(entries) != 1 {
		t.Errorf("state folder holds %d entries, want just the state file", len(entries))
	}

	// A restart: the configured token is dead, the persisted one works.
	s2 := f.source(t)
	f.ts.ExpireAccessTokens()
	tok, err := s2.Token(context.Background())
	if err != nil {
		t.Fatalf("restarted source: %v", err)
	}
	if _, ok := f.ts.Active(tok.AccessToken); !ok {
		t.Error("restarted source returned a dead token")
	}

	// The operator configures a new refresh token: the persisted rotation of the old one is ignored.
	f.cfg.RefreshToken = f.ts.IssueRefreshToken()
	s3 := f.source(t)
	if s3.refresh != f.cfg.RefreshToken {
		t.Error("a persisted token superseding another configured token was used")
	}
}

// TestInvalidGrant: a refused refresh is a GrantError matching ErrReauthorize, saying
// "re-authorisation needed (invalid_grant)"; the Source then holds off the token endpoint,
// doubling the hold-off up to HoldMax.
func TestInvalidGrant(t *testing.T) {
	f := newFixture(t, testmail.TokenOptions{})
	f.ts.Revoke("")
	s := f.source(t)
	ctx := context.Background()

	_, err := s.Token(ctx)
	var ge *GrantError
	if !errors.As(err, &ge) || !errors.Is(err, ErrReauthorize) {
		t.Fatalf("Token: %v, want a GrantError", err)
	}
	if !strings.Contains(err.Error(), "re-authorisation needed (invalid_grant)") {
		t.Errorf("error %q does not say re-authorisation needed (invalid_grant)", err)
	}
	if st := s.Status(); !st.Reauthorize || !strings.Contains(st.Reason, "invalid_grant") {
		t.Errorf("Status %+v, want Reauthorize with the reason", st)
	}
	if !ge.AuthFailure() || ge.RetryAfter() <= 0 {
		t.Errorf("AuthFailure %v RetryAfter %v", ge.AuthFailure(), ge.RetryAfter())
	}

	wantRequests := 1
	for i, hold := range []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, 4 * time.Minute} {
		// Within the hold-off: no request.
		for range 3 {
			if _, err := s.Token(ctx); !errors.Is(err, ErrReauthorize) {
				t.Fatalf("during hold-off %d: %v", i, err)
			}
		}
		f.clk.Add(hold - time.Second)
		if _, err := s.Token(ctx); !errors.Is(err, ErrReauthorize) {
			t.Fatalf("just before the end of hold-off %d: %v", i, err)
		}
		if n := f.ts.Refreshes(); n != wantRequests {
			t.Fatalf("hold-off %d (%v): %d token requests, want %d", i, hold, n, wantRequests)
		}
		f.clk.Add(time.Second)
		_, _ = s.Token(ctx) // one request when the hold-off ends
		wantRequests++
		if n := f.ts.Refreshes(); n != wantRequests {
			t.Fatalf("after hold-off %d: %d token requests, want %d", i, n, wantRequests)
		}
	}
}

// TestRefreshTokenFileRecovers: after invalid_grant, a new token in refresh_token_file is used at
// the next call, without waiting for the hold-off.
func TestRefreshTokenFileRecovers(t *testing.T) {
	f := newFixture(t, testmail.TokenOptions{})
	file := filepath.Join(t.TempDir(), "refresh")
	if err := os.WriteFile(file, []byte(f.cfg.RefreshToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f.cfg.RefreshTokenFile = file
	f.ts.Revoke("")
	s := f.source(t)
	if _, err := s.Token(context.Background()); !errors.Is(err, ErrReauthorize) {
		t.Fatalf("Token: %v, want ErrReauthorize", err)
	}
	if err := WriteFileAtomic(file, []byte(f.ts.IssueRefreshToken()+"\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Token(context.Background()); err != nil {
		t.Fatalf("after re-authorising: %v", err)
	}
	if st := s.Status(); st.Reauthorize {
		t.Errorf("Status still says re-authorise: %+v", st)
	}
}

// TestTransientErrorsAreNotGrantErrors: a 5xx or an unreachable endpoint is retried at the next
// call, without a hold-off, and the error carries no response body.
func TestTransientErrorsAreNotGrantErrors(t *testing.T) {
	var fail sync.Map
	fail.Store("on", true)
	ts := testmail.StartTokenServer(t, testmail.TokenOptions{})
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if on, _ := fail.Load("on"); on.(bool) {
			http.Error(w, "upstream exploded; body that must not leak", http.StatusBadGateway)
			return
		}
		req, _ := http.NewRequest(r.Method, ts.TokenURL(), r.Body)
		req.Header = r.Header
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
		w.WriteHeader(resp.StatusCode)
		_, _ = bytes.NewBuffer(nil).ReadFrom(resp.Body)
	}))
	defer proxy.Close()
	s, err := NewSource(Config{Provider: Custom, TokenURL: proxy.URL, ClientID: ts.ClientID(), ClientSecret: ts.ClientSecret(),
		RefreshToken: ts.IssueRefreshToken()})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Token(context.Background())
	if err == nil || errors.Is(err, ErrReauthorize) || strings.Contains(err.Error(), "must not leak") {
		t.Fatalf("Token: %v, want a transient error without the body", err)
	}
	if s.Status().Reauthorize {
		t.Error("a 502 marked the source as needing re-authorisation")
	}
}

// TestInvalidate drops only the token the server refused.
func TestInvalidate(t *testing.T) {
	f := newFixture(t, testmail.TokenOptions{})
	s := f.source(t)
	ctx := context.Background()
	t1, _ := s.Token(ctx)
	s.Invalidate("some-other-token")
	if t2, _ := s.Token(ctx); t2.AccessToken != t1.AccessToken {
		t.Fatal("Invalidate of another token dropped the cached one")
	}
	s.Invalidate(t1.AccessToken)
	t3, err := s.Token(ctx)
	if err != nil || t3.AccessToken == t1.AccessToken || f.ts.Refreshes() != 2 {
		t.Fatalf("after Invalidate: %v, same=%v, %d requests", err, t3.AccessToken == t1.AccessToken, f.ts.Refreshes())
	}
}

func TestNewSourceChecksConfig(t *testing.T) {
	for _, cfg := range []Config{
		{Provider: "yahoo", ClientID: "c", RefreshToken: "r"},
		{Provider: Custom, ClientID: "c", RefreshToken: "r"},
		{Provider: Google, RefreshToken: "r"},
		{Provider: Google, ClientID: "c"},
		{Provider: Custom, TokenURL: "https://user:pw@example.com/token", ClientID: "c", RefreshToken: "r"},
	} {
		if _, err := NewSource(cfg); err == nil {
			t.Errorf("NewSource(%+v) accepted", cfg)
		}
	}
}

// memRotation is a Rotation in memory: what a store shared by replicas does, for one process.
type memRotation struct {
	mu    sync.Mutex
	calls int
	vals  map[string]string
}

func (m *memRotation) RefreshWith(_ context.Context, key string, refresh func(string, bool) (string, error)) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	v, ok := m.vals[key]
	next, err := refresh(v, ok)
	if err == nil && next != "" {
		m.vals[key] = next
	}
	return err
}

// TestSharedRotation: replicas sharing one refresh token through a Rotation each refresh with the
// newest rotation any of them stored, one at a time, so the server never sees a retired token
// (which, with rotation, would be invalid_grant); the operator's new token still wins.
func TestSharedRotation(t *testing.T) {
	f := newFixture(t, testmail.TokenOptions{Rotate: true})
	shared := &memRotation{vals: map[string]string{}}
	f.cfg.Shared = shared
	var sources []*Source
	for i := range 3 {
		cfg := f.cfg
		cfg.StateFile = filepath.Join(t.TempDir(), fmt.Sprintf("replica%d.json", i))
		s, err := NewSource(cfg)
		if err != nil {
			t.Fatal(err)
		}
		sources = append(sources, s)
	}
	for round := range 4 {
		f.ts.ExpireAccessTokens()
		for _, s := range sources { // each replica's access token is due for a refresh
			s.mu.Lock()
			s.tok = nil
			s.mu.Unlock()
		}
		var wg sync.WaitGroup
		for i, s := range sources {
			wg.Go(func() {
				tok, err := s.Token(context.Background())
				if err != nil {
					t.Errorf("round %d replica %d: %v", round, i, err)
					return
				}
				if _, ok := f.ts.Active(tok.AccessToken); !ok {
					t.Errorf("round %d replica %d: a dead access token", round, i)
				}
			})
		}
		wg.Wait()
	}
	var st stateFile
	if err := json.Unmarshal([]byte(shared.vals["acct"]), &st); err != nil || !f.ts.LiveRefreshToken(st.RefreshToken) {
		t.Fatalf("the shared rotation is not the live refresh token (err %v)", err)
	}
	if shared.calls != 12 {
		t.Errorf("%d refreshes through the shared lock, want 12", shared.calls)
	}

	// The operator configures a new refresh token: the stored rotation of the old one is ignored.
	f.cfg.RefreshToken = f.ts.IssueRefreshToken()
	s := f.source(t)
	if _, err := s.Token(context.Background()); err != nil {
		t.Fatalf("with a newly configured token: %v", err)
	}
	if err := json.Unmarshal([]byte(shared.vals["acct"]), &st); err != nil || st.Supersedes != fingerprint(f.cfg.RefreshToken) {
		t.Errorf("the shared rotation does not supersede the newly configured token")
	}
}
