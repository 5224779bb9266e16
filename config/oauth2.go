package config

// The oauth2 section of an account's imap or smtp: signing in with OAuth 2.0 bearer tokens.

import (
	"cmp"
	"fmt"
	"net/url"
	"strings"

	"github.com/mailhook/mailhook/oauth"
)

// OAuth2Config is how an account signs in with OAuth 2.0 bearer tokens (Gmail, Microsoft 365).
// mailhook refreshes the access token itself; the refresh token comes from `mailhook auth`.
type OAuth2Config struct {
	Provider         string `mapstructure:"provider"` // google | microsoft | custom
	ClientID         string `mapstructure:"client_id"`
	ClientSecret     string `mapstructure:"client_secret"`
	ClientSecretFile string `mapstructure:"client_secret_file"` // read into ClientSecret by Load
	RefreshToken     string `mapstructure:"refresh_token"`
	// RefreshTokenFile is read into RefreshToken by Load, and read again after the provider
	// refused the token (invalid_grant), so re-running `mailhook auth --out FILE` recovers.
	RefreshTokenFile string `mapstructure:"refresh_token_file"`
	// TokenURL is the token endpoint; required for custom, not allowed otherwise.
	TokenURL string `mapstructure:"token_url"`
	// Scopes the refresh token was granted, used by interactive flows; required for custom,
	// default the provider's mail scopes.
	Scopes []string `mapstructure:"scopes"`
	// Tenant is the Microsoft Entra tenant (ID or domain) of a single-tenant app; default common.
	Tenant string `mapstructure:"tenant"`
	// Mechanism is the SASL mechanism: xoauth2 (default; Gmail, Microsoft 365, Dovecot) or
	// oauthbearer (RFC 7628).
	Mechanism string `mapstructure:"mechanism"`
}

// Values of oauth2.provider and oauth2.mechanism.
const (
	ProviderGoogle    = "google"
	ProviderMicrosoft = "microsoft"
	ProviderCustom    = "custom"

	MechanismXOAuth2     = "xoauth2"
	MechanismOAuthBearer = "oauthbearer"
)

// applyDefaults fills the mechanism and a known provider's scopes. It accepts nil.
func (o *OAuth2Config) applyDefaults() {
	if o == nil {
		return
	}
	o.Provider = strings.ToLower(o.Provider)
	o.Mechanism = strings.ToLower(o.Mechanism)
	if o.Mechanism == "" {
		o.Mechanism = MechanismXOAuth2
	}
	if len(o.Scopes) == 0 {
		o.Scopes = oauth.DefaultScopes(o.Provider)
	}
}

// validate checks an oauth2 section; every problem names its field under path.
func (o *OAuth2Config) validate(p *problems, path string) {
	if oneOf(p, path+".provider", o.Provider, ProviderGoogle, ProviderMicrosoft, ProviderCustom) {
		o.validateProvider(p, path)
	}
	if o.TokenURL != "" {
		validateTokenURL(p, path+".token_url", o.TokenURL)
	}
	if o.ClientID == "" {
		p.add(path+".client_id", "required")
	}
	if o.RefreshToken == "" {
		p.add(path+".refresh_token", "required (or refresh_token_file): run `mailhook auth %s` to get one", cmp.Or(o.Provider, ProviderGoogle))
	}
	for j, s := range o.Scopes {
		if s == "" || strings.ContainsFunc(s, isSpaceOrControl) {
			p.add(fmt.Sprintf("%s.scopes[%d]", path, j), "must be one scope without spaces")
		}
	}
	oneOf(p, path+".mechanism", o.Mechanism, MechanismXOAuth2, MechanismOAuthBearer)
}

// validateProvider checks the keys that only some providers take (token_url, scopes, tenant).
func (o *OAuth2Config) validateProvider(p *problems, path string) {
	switch o.Provider {
	case ProviderCustom:
		if o.TokenURL == "" {
			p.add(path+".token_url", "required for provider custom")
		}
		if len(o.Scopes) == 0 {
			p.add(path+".scopes", "required for provider custom")
		}
	default:
		if o.TokenURL != "" {
			p.add(path+".token_url", "only for provider custom (%s has a fixed token endpoint)", o.Provider)
		}
	}
	if o.Tenant != "" && o.Provider != ProviderMicrosoft {
		p.add(path+".tenant", "only for provider microsoft")
	}
}

// validateTokenURL checks a token endpoint: absolute, without user information, and https unless
// it is on loopback (the refresh token travels to it).
func validateTokenURL(p *problems, field, raw string) {
	u, err := url.Parse(raw)
	switch {
	case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
		p.add(field, "want an absolute https URL")
	case u.User != nil:
		p.add(field, "must not contain user information (put the secret in client_secret)")
	case u.Scheme == "http" && !isLoopback(u.Hostname()):
		p.add(field, "plain http is allowed only to a loopback host: the refresh token would travel unencrypted")
	}
}
