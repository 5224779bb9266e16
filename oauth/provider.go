// Package oauth signs mailhook in to IMAP and SMTP servers with OAuth 2.0 bearer tokens: Gmail and
// Microsoft 365, which no longer accept passwords (or only app passwords), and any server whose
// token endpoint is named in the configuration.
//
// It has three parts:
//
//   - Source keeps an access token fresh: it refreshes with the refresh token (RFC 6749 §6) before
//     use whenever fewer than RefreshMargin (5 minutes) of validity remain, persists a rotated
//     refresh token under the state directory (atomically, mode 0600) and prefers it from then on,
//     and classifies a refused refresh (invalid_grant) as "re-authorisation needed", after which it
//     stops asking the token endpoint for a growing hold-off instead of retrying in a loop.
//   - XOAuth2Client and OAuthBearerClient are sasl.Client implementations of Google's XOAUTH2 and
//     RFC 7628 OAUTHBEARER for go-imap's Authenticate and go-smtp's Auth. On an error challenge they
//     answer as the mechanisms require (empty, or %x01), so the server fails the command cleanly,
//     and they tell the Source that the token was refused, so the next connection refreshes once.
//   - Loopback and Device obtain the first refresh token interactively: the authorization-code flow
//     with PKCE (RFC 7636) and a redirect to 127.0.0.1 (RFC 8252 §7.3), used for Google, and the
//     device authorization grant (RFC 8628), used for Microsoft on headless hosts.
//
// golang.org/x/oauth2 performs every token request. No error or log line of this package contains
// an access token, a refresh token, a client secret or an authorization code.
package oauth

import (
	"fmt"
	"net/url"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/endpoints"
)

// Providers known by name.
const (
	Google    = "google"    // Gmail and Google Workspace
	Microsoft = "microsoft" // Microsoft 365 / Outlook.com (Microsoft identity platform v2)
	Custom    = "custom"    // any RFC 6749 server: TokenURL and Scopes must be given
)

// Scopes of the known providers.
const (
	// ScopeGoogleMail is the only Google scope that allows IMAP and SMTP.
	ScopeGoogleMail = "https://mail.google.com/"
	// ScopeOutlookIMAP and ScopeOutlookSMTP must be spelled in full: the short names
	// ("IMAP.AccessAsUser.All") get a Microsoft Graph token, which the IMAP server rejects.
	ScopeOutlookIMAP = "https://outlook.office.com/IMAP.AccessAsUser.All"
	ScopeOutlookSMTP = "https://outlook.office.com/SMTP.Send"
	// ScopeOfflineAccess makes Microsoft issue a refresh token.
	ScopeOfflineAccess = "offline_access"
)

// DefaultScopes returns the scopes mailhook asks a known provider for, or nil for Custom.
func DefaultScopes(provider string) []string {
	switch provider {
	case Google:
		return []string{ScopeGoogleMail}
	case Microsoft:
		return []string{ScopeOutlookIMAP, ScopeOutlookSMTP, ScopeOfflineAccess}
	}
	return nil
}

// Endpoint returns the OAuth 2.0 endpoints of a provider. tenant selects the Microsoft Entra
// tenant ("" = "common"; a single-tenant app needs its tenant ID or domain); tokenURL is required
// for Custom and, when set, replaces the token URL of a known provider (tests point it at a fake).
func Endpoint(provider, tenant, tokenURL string) (oauth2.Endpoint, error) {
	var ep oauth2.Endpoint
	switch provider {
	case Google:
		ep = endpoints.Google
		// Google accepts the client credentials only as form parameters.
		ep.AuthStyle = oauth2.AuthStyleInParams
	case Microsoft:
		ep = endpoints.AzureAD(tenant)
		// Public clients (device flow) have no secret: send client_id as a form parameter.
		ep.AuthStyle = oauth2.AuthStyleInParams
	case Custom:
		if tokenURL == "" {
			return ep, fmt.Errorf("oauth2 provider %q: token_url is required", provider)
		}
		// RFC 6749 §2.3.1: every server must accept HTTP Basic. A fixed style also keeps
		// x/oauth2 from probing (sending each refused refresh twice).
		ep.AuthStyle = oauth2.AuthStyleInHeader
	default:
		return ep, fmt.Errorf("oauth2 provider %q: want google, microsoft or custom", provider)
	}
	if tokenURL != "" {
		if err := checkURL(tokenURL); err != nil {
			return ep, fmt.Errorf("oauth2 token_url: %w", err)
		}
		ep.TokenURL = tokenURL
	}
	return ep, nil
}

// checkURL accepts an absolute http(s) URL without user information.
func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("not a URL")
	}
	if u.Scheme != "https" && u.Scheme != "http" || u.Host == "" {
		return fmt.Errorf("want an absolute https URL")
	}
	if u.User != nil {
		return fmt.Errorf("must not contain user information")
	}
	return nil
}
