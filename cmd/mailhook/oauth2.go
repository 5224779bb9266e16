package main

// This file wires the oauth2: sections of the configuration (config.OAuth2Config, which has their
// defaults and validation) to the oauth package: one token Source per account (shared by IMAP and
// SMTP when their oauth2 sections are identical), and the SASL hooks of the watcher.

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"reflect"
	"strings"
	"sync"

	"github.com/emersion/go-sasl"

	"github.com/mailhook/mailhook/config"
	"github.com/mailhook/mailhook/oauth"
	"github.com/mailhook/mailhook/watcher"
)

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
func (l *loaded) tokenSource(a config.Account, smtp bool, logger *slog.Logger) (*oauth.Source, error) {
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
		Shared:    l.rotation, SharedKey: strings.TrimSuffix(file, ".json"), // on a store shared by replicas
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
func (l *loaded) useOAuth2(wc *watcher.Config, a config.Account, logger *slog.Logger) error {
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
func (l *loaded) smtpSASL(a config.Account, logger *slog.Logger) (newClient func(ctx context.Context) (sasl.Client, error), authFailed func(), err error) {
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
