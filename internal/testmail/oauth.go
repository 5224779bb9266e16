package testmail

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// Default OAuth client of a TokenServer.
const (
	DefaultClientID     = "mailhook-test-client"
	DefaultClientSecret = "client-secret-for-tests"
)

// TokenServer is a fake OAuth 2.0 authorization server on loopback (httptest) for tests. It
// serves:
//
//   - /token: the refresh_token, authorization_code (with PKCE S256, RFC 7636) and device_code
//     (RFC 8628) grants, with client credentials in the form or in HTTP Basic;
//   - /authorize: the authorization endpoint, which approves at once and redirects (302) to the
//     redirect_uri with a code and the state, so a test plays the browser with one GET;
//   - /devicecode: the device authorization endpoint (interval 1 s);
//   - /introspect: RFC 7662 token introspection for Dovecot's oauth2 passdb (POST token=…),
//     answering {"active": true, "email": User} for a live access token.
//
// It issues, expires, rotates and refuses tokens on demand. Every token it issues is random and
// listed by Secrets, so a test can scan logs for them.
type TokenServer struct {
	srv *httptest.Server

	mu            sync.Mutex
	user          string
	clientID      string
	clientSecret  string
	lifetime      time.Duration
	rotate        bool
	refresh       map[string]bool      // live refresh tokens
	access        map[string]time.Time // live access tokens → expiry
	codes         map[string]authCode
	devices       map[string]*deviceGrant
	secrets       []string
	refreshes     int
	introspection int
}

type authCode struct{ challenge, redirect string }

type deviceGrant struct {
	userCode string
	approved bool
	polls    int
}

// TokenOptions configures a TokenServer; zero fields take defaults.
type TokenOptions struct {
	User                   string        // email reported by introspection; default DefaultUser
	ClientID, ClientSecret string        // default DefaultClientID, DefaultClientSecret
	Lifetime               time.Duration // expires_in of access tokens; default 1h
	Rotate                 bool          // every refresh issues a new refresh token and retires the old one
}

// StartTokenServer starts a TokenServer and closes it when the test ends.
func StartTokenServer(t testing.TB, opts TokenOptions) *TokenServer {
	t.Helper()
	s := NewTokenServer(opts)
	t.Cleanup(s.Close)
	return s
}

// NewTokenServer starts a TokenServer. Call Close when done.
func NewTokenServer(opts TokenOptions) *TokenServer {
	s := &TokenServer{
		user:         opts.User,
		clientID:     opts.ClientID,
		clientSecret: opts.ClientSecret,
		lifetime:     opts.Lifetime,
		rotate:       opts.Rotate,
		refresh:      map[string]bool{},
		access:       map[string]time.Time{},
		codes:        map[string]authCode{},
		devices:      map[string]*deviceGrant{},
	}
	if s.user == "" {
		s.user = DefaultUser
	}
	if s.clientID == "" {
		s.clientID = DefaultClientID
	}
	if s.clientSecret == "" {
		s.clientSecret = DefaultClientSecret
	}
	if s.lifetime == 0 {
		s.lifetime = time.Hour
	}
	s.secrets = append(s.secrets, s.clientSecret)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /token", s.token)
	mux.HandleFunc("GET /authorize", s.authorize)
	mux.HandleFunc("POST /devicecode", s.deviceCode)
	mux.HandleFunc("POST /introspect", s.introspect)
	s.srv = httptest.NewServer(mux)
	return s
}

// Close shuts the server down.
func (s *TokenServer) Close() { s.srv.Close() }

// URL returns the server's base URL.
func (s *TokenServer) URL() string { return s.srv.URL }

// TokenURL, AuthURL, DeviceURL and IntrospectionURL return the endpoints.
func (s *TokenServer) TokenURL() string         { return s.srv.URL + "/token" }
func (s *TokenServer) AuthURL() string          { return s.srv.URL + "/authorize" }
func (s *TokenServer) DeviceURL() string        { return s.srv.URL + "/devicecode" }
func (s *TokenServer) IntrospectionURL() string { return s.srv.URL + "/introspect" }

// ClientID and ClientSecret return the client credentials the server accepts.
func (s *TokenServer) ClientID() string     { return s.clientID }
func (s *TokenServer) ClientSecret() string { return s.clientSecret }

// IssueRefreshToken returns a new live refresh token, as a completed authorisation would.
func (s *TokenServer) IssueRefreshToken() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.newRefreshLocked()
}

// Revoke makes refresh token rt fail with invalid_grant; "" revokes every refresh token.
func (s *TokenServer) Revoke(rt string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rt == "" {
		clear(s.refresh)
		return
	}
	delete(s.refresh, rt)
}

// ExpireAccessTokens makes every access token issued so far inactive, as if its lifetime had run
// out: introspection reports it inactive. Clients that trust the stated expiry learn it at login.
func (s *TokenServer) ExpireAccessTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.access)
}

// SetLifetime changes expires_in of tokens issued from now on.
func (s *TokenServer) SetLifetime(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lifetime = d
}

// SetRotate switches refresh-token rotation on or off.
func (s *TokenServer) SetRotate(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rotate = on
}

// Active reports whether access token at is live, and its user.
func (s *TokenServer) Active(at string) (user string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	exp, ok := s.access[at]
	if !ok || time.Now().After(exp) {
		return "", false
	}
	return s.user, true
}

// LiveRefreshToken reports whether rt would be accepted.
func (s *TokenServer) LiveRefreshToken(rt string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refresh[rt]
}

