package oauth

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unicode"

	"golang.org/x/oauth2"
)

// RefreshMargin is how much validity an access token must have left to be used: with less, it
// is refreshed first. A login takes seconds, and an IMAP server checks the
// token only at login, so five minutes is ample.
const RefreshMargin = 5 * time.Minute

// Rotation is where processes sharing a refresh token keep its newest rotation. RefreshWith
// locks key's stored value across every process, calls refresh with it ("" and false when none is
// stored yet), stores what refresh returns (unless empty or an error) and then unlocks.
type Rotation interface {
	RefreshWith(ctx context.Context, key string, refresh func(stored string, ok bool) (next string, err error)) error
}

// Defaults of Config.
const (
	DefaultHoldMin     = time.Minute      // first hold-off after a refused refresh
	DefaultHoldMax     = time.Hour        // the hold-off doubles up to this
	DefaultHTTPTimeout = 30 * time.Second // per token request
)

// Config configures a Source.
type Config struct {
	// Name identifies the token in logs and errors (the account name); never a secret.
	Name string

	Provider string   // Google, Microsoft or Custom
	Tenant   string   // Microsoft Entra tenant; "" = "common"
	TokenURL string   // required for Custom; replaces a known provider's token URL when set
	Scopes   []string // sent on interactive flows only; a refresh keeps the granted scopes

	ClientID     string
	ClientSecret string // "" for public clients (Microsoft device flow)

	// RefreshToken is the configured refresh token. RefreshTokenFile, when set, is the file it was
	// read from: after a refused refresh the Source reads it again before each attempt, so writing
	// a new token there (mailhook auth --out FILE) recovers without a restart.
	RefreshToken     string
	RefreshTokenFile string

	// StateFile is where a rotated refresh token is persisted (written atomically, mode 0600, in a
	// 0700 folder); "" keeps rotations in memory only. A persisted token is preferred over
	// RefreshToken for as long as RefreshToken stays the one it replaced.
	StateFile string
	// Shared, when set, keeps the rotated refresh token where every process using this token sees
	// it (a store shared by replicas, under SharedKey, or Name when empty) and runs one refresh at
	// a time across them: two processes rotating one refresh token at once can get it revoked.
	Shared    Rotation
	SharedKey string

	HTTPClient *http.Client     // nil: a client with DefaultHTTPTimeout
	Logger     *slog.Logger     // nil discards
	Now        func() time.Time // nil: time.Now (tests shift it)
	// HoldMin and HoldMax bound the hold-off after a refused refresh (defaults 1m and 1h).
	HoldMin, HoldMax time.Duration
}

// ErrReauthorize is matched (errors.Is) by every GrantError: the refresh token or the client was
// refused, and only a person can fix it.
var ErrReauthorize = errors.New("re-authorisation needed")

// GrantError is a refresh the authorization server refused for good (RFC 6749 §5.2): invalid_grant
// (the refresh token expired, was revoked, or the password changed), or a client error such as
// invalid_client. Retrying does not help; the Source holds off until RetryAt.
type GrantError struct {
	Name        string    // Config.Name
	Code        string    // the OAuth error code, e.g. "invalid_grant"
	Description string    // the server's error_description, sanitised
	RetryAt     time.Time // the Source will not ask the token endpoint again before this
}

func (e *GrantError) Error() string {
	var s string
	if e.Code == "invalid_grant" {
		s = "oauth2: re-authorisation needed (invalid_grant)"
	} else {
		s = "oauth2: client or grant refused (" + e.Code + "); check client_id, client_secret and scopes, then re-authorise"
	}
	if e.Description != "" {
		s += ": " + e.Description
	}
	return s
}

// Is makes errors.Is(err, ErrReauthorize) true.
func (e *GrantError) Is(target error) bool { return target == ErrReauthorize }

// AuthFailure marks the error as an authentication failure, so a reconnect loop waits its
// authentication backoff (watcher: Backoff.AuthMin).
func (e *GrantError) AuthFailure() bool { return true }

// RetryAfter is how long to wait before trying again: the Source answers with this same error
// until then, without asking the token endpoint.
func (e *GrantError) RetryAfter() time.Duration { return max(time.Until(e.RetryAt), 0) }

