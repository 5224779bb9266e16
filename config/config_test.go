package config

import (
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// cfgSecret is a valid Standard Webhooks secret (32 bytes).
const cfgSecret = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="

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
func cfgLoad(t *testing.T, yaml string, vars map[string]string) (*Config, []string, error) {
	t.Helper()
	return Load(cfgWrite(t, yaml), Options{Getenv: cfgEnv(vars)})
}

// cfgMinimalYAML is testdata/minimal.yaml's content with a placeholder for extra keys of the account,
// webhook and top level.
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

func TestLoadConfigExample(t *testing.T) {
	vars := map[string]string{
		"GMAIL_APP_PASSWORD": "abcd efgh ijkl mnop",
		"CI_WEBHOOK_SECRET":  cfgSecret,
		"CI_TOKEN":           "ci-token-123",
	}
	cfg, warnings, err := Load(filepath.Join("..", "config.example.yaml"), Options{Getenv: cfgEnv(vars)})
	if err != nil {
		t.Fatalf("config.example.yaml does not load:\n%v", err)
	}
	if len(warnings) != 0 {
		t.Errorf("warnings for the example: %q", warnings)
	}
	a := cfg.Accounts[0]
	if a.IMAP.Password != vars["GMAIL_APP_PASSWORD"] || a.SMTP.Password != vars["GMAIL_APP_PASSWORD"] {
		t.Errorf("passwords not expanded")
	}
	if a.Limits.DownloadPerDay != 2000*MB || a.Limits.MaxMessageSize != 25*MB {
		t.Errorf("limits = %+v", a.Limits)
	}
	w := cfg.Webhooks[0]
	if !slices.Equal(w.Secrets, []string{cfgSecret}) {
		t.Errorf("webhook secrets not expanded")
	}
	if got := w.Headers[0].Value; got != "Bearer ci-token-123" {
		t.Errorf("header value = %q", got)
	}
	if w.MaxBodyBytes != 256*KiB || w.Timeout != 15*time.Second || w.Retry.MaxAge != 72*time.Hour {
		t.Errorf("webhook = %+v", w)
	}
	var kinds []string
	for _, a := range cfg.Rules[0].Actions {
		kinds = append(kinds, a.Kind())
	}
	if want := []string{ActionWebhook, ActionReply, ActionMarkSeen, ActionFlag, ActionCopy, ActionMove}; !slices.Equal(kinds, want) {
		t.Errorf("action kinds = %v, want %v", kinds, want)
	}
	if got := cfg.Rules[0].Actions[3].Flag; !slices.Equal(got, []string{`\Flagged`, "$CI"}) {
		t.Errorf("flag = %q (keywords must survive ${} expansion)", got)
	}
	if s := a.SMTP; s.HelloName != "gmail.com" || s.Timeout != 30*time.Second {
		t.Errorf("smtp hello_name %q, timeout %s", s.HelloName, s.Timeout)
	}
	if r := cfg.Replies[0]; r.MaxReceived != 30 || r.HTML != "" || len(r.Suppress) != 0 {
		t.Errorf("reply = %+v", r)
	}
	if cfg.Replies[0].OncePer != 168*time.Hour {
		t.Errorf("once_per = %s", cfg.Replies[0].OncePer)
	}
}

// TestLoadConfigDefaults checks that a file with only the required keys yields the values
// config.example.yaml documents as defaults, so the documentation cannot drift.
func TestLoadConfigDefaults(t *testing.T) {
	cfg, warnings, err := Load(filepath.Join("testdata", "minimal.yaml"), Options{Getenv: cfgEnv(nil)})
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 0 {
		t.Errorf("warnings: %q", warnings)
	}
	if cfg.StateDir != "./mailhook-state" || cfg.Log != (LogConfig{Level: "info", Format: "text"}) ||
		cfg.HTTP.Listen != "127.0.0.1:9090" {
		t.Errorf("top level = %q %+v %+v", cfg.StateDir, cfg.Log, cfg.HTTP)
	}
	m := cfg.Accounts[0].IMAP
	if m.Port != 993 || m.Security != SecurityTLS || !slices.Equal(m.Mailboxes, []string{"INBOX"}) || m.Start != StartNew ||
		m.IdleRefresh != 10*time.Minute || m.PollInterval != 10*time.Minute || m.CommandTimeout != 2*time.Minute || m.TrustedAuthservID != "" {
		t.Errorf("imap = %+v", m)
	}
	if m.Backoff != (Backoff{Min: time.Second, Max: 5 * time.Minute, AuthMin: time.Minute, QuotaMin: time.Hour}) {
		t.Errorf("backoff = %+v", m.Backoff)
	}
	if l := cfg.Accounts[0].Limits; l != (Limits{DownloadPerDay: 2000 * MB, MaxMessageSize: 25 * MB, MaxConnections: 4, RepliesPerDay: 400}) {
		t.Errorf("limits = %+v", l)
	}
	if cfg.Accounts[0].SMTP.Configured() {
		t.Errorf("smtp configured without a host")
	}
	w := cfg.Webhooks[0]
	want := Webhook{
		Name: "hook", URL: "https://hooks.example.com/mail", Secrets: []string{cfgSecret},
		Format: "json", Body: "text", MaxBodyBytes: 256 * KiB, Attachments: "metadata", Timeout: 15 * time.Second,
		Retry:       RetryConfig{MaxAge: 72 * time.Hour, MinBackoff: 5 * time.Second, MaxBackoff: time.Hour},
		Concurrency: 4,
	}
	if !cfgEqualWebhook(w, want) {
		t.Errorf("webhook =\n%+v, want\n%+v", w, want)
	}
}

func cfgEqualWebhook(a, b Webhook) bool {
	return slices.Equal(a.Secrets, b.Secrets) && slices.Equal(a.Headers, b.Headers) &&
		a.Name == b.Name && a.URL == b.URL && a.Secret == b.Secret && a.SecretFile == b.SecretFile &&
		a.Format == b.Format && a.Body == b.Body && a.MaxBodyBytes == b.MaxBodyBytes && a.Attachments == b.Attachments &&
		a.AttachmentsWhen == b.AttachmentsWhen && a.Timeout == b.Timeout && a.Retry == b.Retry &&
		a.Insecure == b.Insecure && a.AllowLinkLocal == b.AllowLinkLocal && a.Concurrency == b.Concurrency
}

func TestLoadConfigGmailDefaults(t *testing.T) {
	yaml := strings.Replace(cfgMinimalYAML, "imap.example.com", "imap.gmail.com", 1)
	cfg, _, err := cfgLoad(t, yaml, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Accounts[0].IMAP.TrustedAuthservID; got != "mx.google.com" {
		t.Errorf("trusted_authserv_id = %q, want mx.google.com", got)
	}
}

func TestLoadConfigTopLevelOverrides(t *testing.T) {
	tests := []struct {
		name   string
		extra  string
		listen string
		log    LogConfig
	}{
		{"defaults", "", "127.0.0.1:9090", LogConfig{"info", "text"}},
		{"listen disabled", `http: {listen: ""}`, "", LogConfig{"info", "text"}},
		{"listen set", `http: {listen: ":8080"}`, ":8080", LogConfig{"info", "text"}},
		{"partial log keeps other default", `log: {level: debug}`, "127.0.0.1:9090", LogConfig{"debug", "text"}},
		{"log format only", "log:\n  format: json", "127.0.0.1:9090", LogConfig{"info", "json"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, _, err := cfgLoad(t, tt.extra+"\n"+cfgMinimalYAML, nil)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.HTTP.Listen != tt.listen {
				t.Errorf("http.listen = %q, want %q", cfg.HTTP.Listen, tt.listen)
			}
			if cfg.Log != tt.log {
				t.Errorf("log = %+v, want %+v", cfg.Log, tt.log)
			}
		})
	}
}

func TestLoadConfigUnknownKeys(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // substrings of the error
	}{
		{"top level", "stat_dir: /tmp\n" + cfgMinimalYAML, []string{"stat_dir: unknown key"}},
		{"nested in account", strings.Replace(cfgMinimalYAML, "host:", "hostname:", 1), []string{"accounts[0].imap.hostname: unknown key"}},
		{"nested struct in webhook", strings.Replace(cfgMinimalYAML, "    url:", "    retry: {maxage: 1h}\n    url:", 1),
			[]string{"webhooks[0].retry.maxage: unknown key"}},
		{"action", strings.Replace(cfgMinimalYAML, "- webhook: hook", "- mark_unseen: true", 1), []string{"rules[0].actions[0].mark_unseen: unknown key"}},
		{"nested in oauth2", strings.Replace(cfgMinimalYAML, "password: hunter2", "oauth2: {client_id: x, refresh: y}", 1), []string{"accounts[0].imap.oauth2.refresh: unknown key"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := cfgLoad(t, tt.yaml, nil)
			if err == nil {
				t.Fatal("unknown key accepted")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestLoadConfigUnknownKeyFixture(t *testing.T) {
	_, _, err := Load(filepath.Join("testdata", "unknown-nested.yaml"), Options{Getenv: cfgEnv(nil)})
	if err == nil || !strings.Contains(err.Error(), "accounts[0].imap.hostname: unknown key") {
		t.Fatalf("err = %v, want one naming accounts[0].imap.hostname", err)
	}
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "accounts[0].imap.hostname" {
		t.Errorf("FieldError = %+v", fe)
	}
}

func TestLoadConfigMissingFile(t *testing.T) {
	_, _, err := Load(filepath.Join(t.TempDir(), "absent.yaml"), Options{Getenv: cfgEnv(nil)})
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v, want not-exist", err)
	}
}

func TestLoadConfigEnvExpansion(t *testing.T) {
	yaml := `
accounts:
  - name: work
    imap:
      host: ${IMAP_HOST}
      username: me@example.com
      password: "${PASS_A}-${PASS_B}$$x$y"
webhooks:
  - name: hook
    url: https://hooks.example.com/mail
    secrets: ["${SECRET}"]
rules:
  - name: label
    when: 'subject contains "${not expanded: no valid name}"' # malformed: must be refused
    actions:
      - flag: [$Label, \Flagged]
`
	vars := map[string]string{"IMAP_HOST": "imap.example.com", "PASS_A": "a", "PASS_B": "b", "SECRET": cfgSecret}

	_, _, err := cfgLoad(t, yaml, vars)
	if err == nil || !strings.Contains(err.Error(), `rules[0] "label".when`) || !strings.Contains(err.Error(), "malformed") {
		t.Fatalf("malformed reference: err = %v", err)
	}

	yaml = strings.Replace(yaml, `"${not expanded: no valid name}"`, `"$HOME"`, 1)
	cfg, _, err := cfgLoad(t, yaml, vars)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Accounts[0].IMAP.Host; got != "imap.example.com" {
		t.Errorf("host = %q", got)
	}
	if got := cfg.Accounts[0].IMAP.Password; got != "a-b$$x$y" {
		t.Errorf("password = %q, want a-b$$x$y", got)
	}
	if got := cfg.Rules[0].Actions[0].Flag; !slices.Equal(got, []string{"$Label", `\Flagged`}) {
		t.Errorf("flags = %q", got)
	}
	if got := cfg.Rules[0].When; got != `subject contains "$HOME"` {
		t.Errorf("when = %q", got)
	}
	if got := cfg.Webhooks[0].Secrets; !slices.Equal(got, []string{cfgSecret}) {
		t.Errorf("secrets not expanded")
	}
}

func TestLoadConfigEnvUnset(t *testing.T) {
	yaml := strings.Replace(cfgMinimalYAML, "password: hunter2", "password: ${GMAIL_APP_PASSWORD}", 1)
	yaml = strings.Replace(yaml, "url: https://hooks.example.com/mail", "url: https://${HOOK_HOST}/mail", 1)
	_, _, err := cfgLoad(t, yaml, map[string]string{"UNRELATED": "x"})
	if err == nil {
		t.Fatal("unset variable accepted")
	}
	for _, want := range []string{
		`accounts[0] "work".imap.password: ${GMAIL_APP_PASSWORD} is not set`,
		`webhooks[0] "hook".url: ${HOOK_HOST} is not set`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Errorf("error is not a *FieldError")
	}

	// Set but empty is set: the empty password is then refused by validation, not as unset.
	_, _, err = cfgLoad(t, yaml, map[string]string{"GMAIL_APP_PASSWORD": "", "HOOK_HOST": "h.example.com"})
	if err == nil || strings.Contains(err.Error(), "not set") || !strings.Contains(err.Error(), "imap.password: required") {
		t.Errorf("empty variable: err = %v", err)
	}
}

func TestLoadConfigSecretFiles(t *testing.T) {
	// The test runs in the package directory, so the fixture's relative paths resolve.
	cfg, _, err := Load(filepath.Join("testdata", "files.yaml"), Options{Getenv: cfgEnv(map[string]string{"NOT_EXPANDED": "boom"})})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.Accounts[0].IMAP.Password, "pa$$word ${NOT_EXPANDED} $Label"; got != want {
		t.Errorf("password from file = %q, want %q (trailing newline trimmed, nothing expanded)", got, want)
	}
	if got := cfg.Webhooks[0].Secrets; !slices.Equal(got, []string{cfgSecret}) {
		t.Errorf("secret from file not folded into secrets: %d secrets", len(got))
	}
	if cfg.Webhooks[0].Secret != "" {
		t.Errorf("Secret left set after folding")
	}
}

func TestLoadConfigSecretFileErrors(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	huge := filepath.Join(dir, "huge")
	if err := os.WriteFile(huge, make([]byte, maxSecretFileSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	absent := filepath.Join(dir, "absent")
	tests := []struct {
		name, old, new, want string
	}{
		{"both password and file", "password: hunter2", "password: hunter2\n      password_file: " + empty,
			`accounts[0] "work".imap.password_file: set both password and password_file`},
		{"missing file", "password: hunter2", "password_file: " + absent, `accounts[0] "work".imap.password_file: open`},
		{"empty file", "password: hunter2", "password_file: " + empty, `imap.password_file: file ` + empty + ` is empty`},
		{"huge file", "password: hunter2", "password_file: " + huge, `imap.password_file: file ` + huge + ` is larger`},
		{"secret and secret_file", "secret: " + cfgSecret, "secret: " + cfgSecret + "\n    secret_file: " + empty,
			`webhooks[0] "hook".secret_file: set both secret and secret_file`},
		{"secrets and secret_file", "secret: " + cfgSecret, "secrets: [" + cfgSecret + "]\n    secret_file: " + empty,
			`webhooks[0] "hook".secret_file: set both secret_file and secrets`},
		{"smtp password file", "password: hunter2", "password: hunter2\n    smtp: {host: localhost, username: u, password_file: " + absent + "}",
			`accounts[0] "work".smtp.password_file: open`},
		{"ca file without certificate", "password: hunter2", "password: hunter2\n      tls: {ca_file: " + empty + "}",
			`accounts[0] "work".imap.tls.ca_file: no PEM certificate`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			yaml := strings.Replace(cfgMinimalYAML, tt.old, tt.new, 1)
			if yaml == cfgMinimalYAML {
				t.Fatal("replacement did not apply")
			}
			_, _, err := cfgLoad(t, yaml, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestParseByteSize(t *testing.T) {
	tests := []struct {
		in   string
		want ByteSize
	}{
		{"0", 0},
		{"4096", 4096},
		{"1B", 1},
		{"2000MB", 2_000_000_000},
		{"25MB", 25_000_000},
		{"25 MB", 25_000_000},
		{"25mb", 25_000_000},
		{"1kB", 1000},
		{"256KiB", 262_144},
		{"25MiB", 26_214_400},
		{"1GB", 1_000_000_000},
		{"1GiB", 1 << 30},
		{"2TB", 2_000_000_000_000},
		{"1.5GB", 1_500_000_000},
		{"0.5KiB", 512},
		{" 7 B ", 7},
	}
	for _, tt := range tests {
		got, err := ParseByteSize(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "MB", "25M", "25XB", "-1MB", "1.1B", "0.3KB5", "99999999999TiB", "1..5MB", "1e3"} {
		if got, err := ParseByteSize(bad); err == nil {
			t.Errorf("ParseByteSize(%q) = %d, want an error", bad, got)
		}
	}
}

func TestByteSizeString(t *testing.T) {
	tests := []struct {
		in   ByteSize
		want string
	}{
		{0, "0B"}, {1500, "1500B"}, {25 * MB, "25MB"}, {2000 * MB, "2GB"}, {256 * KiB, "256KiB"}, {25 * MiB, "25MiB"}, {7, "7B"},
	}
	for _, tt := range tests {
		if got := tt.in.String(); got != tt.want {
			t.Errorf("ByteSize(%d).String() = %q, want %q", int64(tt.in), got, tt.want)
		}
		back, err := ParseByteSize(tt.in.String())
		if err != nil || back != tt.in {
			t.Errorf("round trip of %d: %d, %v", int64(tt.in), back, err)
		}
	}
}

func TestLoadConfigSizesAndDurations(t *testing.T) {
	extra := `
    limits:
      download_per_day: 1.5GB
      max_message_size: 10485760
      max_connections: 2`
	yaml := strings.Replace(cfgMinimalYAML, "      password: hunter2", "      password: hunter2\n      idle_refresh: 2s\n      start: 2026-01-01"+extra, 1)
	yaml = strings.Replace(yaml, "    secret:", "    max_body_bytes: 64KiB\n    timeout: 2500ms\n    secret:", 1)
	cfg, _, err := cfgLoad(t, yaml, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := cfg.Accounts[0]
	if a.Limits.DownloadPerDay != 1_500_000_000 || a.Limits.MaxMessageSize != 10*MiB || a.Limits.MaxConnections != 2 {
		t.Errorf("limits = %+v", a.Limits)
	}
	if a.IMAP.IdleRefresh != 2*time.Second || a.IMAP.Start != "2026-01-01" {
		t.Errorf("idle_refresh = %s, start = %q", a.IMAP.IdleRefresh, a.IMAP.Start)
	}
	if w := cfg.Webhooks[0]; w.MaxBodyBytes != 64*KiB || w.Timeout != 2500*time.Millisecond {
		t.Errorf("webhook max_body_bytes = %s, timeout = %s", w.MaxBodyBytes, w.Timeout)
	}

	for _, tt := range []struct{ name, old, new, want string }{
		{"bare number duration", "    secret:", "    timeout: 15\n    secret:", "has no unit"},
		{"bad duration", "    secret:", "    timeout: soon\n    secret:", "webhooks[0].timeout"},
		{"bad size", "    secret:", "    max_body_bytes: 10 parsecs\n    secret:", "unknown unit"},
		{"negative size", "    secret:", "    max_body_bytes: -5\n    secret:", "negative"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := cfgLoad(t, strings.Replace(cfgMinimalYAML, tt.old, tt.new, 1), nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestLoadConfigSingleStringIsOneElementList(t *testing.T) {
	yaml := strings.Replace(cfgMinimalYAML, "      password: hunter2", "      password: hunter2\n      mailboxes: \"Work, Personal\"", 1)
	yaml = strings.Replace(yaml, "- webhook: hook", "- webhook: hook\n      - flag: \\Flagged", 1)
	cfg, _, err := cfgLoad(t, yaml, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Accounts[0].IMAP.Mailboxes; !slices.Equal(got, []string{"Work, Personal"}) {
		t.Errorf("mailboxes = %q: a single string must be one mailbox, never split on commas", got)
	}
	if got := cfg.Rules[0].Actions[1].Flag; !slices.Equal(got, []string{`\Flagged`}) {
		t.Errorf("flag = %q", got)
	}
}

func TestLoadConfigWarnings(t *testing.T) {
	yaml := strings.Replace(cfgMinimalYAML, "imap.example.com", "imap.gmail.com", 1)
	yaml = strings.Replace(yaml, "      password: hunter2", "      password: hunter2\n      poll_interval: 1m", 1)
	yaml = strings.Replace(yaml, "url: https://hooks.example.com/mail", "url: http://hooks.example.com/mail?token=tok-xyz\n    insecure: true", 1)
	cfg, warnings, err := cfgLoad(t, yaml, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Accounts[0].IMAP.PollInterval; got != 10*time.Minute {
		t.Errorf("Gmail poll_interval = %s, want raised to 10m", got)
	}
	joined := strings.Join(warnings, "\n")
	for _, want := range []string{
		`accounts[0] "work".imap.poll_interval: 1m0s is below the minimum of 10m0s for Gmail`,
		`webhooks[0] "hook".url: plain http to hooks.example.com (insecure: true)`,
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("warnings %q lack %q", warnings, want)
		}
	}
	if strings.Contains(joined, "tok-xyz") {
		t.Errorf("warning leaks the URL's token: %q", warnings)
	}

	yaml = strings.Replace(cfgMinimalYAML, "      password: hunter2", "      password: hunter2\n      poll_interval: 5s", 1)
	cfg, warnings, err = cfgLoad(t, yaml, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Accounts[0].IMAP.PollInterval; got != 30*time.Second || len(warnings) != 1 {
		t.Errorf("poll_interval = %s, warnings %q; want raised to 30s with one warning", got, warnings)
	}
}

// cfgValid returns a valid configuration built in code, with defaults applied.
func cfgValid() *Config {
	c := Default()
	c.Accounts = []Account{{
		Name: "personal",
		IMAP: IMAPConfig{Host: "imap.gmail.com", Username: "me@gmail.com", Password: "app-password-1", Mailboxes: []string{"INBOX", "Work"}},
		SMTP: SMTPConfig{Host: "smtp.gmail.com", Username: "me@gmail.com", Password: "app-password-1"},
	}, {
		Name: "other",
		IMAP: IMAPConfig{Host: "127.0.0.1", Port: 1143, Security: SecurityPlain, Username: "u", Password: "p"},
	}}
	c.Webhooks = []Webhook{
		{Name: "ci", URL: "https://ci.example.com/hook", Secrets: []string{cfgSecret}},
		{Name: "local", URL: "http://localhost:8080/hook", Secret: cfgSecret},
	}
	c.Replies = []Reply{{Name: "ack", Subject: "Re: {{ .Subject }}", Body: "Thanks."}}
	c.Rules = []Rule{
		{Name: "ci-failures", Account: "personal", Mailbox: "INBOX", When: "true",
			Actions: []Action{{Webhook: "ci"}, {Reply: "ack"}, {MarkSeen: true}, {Flag: []string{"$Label"}}, {Move: "Processed"}}},
		{Name: "everything", When: "true", Actions: []Action{{Webhook: "local"}}},
	}
	c.ApplyDefaults()
	return c
}

func TestValidConfigIsValid(t *testing.T) {
	if err := cfgValid().Validate(); err != nil {
		t.Fatalf("cfgValid: %v", err)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(c *Config)
		field  string // must appear in the error
		msg    string // must appear in the error
	}{
		// Top level.
		{"state_dir empty", func(c *Config) { c.StateDir = "" }, "state_dir", "required"},
		{"log level", func(c *Config) { c.Log.Level = "verbose" }, "log.level", `"verbose" is not one of`},
		{"log format", func(c *Config) { c.Log.Format = "xml" }, "log.format", "not one of"},
		{"http listen", func(c *Config) { c.HTTP.Listen = "9090" }, "http.listen", "host:port"},
		{"no accounts", func(c *Config) { c.Accounts = nil; c.Rules = nil }, "accounts", "at least one account"},

		// Names.
		{"account name missing", func(c *Config) { c.Accounts[1].Name = "" }, "accounts[1].name", "required"},
		{"account name duplicate", func(c *Config) { c.Accounts[1].Name = "personal" }, `accounts[1] "personal".name`, "duplicate"},
		{"webhook name invalid", func(c *Config) { c.Webhooks[0].Name = "ci hooks"; c.Rules[0].Actions[0].Webhook = "ci hooks" },
			`webhooks[0] "ci hooks".name`, "letters, digits"},
		{"webhook name duplicate", func(c *Config) { c.Webhooks[1].Name = "ci" }, `webhooks[1] "ci".name`, "duplicate"},
		{"reply name duplicate", func(c *Config) { c.Replies = append(c.Replies, c.Replies[0]) }, `replies[1] "ack".name`, "duplicate"},
		{"rule name missing", func(c *Config) { c.Rules[1].Name = "" }, "rules[1].name", "required"},
		{"rule name duplicate", func(c *Config) { c.Rules[1].Name = "ci-failures" }, `rules[1] "ci-failures".name`, "duplicate"},

		// IMAP.
		{"imap host missing", func(c *Config) { c.Accounts[0].IMAP.Host = "" }, `accounts[0] "personal".imap.host`, "required"},
		{"imap host url", func(c *Config) { c.Accounts[0].IMAP.Host = "imaps://imap.gmail.com" }, `accounts[0] "personal".imap.host`, "host name only"},
		{"imap port", func(c *Config) { c.Accounts[0].IMAP.Port = 70000 }, `accounts[0] "personal".imap.port`, "not a TCP port"},
		{"imap security", func(c *Config) { c.Accounts[0].IMAP.Security = "ssl" }, `accounts[0] "personal".imap.security`, `"ssl" is not one of tls, starttls, plain`},
		{"imap plain remote", func(c *Config) { c.Accounts[0].IMAP.Security = SecurityPlain }, `accounts[0] "personal".imap.security`, "insecure: true"},
		{"imap plain with tls settings", func(c *Config) { c.Accounts[1].IMAP.TLS.ServerName = "x" }, `accounts[1] "other".imap.tls`, "security is plain"},
		{"imap username", func(c *Config) { c.Accounts[0].IMAP.Username = "" }, `accounts[0] "personal".imap.username`, "required"},
		{"imap password", func(c *Config) { c.Accounts[0].IMAP.Password = "" }, `accounts[0] "personal".imap.password`, "required"},
		{"mailbox empty", func(c *Config) { c.Accounts[0].IMAP.Mailboxes[1] = " " }, `accounts[0] "personal".imap.mailboxes[1]`, "empty"},
		{"mailbox twice", func(c *Config) { c.Accounts[0].IMAP.Mailboxes[1] = "inbox" }, `accounts[0] "personal".imap.mailboxes[1]`, "twice"},
		{"start", func(c *Config) { c.Accounts[0].IMAP.Start = "yesterday" }, `accounts[0] "personal".imap.start`, "new, all or a date"},
		{"start bad date", func(c *Config) { c.Accounts[0].IMAP.Start = "2026-13-01" }, `accounts[0] "personal".imap.start`, "new, all or a date"},
		{"idle_refresh too long", func(c *Config) { c.Accounts[0].IMAP.IdleRefresh = 29 * time.Minute }, `accounts[0] "personal".imap.idle_refresh`, "outside 1s–25m"},
		{"idle_refresh too short", func(c *Config) { c.Accounts[0].IMAP.IdleRefresh = time.Millisecond }, `accounts[0] "personal".imap.idle_refresh`, "outside"},
		{"poll_interval unraised", func(c *Config) { c.Accounts[1].IMAP.PollInterval = time.Second }, `accounts[1] "other".imap.poll_interval`, "below the minimum"},
		{"command_timeout", func(c *Config) { c.Accounts[0].IMAP.CommandTimeout = time.Hour }, `accounts[0] "personal".imap.command_timeout`, "outside 1s–10m"},
		{"authserv id", func(c *Config) { c.Accounts[0].IMAP.TrustedAuthservID = "mx google" }, `accounts[0] "personal".imap.trusted_authserv_id`, "spaces"},
		{"backoff order", func(c *Config) { c.Accounts[0].IMAP.Backoff.Max = time.Millisecond }, `accounts[0] "personal".imap.backoff.max`, "less than backoff.min"},
		{"backoff negative", func(c *Config) { c.Accounts[0].IMAP.Backoff.AuthMin = -time.Second }, `accounts[0] "personal".imap.backoff.auth_min`, "positive"},

		// SMTP.
		{"smtp without host", func(c *Config) { c.Accounts[1].SMTP.Username = "u" }, `accounts[1] "other".smtp.host`, "required when smtp is configured"},
		{"smtp plain remote", func(c *Config) { c.Accounts[0].SMTP.Security = SecurityPlain }, `accounts[0] "personal".smtp.security`, "insecure: true"},
		{"smtp from", func(c *Config) { c.Accounts[0].SMTP.From = "not an address" }, `accounts[0] "personal".smtp.from`, "not an email address"},
		{"smtp envelope", func(c *Config) { c.Accounts[0].SMTP.EnvelopeFrom = "Me <me@gmail.com>" }, `accounts[0] "personal".smtp.envelope_from`, "bare address"},
		{"smtp password without username", func(c *Config) { c.Accounts[0].SMTP.Username = "" }, `accounts[0] "personal".smtp.username`, "required with a password"},

		// Limits.
		{"download budget too small", func(c *Config) { c.Accounts[0].Limits.DownloadPerDay = 99 * MB }, `accounts[0] "personal".limits.download_per_day`, "at least 4 × max_message_size"},
		{"max message size", func(c *Config) { c.Accounts[0].Limits.MaxMessageSize = -1 }, `accounts[0] "personal".limits.max_message_size`, "positive"},
		{"connections below mailboxes", func(c *Config) { c.Accounts[0].Limits.MaxConnections = 1 }, `accounts[0] "personal".limits.max_connections`, "fewer than the 2 watched mailboxes"},
		{"replies per day", func(c *Config) { c.Accounts[0].Limits.RepliesPerDay = -1 }, `accounts[0] "personal".limits.replies_per_day`, "at least 1"},

		// Webhooks.
		{"url missing", func(c *Config) { c.Webhooks[0].URL = "" }, `webhooks[0] "ci".url`, "required"},
		{"url unparsable", func(c *Config) { c.Webhooks[0].URL = "https://ci.example.com/%zz" }, `webhooks[0] "ci".url`, "not a valid URL"},
		{"url scheme", func(c *Config) { c.Webhooks[0].URL = "ftp://ci.example.com/" }, `webhooks[0] "ci".url`, "scheme must be http or https"},
		{"url no host", func(c *Config) { c.Webhooks[0].URL = "https:///path" }, `webhooks[0] "ci".url`, "no host"},
		{"url plain http remote", func(c *Config) { c.Webhooks[0].URL = "http://ci.example.com/hook" }, `webhooks[0] "ci".url`, "needs insecure: true"},
		{"no secret", func(c *Config) { c.Webhooks[0].Secrets = nil }, `webhooks[0] "ci".secrets`, "signing secret is required"},
		{"secret and secrets", func(c *Config) { c.Webhooks[0].Secret = cfgSecret }, `webhooks[0] "ci".secrets`, "set both secret and secrets"},
		{"secret prefix", func(c *Config) { c.Webhooks[1].Secret = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=" }, `webhooks[1] "local".secret`, "want whsec_ followed by base64"},
		{"secret base64", func(c *Config) { c.Webhooks[0].Secrets = []string{cfgSecret, "whsec_!!!"} }, `webhooks[0] "ci".secrets[1]`, "not valid base64"},
		{"secret too short", func(c *Config) {
			c.Webhooks[0].Secrets = []string{"whsec_" + base64.StdEncoding.EncodeToString(make([]byte, 23))}
		}, `webhooks[0] "ci".secrets[0]`, "decodes to 23 bytes, want 24 to 64"},
		{"secret too long", func(c *Config) {
			c.Webhooks[0].Secrets = []string{"whsec_" + base64.StdEncoding.EncodeToString(make([]byte, 67))}
		}, `webhooks[0] "ci".secrets[0]`, "decodes to 67 bytes"},
		{"header name", func(c *Config) { c.Webhooks[0].Headers = []Header{{Name: "X Bad", Value: "v"}} }, `webhooks[0] "ci".headers[0].name`, "not a valid header name"},
		{"header reserved", func(c *Config) { c.Webhooks[0].Headers = []Header{{Name: "Webhook-Signature", Value: "v"}} }, `webhooks[0] "ci".headers[0].name`, "cannot be overridden"},
		{"header value", func(c *Config) { c.Webhooks[0].Headers = []Header{{Name: "X-A", Value: "a\r\nB: c"}} }, `webhooks[0] "ci".headers[0].value`, "CR, LF"},
		{"format unknown", func(c *Config) { c.Webhooks[0].Format = "xml" }, `webhooks[0] "ci".format`, "not one of json, slack"},
		{"template missing", func(c *Config) { c.Webhooks[0].Format = "template" }, `webhooks[0] "ci".template`, "required"},
		{"template not JSON", func(c *Config) { c.Webhooks[0].Format, c.Webhooks[0].Template = "template", `{"s": "{{ .Subject }}"}` },
			`webhooks[0] "ci".template`, "not valid JSON"},
		{"template field", func(c *Config) { c.Webhooks[0].Format, c.Webhooks[0].Template = "template", `{{ json .Sbject }}` },
			`webhooks[0] "ci".template`, "Sbject"},
		{"template on json", func(c *Config) { c.Webhooks[0].Template = `{}` }, `webhooks[0] "ci".template`, "only to format: template"},
		{"content_type", func(c *Config) { c.Webhooks[0].Format, c.Webhooks[0].ContentType = "slack", "text/plain" },
			`webhooks[0] "ci".content_type`, "only to format: template"},
		{"event_type", func(c *Config) { c.Webhooks[0].Format, c.Webhooks[0].EventType = "github", strings.Repeat("e", 101) },
			`webhooks[0] "ci".event_type`, "longer than 100"},
		{"inline needs json", func(c *Config) { c.Webhooks[0].Format, c.Webhooks[0].Attachments = "slack", AttachmentsInline },
			`webhooks[0] "ci".attachments`, "inline needs format: json"},
		{"disable_after", func(c *Config) { c.Webhooks[0].DisableAfter = -time.Hour }, `webhooks[0] "ci".disable_after`, "positive"},
		{"body", func(c *Config) { c.Webhooks[0].Body = "all" }, `webhooks[0] "ci".body`, "not one of none, text, html, both"},
		{"max body bytes", func(c *Config) { c.Webhooks[0].MaxBodyBytes = -1 }, `webhooks[0] "ci".max_body_bytes`, "positive"},
		{"attachments unknown", func(c *Config) { c.Webhooks[0].Attachments = "all" }, `webhooks[0] "ci".attachments`, "not one of none, metadata, inline"},
		{"attachments_when without inline", func(c *Config) { c.Webhooks[0].AttachmentsWhen = "true" }, `webhooks[0] "ci".attachments_when`, "only to attachments: inline"},
		{"attachments_when typo", func(c *Config) {
			c.Webhooks[0].Attachments, c.Webhooks[0].AttachmentsWhen = AttachmentsInline, `content_tpye == "application/pdf"`
		}, `webhooks[0] "ci".attachments_when`, "unknown name content_tpye (1:1)\n | content_tpye == \"application/pdf\"\n | ^"},
		{"attachments_when not bool", func(c *Config) {
			c.Webhooks[0].Attachments, c.Webhooks[0].AttachmentsWhen = AttachmentsInline, `size`
		}, `webhooks[0] "ci".attachments_when`, "bool"},
		{"max_inline_bytes", func(c *Config) { c.Webhooks[0].MaxInlineBytes = -1 }, `webhooks[0] "ci".max_inline_bytes`, "positive"},
		{"timeout too long", func(c *Config) { c.Webhooks[0].Timeout = 31 * time.Second }, `webhooks[0] "ci".timeout`, "outside (0, 30s]"},
		{"retry backoff order", func(c *Config) { c.Webhooks[0].Retry.MaxBackoff = time.Second }, `webhooks[0] "ci".retry.max_backoff`, "less than min_backoff"},
		{"retry max age", func(c *Config) { c.Webhooks[0].Retry.MaxAge = -time.Hour }, `webhooks[0] "ci".retry.max_age`, "positive"},
		{"concurrency", func(c *Config) { c.Webhooks[0].Concurrency = 1000 }, `webhooks[0] "ci".concurrency`, "outside 1–64"},

		// Replies.
		{"reply subject", func(c *Config) { c.Replies[0].Subject = "" }, `replies[0] "ack".subject`, "required"},
		{"reply body", func(c *Config) { c.Replies[0].Body = " " }, `replies[0] "ack".body`, "required"},
		{"reply once_per", func(c *Config) { c.Replies[0].OncePer = time.Hour }, `replies[0] "ack".once_per`, "below the minimum of 24h"},
		{"reply own address", func(c *Config) { c.Replies[0].OwnAddresses = []string{"me@gmail.com", "nope"} }, `replies[0] "ack".own_addresses[1]`, "not an email address"},

		// Rules.
		{"rule account", func(c *Config) { c.Rules[0].Account = "nobody" }, `rules[0] "ci-failures".account`, `no account named "nobody"`},
		{"rule mailbox of account", func(c *Config) { c.Rules[0].Mailbox = "Spam" }, `rules[0] "ci-failures".mailbox`, `"Spam" is not in the mailboxes of account "personal"`},
		{"rule mailbox of any", func(c *Config) { c.Rules[1].Mailbox = "Spam" }, `rules[1] "everything".mailbox`, "not watched by any account"},
		{"rule when", func(c *Config) { c.Rules[0].When = "  " }, `rules[0] "ci-failures".when`, "required"},
		{"rule no actions", func(c *Config) { c.Rules[0].Actions = nil }, `rules[0] "ci-failures".actions`, "at least one action"},
		{"action empty", func(c *Config) { c.Rules[0].Actions[2].MarkSeen = false }, `rules[0] "ci-failures".actions[2]`, "no action set"},
		{"action two keys", func(c *Config) { c.Rules[0].Actions[0].Copy = "Archive" }, `rules[0] "ci-failures".actions[0]`, "sets webhook and copy"},
		{"action webhook unknown", func(c *Config) { c.Rules[0].Actions[0].Webhook = "cd" }, `rules[0] "ci-failures".actions[0].webhook`, `no webhook named "cd"`},
		{"action reply unknown", func(c *Config) { c.Rules[0].Actions[1].Reply = "nack" }, `rules[0] "ci-failures".actions[1].reply`, `no reply named "nack"`},
		{"action reply without smtp", func(c *Config) { c.Rules[1].Actions = append(c.Rules[1].Actions, Action{Reply: "ack"}) },
			`rules[1] "everything".actions[1].reply`, `account "other" has no smtp.host`},
		{"action flag", func(c *Config) { c.Rules[0].Actions[3].Flag = []string{"$Label", "two words"} }, `rules[0] "ci-failures".actions[3].flag[1]`, "not a valid IMAP flag"},
		{"action flag recent", func(c *Config) { c.Rules[0].Actions[3].Flag = []string{`\Recent`} }, `rules[0] "ci-failures".actions[3].flag[0]`, "not a valid IMAP flag"},
		{"action after move", func(c *Config) { c.Rules[0].Actions = append(c.Rules[0].Actions, Action{Copy: "Archive"}) },
			`rules[0] "ci-failures".actions[5].copy`, "after a move"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := cfgValid()
			tt.mutate(c)
			err := c.Validate()
			if err == nil {
				t.Fatal("Validate accepted it")
			}
			if !strings.Contains(err.Error(), tt.field+": ") || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("error\n%v\nwant field %q with %q", err, tt.field, tt.msg)
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field == "" {
				t.Errorf("no *FieldError in %v", err)
			}
		})
	}
}

func TestValidatePermits(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(c *Config)
	}{
		{"short idle_refresh for demos", func(c *Config) { c.Accounts[1].IMAP.IdleRefresh = 2 * time.Second }},
		{"start date", func(c *Config) { c.Accounts[0].IMAP.Start = "2026-01-01" }},
		{"start all", func(c *Config) { c.Accounts[0].IMAP.Start = StartAll }},
		{"http listen disabled", func(c *Config) { c.HTTP.Listen = "" }},
		{"plain http to loopback IP", func(c *Config) { c.Webhooks[1].URL = "http://127.0.0.1:9/x" }},
		{"plain http to IPv6 loopback", func(c *Config) { c.Webhooks[1].URL = "http://[::1]:9/x" }},
		{"plain http remote with insecure", func(c *Config) { c.Webhooks[0].URL = "http://ci.example.com/"; c.Webhooks[0].Insecure = true }},
		{"plain imap remote with insecure", func(c *Config) {
			c.Accounts[1].IMAP.Host = "mail.internal"
			c.Accounts[1].IMAP.Insecure = true
		}},
		{"two secrets while rotating", func(c *Config) {
			c.Webhooks[0].Secrets = append(c.Webhooks[0].Secrets, "whsec_"+base64.StdEncoding.EncodeToString(make([]byte, 24)))
		}},
		{"system flag", func(c *Config) { c.Rules[0].Actions[3].Flag = []string{`\Flagged`, "$Label", "Junk"} }},
		{"inbox case-insensitive in rule", func(c *Config) { c.Rules[0].Mailbox = "inbox" }},
		{"webhook and reply after move", func(c *Config) { c.Rules[0].Actions = append(c.Rules[0].Actions, Action{Webhook: "local"}) }},
		{"attachments none, body both", func(c *Config) { c.Webhooks[0].Attachments = AttachmentsNone; c.Webhooks[0].Body = BodyBoth }},
		{"attachments inline with attachments_when", func(c *Config) {
			c.Webhooks[0].Attachments, c.Webhooks[0].AttachmentsWhen = AttachmentsInline, `content_type == "application/pdf" && size < 5000000`
		}},
		{"smtp on loopback without auth", func(c *Config) {
			c.Accounts[1].SMTP = SMTPConfig{Host: "localhost", Security: SecurityPlain, Port: 25, From: "bot@example.com",
				HelloName: "example.com", Timeout: 30 * time.Second}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := cfgValid()
			tt.mutate(c)
			if err := c.Validate(); err != nil {
				t.Fatalf("refused: %v", err)
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	c := cfgValid()
	c.Log.Level = "loud"
	c.Accounts[0].IMAP.Port = 0
	c.Webhooks[0].Timeout = time.Hour
	c.Rules[1].When = ""
	err := c.Validate()
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{"log.level", `accounts[0] "personal".imap.port`, `webhooks[0] "ci".timeout`, `rules[1] "everything".when`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestApplyDefaultsIdempotent(t *testing.T) {
	c := cfgValid()
	c.Accounts[1].IMAP.PollInterval = time.Second
	w1 := c.ApplyDefaults()
	w2 := c.ApplyDefaults()
	if len(w1) != 1 || len(w2) != 0 {
		// The first call raises the interval (one warning); the second finds nothing left to raise.
		t.Errorf("warnings: first %q, second %q", w1, w2)
	}
	if got := c.Accounts[0].Limits.MaxConnections; got != 4 {
		t.Errorf("max_connections = %d", got)
	}
}

func TestApplyDefaultsCanonicalInbox(t *testing.T) {
	c := cfgValid()
	c.Accounts[1].IMAP.Mailboxes = []string{"Inbox"}
	c.Rules[1].Mailbox = "inbox"
	c.Rules[1].Actions = append(c.Rules[1].Actions, Action{Copy: "iNbOx"})
	c.ApplyDefaults()
	if got := c.Accounts[1].IMAP.Mailboxes[0]; got != "INBOX" {
		t.Errorf("mailbox = %q", got)
	}
	if c.Rules[1].Mailbox != "INBOX" || c.Rules[1].Actions[1].Copy != "INBOX" {
		t.Errorf("rule = %+v", c.Rules[1])
	}
	if c.Accounts[0].IMAP.Mailboxes[1] != "Work" {
		t.Errorf("other names must keep their case: %q", c.Accounts[0].IMAP.Mailboxes)
	}
}

func TestMoveToWatchedMailboxWarns(t *testing.T) {
	c := cfgValid()
	c.Rules[1].Actions = append(c.Rules[1].Actions, Action{Move: "Work"})
	warnings := c.ApplyDefaults()
	if !slices.ContainsFunc(warnings, func(w string) bool {
		return strings.Contains(w, `rules[1] "everything".actions[1].move`) && strings.Contains(w, "match again")
	}) {
		t.Errorf("warnings %q lack the move loop warning", warnings)
	}
}

// TestErrorsNeverContainSecrets feeds invalid secrets, passwords, tokens and a token-bearing URL and
// scans every error and warning.
func TestErrorsNeverContainSecrets(t *testing.T) {
	const (
		password   = "Sup3rS3cretPassw0rd"
		badSecret  = "whsec_Sup3rS3cretButNotBase64!!"
		shortKey   = "whsec_U3VwM3JTM2NyZXRTaG9ydA==" // 16 bytes
		token      = "Bearer tok_Sup3rS3cret"
		urlToken   = "Sup3rS3cretQueryToken"
		smtpSecret = "Sup3rS3cretSmtp"
	)
	yaml := `
accounts:
  - name: work
    imap:
      host: imap.example.com
      port: 99999
      security: plain
      username: me@example.com
      password: ` + password + `
    smtp:
      security: tls
      username: me
      password: ` + smtpSecret + `
webhooks:
  - name: a
    url: "http://hooks.example.com/%zz?token=` + urlToken + `"
    secrets: ["` + badSecret + `", "` + shortKey + `"]
    headers: [{name: "Bad Name", value: "` + token + `\r"}]
  - name: b
    url: "ftp://user:` + urlToken + `@hooks.example.com/"
    secret: "` + password + `"
  - name: c
    url: "http://hooks.example.com/?token=` + urlToken + `"
    secret: ` + cfgSecret + `
rules:
  - name: r
    when: "true"
    actions:
      - webhook: a
`
	_, _, err := cfgLoad(t, yaml, nil)
	if err == nil {
		t.Fatal("accepted")
	}
	msg := err.Error()
	for _, s := range []string{password, badSecret, shortKey, "Sup3rS3cret", urlToken, smtpSecret, "tok_"} {
		if strings.Contains(msg, s) {
			t.Errorf("error leaks %q:\n%s", s, msg)
		}
	}
	// The problems are still reported, by field.
	for _, want := range []string{`webhooks[0] "a".secrets[0]`, `webhooks[0] "a".secrets[1]`, `webhooks[0] "a".url`,
		`webhooks[0] "a".headers[0].value`, `webhooks[1] "b".secret`, `webhooks[1] "b".url`, `webhooks[2] "c".url`,
		`accounts[0] "work".smtp.host`, `accounts[0] "work".imap.security`} {
		if !strings.Contains(msg, want+": ") {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}

	// Unset variables and malformed references inside secret-bearing values.
	yaml = strings.Replace(cfgMinimalYAML, "password: hunter2", "password: "+password+"${", 1)
	_, _, err = cfgLoad(t, yaml, nil)
	if err == nil || strings.Contains(err.Error(), password) {
		t.Errorf("malformed reference: err = %v", err)
	}
	yaml = strings.Replace(cfgMinimalYAML, "password: hunter2", "password: "+password+"${MISSING}", 1)
	_, _, err = cfgLoad(t, yaml, nil)
	if err == nil || strings.Contains(err.Error(), password) || !strings.Contains(err.Error(), "${MISSING} is not set") {
		t.Errorf("unset reference: err = %v", err)
	}
}

func TestActionKind(t *testing.T) {
	tests := []struct {
		a    Action
		want string
	}{
		{Action{Webhook: "x"}, ActionWebhook},
		{Action{Reply: "x"}, ActionReply},
		{Action{MarkSeen: true}, ActionMarkSeen},
		{Action{Flag: []string{"$A"}}, ActionFlag},
		{Action{Move: "A"}, ActionMove},
		{Action{Copy: "A"}, ActionCopy},
		{Action{}, ""},
		{Action{Move: "A", Copy: "B"}, ""},
	}
	for _, tt := range tests {
		if got := tt.a.Kind(); got != tt.want {
			t.Errorf("%+v.Kind() = %q, want %q", tt.a, got, tt.want)
		}
	}
}

func TestTLSClientConfig(t *testing.T) {
	c, err := TLSConfig{}.ClientConfig("imap.example.com")
	if err != nil || c.ServerName != "imap.example.com" || c.RootCAs != nil || c.InsecureSkipVerify {
		t.Fatalf("default: %+v, %v", c, err)
	}
	c, err = TLSConfig{ServerName: "other.example.com"}.ClientConfig("10.0.0.1")
	if err != nil || c.ServerName != "other.example.com" {
		t.Fatalf("server_name: %+v, %v", c, err)
	}
	if _, err := (TLSConfig{CAFile: filepath.Join(t.TempDir(), "absent.pem")}).ClientConfig("h"); err == nil {
		t.Fatal("absent ca_file accepted")
	}
}

func TestIsLoopback(t *testing.T) {
	for host, want := range map[string]bool{
		"localhost": true, "LOCALHOST.": true, "app.localhost": true, "127.0.0.1": true, "127.1.2.3": true, "::1": true, "[::1]": true,
		"example.com": false, "10.0.0.1": false, "localhost.example.com": false, "": false, "0.0.0.0": false,
	} {
		if got := isLoopback(host); got != want {
			t.Errorf("isLoopback(%q) = %v, want %v", host, got, want)
		}
	}
}