// Refreshes returns how many refresh_token grants were answered (issued or refused).
func (s *TokenServer) Refreshes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refreshes
}

// Introspections returns how many introspection requests were answered.
func (s *TokenServer) Introspections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.introspection
}

// ApproveDevice approves the pending device grant with userCode, as the user would on the
// verification page; it reports whether there was one.
func (s *TokenServer) ApproveDevice(userCode string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range s.devices {
		if d.userCode == userCode {
			d.approved = true
			return true
		}
	}
	return false
}

// Secrets returns every secret the server knows: the client secret and every code and token it
// issued.
func (s *TokenServer) Secrets() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.secrets...)
}

func (s *TokenServer) newRefreshLocked() string {
	rt := "rt-" + randomHex()
	s.refresh[rt] = true
	s.secrets = append(s.secrets, rt)
	return rt
}

func (s *TokenServer) newAccessLocked() (string, time.Duration) {
	at := "at-" + randomHex()
	s.access[at] = time.Now().Add(s.lifetime)
	s.secrets = append(s.secrets, at)
	return at, s.lifetime
}

func randomHex() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func oauthError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}

func (s *TokenServer) clientOK(r *http.Request, needSecret bool) bool {
	id, secret, basic := r.BasicAuth()
	if basic {
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
	} else {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if id != s.clientID {
		return false
	}
	return !needSecret || secret == s.clientSecret
}

func (s *TokenServer) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "malformed form")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	grant := r.PostForm.Get("grant_type")
	public := grant == "urn:ietf:params:oauth:grant-type:device_code" // device clients have no secret
	if !s.clientOK(r, !public) {
		oauthError(w, http.StatusUnauthorized, "invalid_client", "unknown client or wrong secret")
		return
	}
	resp := map[string]any{"token_type": "Bearer"}
	switch grant {
	case "refresh_token":
		s.refreshes++
		rt := r.PostForm.Get("refresh_token")
		if !s.refresh[rt] {
			oauthError(w, http.StatusBadRequest, "invalid_grant", "Token has been expired or revoked.")
			return
		}
		if s.rotate {
			delete(s.refresh, rt)
			resp["refresh_token"] = s.newRefreshLocked()
		}
	case "authorization_code":
		c, ok := s.codes[r.PostForm.Get("code")]
		delete(s.codes, r.PostForm.Get("code"))
		if !ok || c.redirect != r.PostForm.Get("redirect_uri") {
			oauthError(w, http.StatusBadRequest, "invalid_grant", "unknown code or redirect_uri mismatch")
			return
		}
		sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
		if base64.RawURLEncoding.EncodeToString(sum[:]) != c.challenge {
			oauthError(w, http.StatusBadRequest, "invalid_grant", "PKCE verification failed")
			return
		}
		resp["refresh_token"] = s.newRefreshLocked()
	case "urn:ietf:params:oauth:grant-type:device_code":
		d, ok := s.devices[r.PostForm.Get("device_code")]
		if !ok {
			oauthError(w, http.StatusBadRequest, "expired_token", "unknown device code")
			return
		}
		d.polls++
		if !d.approved {
			oauthError(w, http.StatusBadRequest, "authorization_pending", "waiting for the user")
			return
		}
		delete(s.devices, r.PostForm.Get("device_code"))
		resp["refresh_token"] = s.newRefreshLocked()
	default:
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", grant)
		return
	}
	at, life := s.newAccessLocked()
	resp["access_token"] = at
	resp["expires_in"] = int(life.Seconds())
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(resp)
}

func (s *TokenServer) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	redirect, err := url.Parse(q.Get("redirect_uri"))
	if err != nil || redirect.Scheme != "http" || !strings.HasPrefix(redirect.Host, "127.0.0.1:") {
		http.Error(w, "redirect_uri must be a loopback URL", http.StatusBadRequest)
		return
	}
	if q.Get("client_id") != s.clientID || q.Get("response_type") != "code" ||
		q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" || q.Get("state") == "" {
		http.Error(w, "bad authorization request", http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	code := "code-" + randomHex()
	s.codes[code] = authCode{challenge: q.Get("code_challenge"), redirect: q.Get("redirect_uri")}
	s.secrets = append(s.secrets, code)
	s.mu.Unlock()
	v := redirect.Query()
	v.Set("code", code)
	v.Set("state", q.Get("state"))
	redirect.RawQuery = v.Encode()
	http.Redirect(w, r, redirect.String(), http.StatusFound)
}

func (s *TokenServer) deviceCode(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil || r.PostForm.Get("client_id") != s.clientID {
		oauthError(w, http.StatusBadRequest, "invalid_client", "unknown client")
		return
	}
	s.mu.Lock()
	dc := "dc-" + randomHex()
	uc := strings.ToUpper(randomHex()[:8])
	s.devices[dc] = &deviceGrant{userCode: uc}
	s.secrets = append(s.secrets, dc)
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"device_code": dc, "user_code": uc, "verification_uri": s.srv.URL + "/device",
		"expires_in": 600, "interval": 1,
		"message": fmt.Sprintf("To sign in, open %s/device and enter the code %s.", s.srv.URL, uc),
	})
}

func (s *TokenServer) introspect(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	s.mu.Lock()
	s.introspection++
	s.mu.Unlock()
	user, ok := s.Active(r.PostForm.Get("token"))
	w.Header().Set("Content-Type", "application/json")
	if !ok {
		_, _ = w.Write([]byte(`{"active": false}`))
		return
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"active": true, "email": user})
}