// permanentCodes are token-endpoint error codes (RFC 6749 §5.2) that a retry cannot fix.
var permanentCodes = map[string]bool{
	"invalid_grant": true, "invalid_client": true, "unauthorized_client": true,
	"unsupported_grant_type": true, "invalid_scope": true,
}

// Source returns access tokens for one OAuth client and refresh token, refreshing them before
// they get close to expiry. It is safe for concurrent use; refreshes are serialised, so any number
// of sessions of one account cause one token request.
type Source struct {
	cfg    Config
	oc     *oauth2.Config
	client *http.Client
	log    *slog.Logger
	now    func() time.Time

	sem chan struct{} // held while refreshing: one token request at a time

	mu         sync.Mutex
	configured string        // the configured refresh token (RefreshToken, or the file's newer content)
	refresh    string        // the refresh token in use: configured or a rotation of it
	tok        *oauth2.Token // cached access token; nil until the first refresh or after Invalidate
	refused    *GrantError   // last permanent refusal, until a refresh succeeds
	hold       time.Duration // current hold-off length
	refreshes  int
}

// stateFile is the JSON persisted in Config.StateFile.
type stateFile struct {
	// RefreshToken is the newest refresh token the server issued.
	RefreshToken string `json:"refresh_token"`
	// Supersedes is the SHA-256 (hex) of the configured refresh token it replaced: when the
	// configuration names another token (the operator re-authorised), the file is stale.
	Supersedes string    `json:"supersedes_sha256"`
	Updated    time.Time `json:"updated"`
}

