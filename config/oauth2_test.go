package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailhook/mailhook/oauth"
)

// oauthConfig is cfgMinimalYAML with its account on host signing in with oauth2 instead of a
// password; oauthLines are the oauth2 section's lines.
func oauthConfig(t *testing.T, oauthLines, host string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("      oauth2:\n")
	for _, l := range strings.Split(strings.TrimSpace(oauthLines), "\n") {
		b.WriteString("        " + strings.TrimSpace(l) + "\n")
	}
	y := strings.Replace(cfgMinimalYAML, "      password: hunter2\n", b.String(), 1)
	return strings.Replace(y, "imap.example.com", host, 1)
}

func TestOAuth2ConfigLoads(t *testing.T) {
	dir := t.TempDir()
	secretFile, tokenFile := filepath.Join(dir, "secret"), filepath.Join(dir, "refresh")
	os.WriteFile(secretFile, []byte("the-client-secret\n"), 0o600)
	os.WriteFile(tokenFile, []byte("the-refresh-token\n"), 0o600)
	y := oauthConfig(t, `
provider: google
client_id: ${CLIENT_ID}
client_secret_file: `+secretFile+`
refresh_token_file: `+tokenFile, "imap.gmail.com")
	cfg, _, err := cfgLoad(t, y, map[string]string{"CLIENT_ID": "123.apps.googleusercontent.com"})
	if err != nil {
		t.Fatal(err)
	}
	o := cfg.Accounts[0].IMAP.OAuth2
	if o.ClientID != "123.apps.googleusercontent.com" || o.ClientSecret != "the-client-secret" ||
		o.RefreshToken != "the-refresh-token" || o.Mechanism != MechanismXOAuth2 ||
		len(o.Scopes) != 1 || o.Scopes[0] != oauth.ScopeGoogleMail {
		t.Errorf("oauth2 section loaded as %+v", o)
	}
}

// TestOAuth2ConfigErrors: every problem names its field, and none repeats a secret.
func TestOAuth2ConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name, lines, extra, field string
	}{
		{"password and oauth2", "provider: google\nclient_id: c\nrefresh_token: rt-secret", "password: pw-secret", "imap.password"},
		{"unknown provider", "provider: yahoo\nclient_id: c\nrefresh_token: rt-secret", "", "imap.oauth2.provider"},
		{"custom without token_url", "provider: custom\nclient_id: c\nrefresh_token: rt-secret\nscopes: [mail]", "", "imap.oauth2.token_url"},
		{"custom without scopes", "provider: custom\nclient_id: c\nrefresh_token: rt-secret\ntoken_url: https://id.example.com/token", "", "imap.oauth2.scopes"},
		{"token_url for google", "provider: google\nclient_id: c\nrefresh_token: rt-secret\ntoken_url: https://id.example.com/token", "", "imap.oauth2.token_url"},
		{"plain http token_url", "provider: custom\nclient_id: c\nrefresh_token: rt-secret\nscopes: [mail]\ntoken_url: http://id.example.com/token", "", "imap.oauth2.token_url"},
		{"tenant for google", "provider: google\nclient_id: c\nrefresh_token: rt-secret\ntenant: contoso.com", "", "imap.oauth2.tenant"},
		{"no client_id", "provider: microsoft\nrefresh_token: rt-secret", "", "imap.oauth2.client_id"},
		{"no refresh token", "provider: microsoft\nclient_id: c", "", "imap.oauth2.refresh_token"},
		{"bad mechanism", "provider: google\nclient_id: c\nrefresh_token: rt-secret\nmechanism: plain", "", "imap.oauth2.mechanism"},
		{"secret twice", "provider: google\nclient_id: c\nrefresh_token: rt-secret\nclient_secret: cs-secret\nclient_secret_file: /nonexistent", "", "imap.oauth2.client_secret_file"},
		{"unknown key", "provider: google\nclient_id: c\nrefresh_token: rt-secret\nrefresh: x", "", "imap.oauth2.refresh"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			y := oauthConfig(t, tc.lines, "127.0.0.1")
			if tc.extra != "" {
				y = strings.Replace(y, "      oauth2:\n", "      "+tc.extra+"\n      oauth2:\n", 1)
			}
			_, _, err := cfgLoad(t, y, nil)
			if err == nil {
				t.Fatal("loaded")
			}
			var fe *FieldError
			found := false
			for _, e := range flattenErrs(err) {
				if errors.As(e, &fe) && strings.HasSuffix(fe.Field, tc.field) {
					found = true
				}
			}
			if !found {
				t.Errorf("error %q does not name %s", err, tc.field)
			}
			for _, s := range []string{"rt-secret", "pw-secret", "cs-secret"} {
				if strings.Contains(err.Error(), s) {
					t.Errorf("error repeats a secret: %q", err)
				}
			}
		})
	}
}

func flattenErrs(err error) []error {
	if u, ok := err.(interface{ Unwrap() []error }); ok {
		return u.Unwrap()
	}
	return []error{err}
}
