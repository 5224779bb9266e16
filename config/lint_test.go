package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Lint warns about what loads but is likely a mistake; CheckStateDir refuses a state_dir that
// mailhook run could not create.
func TestLintWarnings(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(path, []byte(`state_dir: ./state
accounts:
  - name: gmail
    imap: {host: imap.gmail.com, username: me@gmail.com, password: "${P}"}
  - name: work
    imap: {host: imap.example.com, username: me, password: $GMAIL_APP_PASSWORD}
webhooks:
  - name: ci
    url: https://ci.example.com/h
    secrets: ["$CI_WEBHOOK_SECRET", "${S}"]
rules:
  - name: ci-failures
    when: 'auth.dmarc == "pass"'
    actions: [{webhook: ci}]
  - name: gmail-only
    account: gmail
    when: 'auth.spf == "pass"'
    actions: [{webhook: ci}]
  - name: no-auth
    when: 'subject contains "author.dmarc"'
    actions: [{webhook: ci}]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	env := func(name string) (string, bool) {
		return map[string]string{"P": "p", "S": "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"}[name], true
	}
	_, _, err := Load(path, Options{Getenv: env})
	if err == nil || !strings.Contains(err.Error(), "secrets[0]") {
		// "$CI_WEBHOOK_SECRET" is no whsec_ secret: validation already refuses it.
		t.Fatalf("load: %v", err)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(mustRead(t, path), `"$CI_WEBHOOK_SECRET", `, "", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := Load(path, Options{Getenv: env})
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(cfg.Lint(), "\n")
	for _, want := range []string{
		`state_dir "./state" is relative`,
		`accounts[1] "work".imap.password looks like an unexpanded variable ($GMAIL_APP_PASSWORD): only ${NAME} is expanded, so it is used literally; write ${GMAIL_APP_PASSWORD}`,
		`rules[0] "ci-failures" reads auth.* but account "work" has no trusted_authserv_id`,
		`set accounts[1] "work".imap.trusted_authserv_id`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("warnings lack %q:\n%s", want, got)
		}
	}
	if n := strings.Count(got, "trusted_authserv_id, so"); n != 1 {
		t.Errorf("%d auth warnings, want 1 (gmail has a default id; gmail-only and no-auth are fine):\n%s", n, got)
	}
	cfg.StateDir = filepath.Join(dir, "state")
	if w := cfg.Lint(); len(w) != 2 {
		t.Errorf("absolute state_dir still warned: %q", w)
	}

	if err := CheckStateDir(filepath.Join(dir, "a", "b", "state")); err != nil {
		t.Errorf("a state_dir under a writable ancestor: %v", err)
	}
	if err := CheckStateDir(filepath.Join(path, "state")); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("a state_dir under a file: %v", err)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

// Chat formats need no signing secret; every other format does.
func TestChatFormatsNeedNoSecret(t *testing.T) {
	for _, tc := range []struct {
		format string
		ok     bool
	}{{"slack", true}, {"discord", true}, {"teams", true}, {"json", false}, {"github", false}} {
		path := filepath.Join(t.TempDir(), "c.yaml")
		yaml := strings.Replace(cfgMinimalYAML, "    secret: "+cfgSecret+"\n", "    format: "+tc.format+"\n", 1)
		if tc.format == "github" {
			yaml = strings.Replace(yaml, "https://hooks.example.com/mail", "https://api.github.com/repos/a/b/dispatches", 1)
		}
		if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		_, _, err := Load(path, Options{})
		if (err == nil) != tc.ok || (err != nil && !strings.Contains(err.Error(), "signing secret is required")) {
			t.Errorf("format %s without a secret: %v, want ok %v", tc.format, err, tc.ok)
		}
	}
}