// NewSource checks cfg and returns a Source. It reads Config.StateFile but makes no request.
func NewSource(cfg Config) (*Source, error) {
	ep, err := Endpoint(cfg.Provider, cfg.Tenant, cfg.TokenURL)
	if err != nil {
		return nil, err
	}
	if cfg.ClientID == "" {
		return nil, errors.New("oauth2: client_id is required")
	}
	if cfg.RefreshToken == "" {
		return nil, errors.New("oauth2: a refresh token is required (run mailhook auth)")
	}
	if cfg.HoldMin <= 0 {
		cfg.HoldMin = DefaultHoldMin
	}
	if cfg.HoldMax < cfg.HoldMin {
		cfg.HoldMax = max(DefaultHoldMax, cfg.HoldMin)
	}
	s := &Source{
		cfg:        cfg,
		oc:         &oauth2.Config{ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret, Endpoint: ep, Scopes: cfg.Scopes},
		client:     cfg.HTTPClient,
		log:        cfg.Logger,
		now:        cfg.Now,
		sem:        make(chan struct{}, 1),
		configured: cfg.RefreshToken,
		refresh:    cfg.RefreshToken,
	}
	if s.client == nil {
		s.client = defaultClient()
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if cfg.Name != "" {
		s.log = s.log.With("account", cfg.Name)
	}
	s.loadState()
	return s, nil
}

// loadState adopts the persisted rotation of the configured refresh token, if there is one.
func (s *Source) loadState() {
	if s.cfg.StateFile == "" {
		return
	}
	b, err := os.ReadFile(s.cfg.StateFile)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	if err != nil {
		s.log.Warn("oauth2 state file unreadable; using the configured refresh token", "file", s.cfg.StateFile, "err", err)
		return
	}
	var st stateFile
	if err := json.Unmarshal(b, &st); err != nil || st.RefreshToken == "" {
		s.log.Warn("oauth2 state file malformed; using the configured refresh token", "file", s.cfg.StateFile)
		return
	}
	if st.Supersedes != fingerprint(s.configured) {
		s.log.Info("configured refresh token changed since the last rotation; ignoring the persisted one", "file", s.cfg.StateFile)
		return
	}
	s.refresh = st.RefreshToken
	s.log.Debug("using the persisted rotated refresh token", "file", s.cfg.StateFile, "updated", st.Updated)
}

// fingerprint identifies a refresh token without revealing it.
func fingerprint(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// Token returns an access token with at least RefreshMargin of validity left (or one without a
// stated expiry), refreshing first when needed. After a permanent refusal it returns the same
// *GrantError without asking the token endpoint until the hold-off ends (or until
// Config.RefreshTokenFile holds a new token). Other errors (network, 5xx) are returned as they are
// and the next call tries again.
func (s *Source) Token(ctx context.Context) (*oauth2.Token, error) {
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-s.sem }()

	s.mu.Lock()
	if t := s.tok; t != nil && (t.Expiry.IsZero() || s.now().Add(RefreshMargin).Before(t.Expiry)) {
		s.mu.Unlock()
		return copyToken(t), nil
	}
	s.mu.Unlock()
	s.reloadRefreshTokenFile()

	s.mu.Lock()
	if e := s.refused; e != nil && s.now().Before(e.RetryAt) {
		s.mu.Unlock()
		return nil, e
	}
	rt := s.refresh
	s.mu.Unlock()

	s.mu.Lock()
	configured := s.configured
	s.mu.Unlock()
	tok, rt, err := s.request(ctx, rt, configured)
	if err != nil {
		return nil, s.failed(err)
	}
	if tok.AccessToken == "" {
		return nil, errors.New("oauth2 refresh: token endpoint returned no access token")
	}
	s.mu.Lock()
	s.tok, s.refused, s.hold = tok, nil, 0
	s.refreshes++
	s.refresh = rt // a rotation another process stored (Config.Shared), or the one in use
	rotated := tok.RefreshToken != "" && tok.RefreshToken != rt
	if rotated {
		s.refresh = tok.RefreshToken
	}
	s.mu.Unlock()
	s.log.Info("oauth2 access token refreshed", "expires", expiry(tok))
	if rotated {
		s.persist(tok.RefreshToken, configured)
	}
	return copyToken(tok), nil
}

// request asks the token endpoint for an access token with the refresh token rt and returns the
// refresh token it used. With Config.Shared it does so holding the shared lock, with the newest
// rotation another process stored (unless the configured token changed since: the operator
// re-authorised), and stores the rotation it gets before the lock is released.
func (s *Source) request(ctx context.Context, rt, configured string) (*oauth2.Token, string, error) {
	ask := func(rt string) (*oauth2.Token, error) {
		return s.oc.TokenSource(context.WithValue(ctx, oauth2.HTTPClient, s.client), &oauth2.Token{RefreshToken: rt}).Token()
	}
	if s.cfg.Shared == nil {
		tok, err := ask(rt)
		return tok, rt, err
	}
	var tok *oauth2.Token
	var askErr error
	err := s.cfg.Shared.RefreshWith(ctx, cmp.Or(s.cfg.SharedKey, s.cfg.Name), func(stored string, ok bool) (string, error) {
		var st stateFile
		if ok && json.Unmarshal([]byte(stored), &st) == nil && st.RefreshToken != "" && st.Supersedes == fingerprint(configured) {
			rt = st.RefreshToken
		}
		if tok, askErr = ask(rt); askErr != nil || tok.RefreshToken == "" || tok.RefreshToken == rt {
			return "", askErr
		}
		b, err := json.Marshal(stateFile{RefreshToken: tok.RefreshToken, Supersedes: fingerprint(configured), Updated: s.now().UTC()})
		return string(b), err
	})
	if askErr != nil {
		return nil, rt, askErr
	}
	if err != nil {
		return nil, rt, err
	}
	return tok, rt, nil
}

// failed classifies a refresh error. Errors never include the response body: only the OAuth error
// code and description, which carry no token.
func (s *Source) failed(err error) error {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		return fmt.Errorf("oauth2 refresh: %w", redactURLError(err))
	}
	status := 0
	if re.Response != nil {
		status = re.Response.StatusCode
	}
	if !permanentCodes[re.ErrorCode] {
		code := re.ErrorCode
		if code == "" {
			code = "no error code"
		}
		return fmt.Errorf("oauth2 refresh: token endpoint answered HTTP %d (%s)", status, code)
	}
	s.mu.Lock()
	s.hold = min(max(s.hold*2, s.cfg.HoldMin), s.cfg.HoldMax)
	e := &GrantError{Name: s.cfg.Name, Code: re.ErrorCode, Description: sanitise(re.ErrorDescription), RetryAt: s.now().Add(s.hold)}
	s.refused, s.tok = e, nil
	hold := s.hold
	s.mu.Unlock()
	s.log.Error("oauth2 refresh refused; re-authorise with mailhook auth", "code", e.Code,
		"description", e.Description, "http_status", status, "retry_in", hold)
	return e
}

