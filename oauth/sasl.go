package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/emersion/go-sasl"
)

// SASL mechanism names.
const (
	MechXOAuth2     = "XOAUTH2"     // Google's mechanism; Gmail and Microsoft 365 both offer it
	MechOAuthBearer = "OAUTHBEARER" // RFC 7628
)

// ServerError is the JSON error challenge a server sends when it refuses a bearer token
// (RFC 7628 §3.2.2; Google's XOAUTH2 sends the same shape). It carries no secret.
type ServerError struct {
	Status  string `json:"status"`  // "401", "invalid_token", …
	Schemes string `json:"schemes"` // "Bearer"
	Scope   string `json:"scope"`   // the scope the server wanted, when it says
}

func (e *ServerError) Error() string {
	s := "server refused the bearer token"
	if e.Status != "" {
		s += " (status " + e.Status + ")"
	}
	if e.Scope != "" {
		s += "; it wants scope " + e.Scope
	}
	return s
}

// parseServerError reads an error challenge; a malformed one gives an empty ServerError.
func parseServerError(challenge []byte) *ServerError {
	e := &ServerError{}
	if json.Unmarshal(challenge, e) != nil {
		return &ServerError{}
	}
	return e
}

// XOAuth2Initial returns the XOAUTH2 initial client response,
// "user=" + user + "\x01auth=Bearer " + token + "\x01\x01" (the protocol is
// Google's "OAuth 2.0 Mechanism" page). The transport base64-encodes it.
func XOAuth2Initial(user, token string) []byte {
	return []byte("user=" + user + "\x01auth=Bearer " + token + "\x01\x01")
}

// XOAuth2Client is a sasl.Client for XOAUTH2. go-sasl has none.
//
// When the server refuses the token it sends a JSON error challenge; Next then calls Refused (when
// set) and answers with an empty response, after which the server fails the command
// (NO/535). The caller should then close the connection and reconnect with a refreshed token.
type XOAuth2Client struct {
	Username, Token string
	// Refused, when set, is called with the server's error challenge.
	Refused func(*ServerError)

	answered bool
}

var _ sasl.Client = (*XOAuth2Client)(nil)

// Start returns the mechanism name and the initial response.
func (c *XOAuth2Client) Start() (mech string, ir []byte, err error) {
	if strings.ContainsRune(c.Username, '\x01') || strings.ContainsAny(c.Token, "\x01 ") || c.Token == "" {
		return "", nil, errors.New("xoauth2: malformed user name or empty token")
	}
	c.answered = false
	return MechXOAuth2, XOAuth2Initial(c.Username, c.Token), nil
}

// Next answers the server's error challenge with an empty response; a second challenge aborts.
func (c *XOAuth2Client) Next(challenge []byte) ([]byte, error) {
	if c.answered {
		return nil, sasl.ErrUnexpectedServerChallenge
	}
	c.answered = true
	if c.Refused != nil {
		c.Refused(parseServerError(challenge))
	}
	// Google: "the client should send an empty response", and the server then fails the command.
	return []byte{}, nil
}

// OAuthBearerClient is a sasl.Client for OAUTHBEARER (RFC 7628). go-sasl has one, but it aborts
// the exchange on an error challenge instead of sending the %x01 response §3.2.3 requires, which
// leaves an IMAP command waiting for a continuation.
type OAuthBearerClient struct {
	Username, Token string
	Host            string // the server's host name (optional, RFC 7628 §3.1 "host")
	Port            int    // the server's port (optional, "port")
	// Refused, when set, is called with the server's error challenge.
	Refused func(*ServerError)

	answered bool
}

var _ sasl.Client = (*OAuthBearerClient)(nil)

// Start returns the mechanism name and the initial response: a GS2 header naming the user as
// authorization identity (RFC 5801 §4, with "," and "=" escaped), then host, port and the token as
// key=value pairs separated by %x01.
func (c *OAuthBearerClient) Start() (mech string, ir []byte, err error) {
	if strings.ContainsRune(c.Username, '\x01') || strings.ContainsRune(c.Host, '\x01') ||
		strings.ContainsAny(c.Token, "\x01 ") || c.Token == "" {
		return "", nil, errors.New("oauthbearer: malformed user name, host or empty token")
	}
	c.answered = false
	var b strings.Builder
	b.WriteString("n,")
	if c.Username != "" {
		b.WriteString("a=" + strings.NewReplacer("=", "=3D", ",", "=2C").Replace(c.Username))
	}
	b.WriteString(",")
	if c.Host != "" {
		b.WriteString("\x01host=" + c.Host)
	}
	if c.Port != 0 {
		b.WriteString("\x01port=" + strconv.Itoa(c.Port))
	}
	b.WriteString("\x01auth=Bearer " + c.Token + "\x01\x01")
	return MechOAuthBearer, []byte(b.String()), nil
}

// Next answers the server's error challenge with %x01 (RFC 7628 §3.2.3); a second challenge aborts.
func (c *OAuthBearerClient) Next(challenge []byte) ([]byte, error) {
	if c.answered {
		return nil, sasl.ErrUnexpectedServerChallenge
	}
	c.answered = true
	if c.Refused != nil {
		c.Refused(parseServerError(challenge))
	}
	return []byte{0x01}, nil
}

// Authenticator signs one user in to one server with tokens from a Source, one SASL client per
// connection. It remembers the token it handed out last, so AuthFailed can invalidate exactly
// that one. It is safe for concurrent use.
type Authenticator struct {
	src  *Source
	mech string
	user string
	host string
	port int

	mu   sync.Mutex
	last string // access token of the latest client
}

// Authenticator returns an Authenticator for user at host:port with mechanism mech (MechXOAuth2
// or MechOAuthBearer; "" means MechXOAuth2). host and port are sent by OAUTHBEARER only.
func (s *Source) Authenticator(mech, user, host string, port int) (*Authenticator, error) {
	switch strings.ToUpper(mech) {
	case "":
		mech = MechXOAuth2
	case MechXOAuth2, MechOAuthBearer:
		mech = strings.ToUpper(mech)
	default:
		return nil, fmt.Errorf("oauth2 mechanism %q: want xoauth2 or oauthbearer", mech)
	}
	return &Authenticator{src: s, mech: mech, user: user, host: host, port: port}, nil
}

// SASL returns a SASL client carrying a fresh access token (Source.Token), for
// imapclient.Client.Authenticate or smtp.Client.Auth; it fits watcher.Config.SASL. When the server
// answers with an error challenge, the token is invalidated, so the next connection refreshes
// it once.
func (a *Authenticator) SASL(ctx context.Context) (sasl.Client, error) {
	tok, err := a.src.Token(ctx)
	if err != nil {
		return nil, err
	}
	at := tok.AccessToken
	a.mu.Lock()
	a.last = at
	a.mu.Unlock()
	refused := func(e *ServerError) {
		a.src.log.Warn("server refused the bearer token", "mechanism", a.mech, "status", e.Status, "scope", e.Scope)
		a.src.Invalidate(at)
	}
	if a.mech == MechOAuthBearer {
		return &OAuthBearerClient{Username: a.user, Token: at, Host: a.host, Port: a.port, Refused: refused}, nil
	}
	return &XOAuth2Client{Username: a.user, Token: at, Refused: refused}, nil
}

// AuthFailed invalidates the access token handed out last. Call it when a login with it failed
// without an error challenge (some servers answer NO at once); it fits
// watcher.Config.OnAuthFailure.
func (a *Authenticator) AuthFailed() {
	a.mu.Lock()
	at := a.last
	a.mu.Unlock()
	if at != "" {
		a.src.Invalidate(at)
	}
}
