package config

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var updateConfigGolden = flag.Bool("update-config-golden", false, "rewrite testdata/config-errors.golden")

// TestConfigErrorsGolden loads every configuration of testdata/config-errors.txt and compares its
// error text and warnings with testdata/config-errors.golden byte for byte: configuration errors
// are part of the user-facing contract, and this test proves that moving or reshaping the code
// does not change them.
func TestConfigErrorsGolden(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("testdata", "config-errors.txt"))
	if err != nil {
		t.Fatal(err)
	}
	dir := configGoldenFixtures(t)
	env := cfgEnv(map[string]string{"SET": "value", "EMPTY": ""})

	var out bytes.Buffer
	for _, c := range splitConfigCases(t, string(src)) {
		path := filepath.Join(t.TempDir(), "config.yaml")
		if err := os.WriteFile(path, []byte(strings.ReplaceAll(c.yaml, "@DIR@", dir)), 0o600); err != nil {
			t.Fatal(err)
		}
		_, warnings, err := Load(path, Options{Getenv: env})
		out.WriteString("### " + c.name + "\n")
		if err != nil {
			out.WriteString("error:\n" + err.Error() + "\n")
		}
		for _, w := range warnings {
			out.WriteString("warning: " + w + "\n")
		}
		if err == nil && len(warnings) == 0 {
			out.WriteString("ok\n")
		}
		out.WriteString("\n")
	}
	for _, c := range configCodeCases() {
		c.mutate(c.cfg)
		out.WriteString("### in code: " + c.name + "\nerror:\n")
		if err := c.cfg.Validate(); err != nil {
			out.WriteString(err.Error())
		}
		out.WriteString("\n\n")
	}
	got := strings.ReplaceAll(out.String(), dir, "@DIR@")

	golden := filepath.Join("testdata", "config-errors.golden")
	if *updateConfigGolden {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		gl, wl := strings.Split(got, "\n"), strings.Split(string(want), "\n")
		for i := range max(len(gl), len(wl)) {
			var g, w string
			if i < len(gl) {
				g = gl[i]
			}
			if i < len(wl) {
				w = wl[i]
			}
			if g != w {
				t.Fatalf("config error texts changed at line %d of %s:\ngot:  %q\nwant: %q\n(rerun with -update-config-golden only if the change is intended)", i+1, golden, g, w)
			}
		}
	}
}

// configCodeCases are configurations built in code with values a file cannot produce (a size
// below zero, a zero that defaults would fill in), checked by Validate alone.
func configCodeCases() []struct {
	name   string
	cfg    *Config
	mutate func(*Config)
} {
	return []struct {
		name   string
		cfg    *Config
		mutate func(*Config)
	}{
		{"limits and backoff", cfgValid(), func(c *Config) {
			c.Accounts[0].Limits.MaxMessageSize = -1
			c.Accounts[0].Limits.DownloadPerDay = 0
			c.Accounts[0].IMAP.Backoff.Min = 0
			c.Accounts[1].Limits.MaxConnections = 0
			c.Accounts[1].IMAP.PollInterval = time.Second
			c.Accounts[1].IMAP.Mailboxes = nil
		}},
		{"webhook sizes and secrets", cfgValid(), func(c *Config) {
			c.Webhooks[0].MaxBodyBytes = -1
			c.Webhooks[0].MaxInlineBytes = 0
			c.Webhooks[0].Secrets = nil
			c.Webhooks[1].Secret, c.Webhooks[1].SecretFile = "whsec_x", "secret.txt"
			c.Webhooks[1].Format = ""
		}},
		{"reply and state", cfgValid(), func(c *Config) {
			c.StateDir = ""
			c.Replies[0].MaxReceived = 0
			c.Replies[0].OncePer = 0
		}},
	}
}

type configCase struct{ name, yaml string }

// splitConfigCases splits the cases file at its "### name" lines; text before the first is a comment.
func splitConfigCases(t *testing.T, src string) []configCase {
	var cases []configCase
	for _, part := range strings.Split(src, "\n### ")[1:] {
		name, yaml, _ := strings.Cut(part, "\n")
		cases = append(cases, configCase{name: name, yaml: yaml})
	}
	if len(cases) == 0 {
		t.Fatal("no cases")
	}
	return cases
}

// configGoldenFixtures writes the files the cases refer to as @DIR@/NAME.
func configGoldenFixtures(t *testing.T) string {
	dir := t.TempDir()
	for name, content := range map[string]string{
		"empty":            "\n",
		"huge":             strings.Repeat("x", 64<<10+1),
		"notpem":           "hello\n",
		"hugetemplate":     strings.Repeat("x", 1<<20+1),
		"template.json":    `{"subject": {{ json .Subject }}}`,
		"badtemplate.json": `{"subject": {{ .Subject }}}`,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}