// redactURLError drops the URL from a *url.Error, keeping the operation and the cause: a token URL
// may carry a query the operator considers private.
func redactURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("token request (%s): %w", ue.Op, ue.Err)
	}
	return err
}

// sanitise keeps an error description printable and short.
func sanitise(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return strings.TrimSpace(s)
}

// reloadRefreshTokenFile adopts a new configured refresh token from Config.RefreshTokenFile after
// a permanent refusal, lifting the hold-off.
func (s *Source) reloadRefreshTokenFile() {
	s.mu.Lock()
	refused := s.refused != nil
	s.mu.Unlock()
	if !refused || s.cfg.RefreshTokenFile == "" {
		return
	}
	f, err := os.Open(s.cfg.RefreshTokenFile)
	if err != nil {
		return
	}
	b, err := io.ReadAll(io.LimitReader(f, 64<<10))
	f.Close()
	if err != nil {
		return
	}
	rt := strings.TrimSpace(string(b))
	s.mu.Lock()
	defer s.mu.Unlock()
	if rt == "" || rt == s.configured {
		return
	}
	s.configured, s.refresh, s.refused, s.hold = rt, rt, nil, 0
	s.log.Info("refresh_token_file changed; trying the new refresh token", "file", s.cfg.RefreshTokenFile)
}

// persist writes a rotated refresh token to Config.StateFile. A failure is logged, not returned:
// the token works for this process, and the next rotation tries again.
func (s *Source) persist(rt, configured string) {
	if s.cfg.StateFile == "" {
		s.log.Warn("refresh token rotated; no state file to persist it in")
		return
	}
	b, err := json.MarshalIndent(stateFile{RefreshToken: rt, Supersedes: fingerprint(configured), Updated: s.now().UTC()}, "", "  ")
	if err == nil {
		err = WriteFileAtomic(s.cfg.StateFile, append(b, '\n'))
	}
	if err != nil {
		s.log.Error("refresh token rotated but not persisted; it is lost on restart", "file", s.cfg.StateFile, "err", err)
		return
	}
	s.log.Info("refresh token rotated; persisted", "file", s.cfg.StateFile)
}

// WriteFileAtomic replaces name with data, mode 0600, so a reader sees the old or the new content
// and a crash leaves no partial file: it writes a temporary file in the same folder, syncs it,
// renames it over name and syncs the folder. Missing folders are created with mode 0700.
func WriteFileAtomic(name string, data []byte) (err error) {
	dir := filepath.Dir(name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(name)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(0o600); err != nil { // CreateTemp uses 0600 already; be explicit
		return fmt.Errorf("write %s: %w", name, err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := os.Rename(f.Name(), name); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// Invalidate drops the cached access token if it is accessToken, so the next Token call
// refreshes. Call it when a server refused accessToken; a token refreshed in the meantime by
// another session is kept.
func (s *Source) Invalidate(accessToken string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tok != nil && s.tok.AccessToken == accessToken {
		s.tok = nil
		s.log.Info("server refused the access token; the next login refreshes it")
	}
}

// Status is a snapshot of a Source for health reporting. It holds no secret.
type Status struct {
	// Reason is "" when healthy, else why logins cannot work (a GrantError's text).
	Reason string
	// Reauthorize reports that the last refresh was refused for good (ErrReauthorize).
	Reauthorize bool
	Expiry      time.Time // of the cached access token; zero without one
	Refreshes   int       // successful refreshes so far
}

// Status returns a snapshot of the Source.
func (s *Source) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Status{Refreshes: s.refreshes}
	if s.refused != nil {
		st.Reason, st.Reauthorize = s.refused.Error(), true
	}
	if s.tok != nil {
		st.Expiry = s.tok.Expiry
	}
	return st
}

func copyToken(t *oauth2.Token) *oauth2.Token {
	c := *t
	return &c
}

func expiry(t *oauth2.Token) string {
	if t.Expiry.IsZero() {
		return "none stated"
	}
	return t.Expiry.UTC().Format(time.RFC3339)
}
