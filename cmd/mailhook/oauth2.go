package main

// This file wires the oauth2: sections of the configuration (OAuth2Config in config.go) to the
// oauth package: defaults, validation, one token Source per account (shared by IMAP and SMTP
// when their oauth2 sections are identical), and the SASL hooks of the watcher.

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"path/filepath"
	"reflect"
	"strings"
	"sync"

	"github.com/emersion/go-sasl"

	"github.com/mailhook/mailhook/oauth"
	"github.com/mailhook/mailhook/watcher"
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
	if o.TokenURL != "" {
		if u, err := url.Parse(o.TokenURL); err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
			p.add(path+".token_url", "want an absolute https URL")
		} else if u.User != nil {
			p.add(path+".token_url", "must not contain user information (put the secret in client_secret)")
		} else if u.Scheme == "http" && !isLoopback(u.Hostname()) {
			p.add(path+".token_url", "plain http is allowed only to a loopback host: the refresh token would travel unencrypted")
		}
	}
	if o.ClientID == "" {
		p.add(path+".client_id", "required")
	}
	if o.RefreshToken == "" {
		p.add(path+".refresh_token", "required (or refresh_token_file): run `mailhook auth %s` to get one", cmpOr(o.Provider, "google"))
	}
	for j, s := range o.Scopes {
		if s == "" || strings.ContainsFunc(s, isSpaceOrControl) {
			p.add(fmt.Sprintf("%s.scopes[%d]", path, j), "must be one scope without spaces")
		}
	}
	oneOf(p, path+".mechanism", o.Mechanism, MechanismXOAuth2, MechanismOAuthBearer)
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// oauthSources holds the token Sources of one loaded configuration, one per account and role,
// created on first use so `check` never builds one.
type oauthSources struct {
	mu      sync.Mutex
	sources map[string]*oauth.Source // account name + "/imap" or "/smtp"
}

// tokenSource returns the Source for an account's imap (smtp false) or smtp oauth2 section. An
// smtp section identical to the imap one gets the imap Source: one refresh token, one rotation.
// Rotated refresh tokens are persisted in state_dir/oauth/ACCOUNT.json (ACCOUNT.smtp.json for a
// separate smtp token).
func (l *loaded) tokenSource(a Account, smtp bool, logger *slog.Logger) (*oauth.Source, error) {
	o, role, file := a.IMAP.OAuth2, "imap", a.Name+".json"
	if smtp {
		o, role, file = a.SMTP.OAuth2, "smtp", a.Name+".smtp.json"
		if a.IMAP.OAuth2 != nil && reflect.DeepEqual(a.IMAP.OAuth2, a.SMTP.OAuth2) {
			return l.tokenSource(a, false, logger)
		}
	}
	if o == nil {
		return nil, fmt.Errorf("account %q %s: no oauth2 section", a.Name, role)
	}
	if l.oauth == nil {
		l.oauth = &oauthSources{sources: map[string]*oauth.Source{}}
	}
	l.oauth.mu.Lock()
	defer l.oauth.mu.Unlock()
	key := a.Name + "/" + role
	if s, ok := l.oauth.sources[key]; ok {
		return s, nil
	}
	s, err := oauth.NewSource(oauth.Config{
		Name: a.Name, Provider: o.Provider, Tenant: o.Tenant, TokenURL: o.TokenURL, Scopes: o.Scopes,
		ClientID: o.ClientID, ClientSecret: o.ClientSecret,
		RefreshToken: o.RefreshToken, RefreshTokenFile: o.RefreshTokenFile,
		StateFile: filepath.Join(l.cfg.StateDir, "oauth", file),
		Logger:    logger,
	})
	if err != nil {
		return nil, fmt.Errorf("account %q %s.oauth2: %w", a.Name, role, err)
	}
	l.oauth.sources[key] = s
	return s, nil
}

// useOAuth2 makes the watcher of account a sign in with its imap.oauth2 section: a fresh SASL
// client per connection, and the refused access token dropped after an authentication failure,
// so the next attempt (after at least backoff.auth_min) refreshes it once. After invalid_grant the
// watcher's status reason reads "re-authorisation needed (invalid_grant)" and reconnects wait the
// token source's hold-off (1 minute, doubling to 1 hour) instead of looping.
func (l *loaded) useOAuth2(wc *watcher.Config, a Account, logger *slog.Logger) error {
	src, err := l.tokenSource(a, false, logger)
	if err != nil {
		return err
	}
	au, err := src.Authenticator(a.IMAP.OAuth2.Mechanism, a.IMAP.Username, a.IMAP.Host, a.IMAP.Port)
	if err != nil {
		return fmt.Errorf("account %q imap.oauth2: %w", a.Name, err)
	}
	wc.SASL = au.SASL
	wc.OnAuthFailure = au.AuthFailed
	wc.Password = ""
	return nil
}

// smtpSASL returns the SASL client factory for an account's SMTP server when its smtp: section
// uses oauth2 (nil, nil when it uses a password). Reply actions call it once per SMTP
// connection and pass the client to smtp.Client.Auth; after a 535 they should call the
// returned authFailed before reconnecting.
func (l *loaded) smtpSASL(a Account, logger *slog.Logger) (newClient func(ctx context.Context) (sasl.Client, error), authFailed func(), err error) {
	if a.SMTP.OAuth2 == nil {
		return nil, nil, nil
	}
	src, err := l.tokenSource(a, true, logger)
	if err != nil {
		return nil, nil, err
	}
	au, err := src.Authenticator(a.SMTP.OAuth2.Mechanism, a.SMTP.Username, a.SMTP.Host, a.SMTP.Port)
	if err != nil {
		return nil, nil, fmt.Errorf("account %q smtp.oauth2: %w", a.Name, err)
	}
	return au.SASL, au.AuthFailed, nil
}
