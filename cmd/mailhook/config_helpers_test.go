package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/mailhook/mailhook/config"
)

// Configuration helpers of the tests here; package config has the tests of the configuration
// itself.

// cfgSecret is a valid Standard Webhooks secret (32 bytes).
const cfgSecret = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="

// cfgMinimalYAML is a configuration with only the required keys: one account, one webhook, one
// rule.
const cfgMinimalYAML = `
accounts:
  - name: work
    imap:
      host: imap.example.com
      username: me@example.com
      password: hunter2
webhooks:
  - name: hook
    url: https://hooks.example.com/mail
    secret: ` + cfgSecret + `
rules:
  - name: all
    when: "true"
    actions:
      - webhook: hook
`

// cfgEnv returns a getenv over a fixed map.
func cfgEnv(vars map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		v, ok := vars[name]
		return v, ok
	}
}

// cfgWrite writes yaml to a temporary file and returns its path.
func cfgWrite(t *testing.T, yaml string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// cfgLoad loads yaml with the given environment.
func cfgLoad(t *testing.T, yaml string, vars map[string]string) (*config.Config, []string, error) {
	t.Helper()
	return config.Load(cfgWrite(t, yaml), config.Options{Getenv: cfgEnv(vars)})
}
