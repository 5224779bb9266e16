package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// With NoSecrets and Webhook, that webhook's secrets, URL and headers are resolved (and required),
// and no other secret is: the accounts' and the other webhooks' get stand-ins.
func TestNoSecretsButOneWebhook(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte(`accounts:
  - name: personal
    imap: {host: imap.example.com, username: me@example.com, password: "${IMAP_PASSWORD}"}
webhooks:
  - {name: ci, url: "${CI_URL}", secrets: ["${CI_SECRET}"], headers: [{name: X-Token, value: "${CI_TOKEN}"}]}
  - {name: ci2, url: "${CI2_URL}", secrets: ["${CI2_SECRET}"]}
rules:
  - {name: all, when: 'true', actions: [{webhook: ci}, {webhook: ci2}]}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"CI_URL": "https://ci.example.com/h", "CI_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "CI_TOKEN": "tok"}
	getenv := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	cfg, _, err := Load(path, Options{Getenv: getenv, NoSecrets: true, Webhook: "ci"})
	if err != nil {
		t.Fatal(err)
	}
	w := cfg.Webhooks[0]
	if w.URL != env["CI_URL"] || len(w.Secrets) != 1 || w.Secrets[0] != env["CI_SECRET"] || w.Headers[0].Value != "tok" {
		t.Errorf("webhook ci: url %q secrets %d headers %v; want its own values", w.URL, len(w.Secrets), w.Headers)
	}
	delete(env, "CI_SECRET")
	_, _, err = Load(path, Options{Getenv: getenv, NoSecrets: true, Webhook: "ci"})
	if err == nil || !strings.Contains(err.Error(), `webhooks[0] "ci".secrets[0]: ${CI_SECRET} is not set`) ||
		strings.Contains(err.Error(), "IMAP_PASSWORD") || strings.Contains(err.Error(), "CI2_") {
		t.Errorf("ci's secret unset: %v; want that one error alone", err)
	}
}
