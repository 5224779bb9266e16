package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailhook/mailhook/watcher"
)

// Every verb that reads a config exits 2 on a bad one, naming the field.
func TestConfigErrorsExit2(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("state_dir: x\naccounts:\n  - name: a\n    imap: {host: mail.example.com, hostname: typo}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, verb := range []string{"run", "check"} {
		var out, errb bytes.Buffer
		code := cli(context.Background(), []string{verb, "--config", bad}, &out, &errb)
		if code != exitConfig {
			t.Errorf("%s: exit %d, want %d; stderr:\n%s", verb, code, exitConfig, errb.String())
		}
		if !strings.Contains(errb.String(), "hostname") {
			t.Errorf("%s: error does not name the unknown key:\n%s", verb, errb.String())
		}
	}
	for _, args := range [][]string{{"run"}, {"check", "-c"}, {"nonsense"}, {}} {
		var out, errb bytes.Buffer
		if code := cli(context.Background(), args, &out, &errb); code != exitConfig {
			t.Errorf("%q: exit %d, want %d", args, code, exitConfig)
		}
	}
}

// A rule that does not compile is refused by check with the rule's name and the position.
func TestCheckNamesRule(t *testing.T) {
	dir := t.TempDir()
	path, env := writeConfig(t, dir, "127.0.0.1:1143", "u", "p", "http://127.0.0.1:1/hook", nil)
	raw, _ := os.ReadFile(path)
	raw = bytes.Replace(raw, []byte(`subject contains "failed"'`), []byte(`subject contains 42'`), 1)
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, e := range env {
		k, v, _ := strings.Cut(e, "=")
		t.Setenv(k, v)
	}
	var out, errb bytes.Buffer
	if code := cli(context.Background(), []string{"check", "-c", path}, &out, &errb); code != exitConfig {
		t.Fatalf("exit %d, want 2; stderr:\n%s", code, errb.String())
	}
	if !strings.Contains(errb.String(), "ci-failures") {
		t.Errorf("error does not name the rule:\n%s", errb.String())
	}
}

func TestCheckReportsCost(t *testing.T) {
	dir := t.TempDir()
	path, env := writeConfig(t, dir, "127.0.0.1:1143", "u", "p", "http://127.0.0.1:1/hook", nil)
	for _, e := range env {
		k, v, _ := strings.Cut(e, "=")
		t.Setenv(k, v)
	}
	var out, errb bytes.Buffer
	if code := cli(context.Background(), []string{"check", "-c", path}, &out, &errb); code != exitOK {
		t.Fatalf("exit %d; stderr:\n%s", code, errb.String())
	}
	for _, want := range []string{`rule "ci-failures" reads headers and structure only`, "test/INBOX fetches header + BODYSTRUCTURE, then the text/plain part"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("check output lacks %q:\n%s", want, out.String())
		}
	}
}

// check's words for the plans a rule on reply_text makes: the text part, or the html part of a
// message without one; with html fetched anyway, both.
func TestCostReplyText(t *testing.T) {
	for _, c := range []struct {
		p    watcher.Plan
		want string
	}{
		{watcher.Plan{ReplyText: true}, "header + BODYSTRUCTURE, then the text/plain part (the text/html part of a message without one)"},
		{watcher.Plan{ReplyText: true, Text: true}, "header + BODYSTRUCTURE, then the text/plain part (the text/html part of a message without one)"},
		{watcher.Plan{ReplyText: true, HTML: true}, "header + BODYSTRUCTURE, then the text/plain and text/html parts"},
		{watcher.Plan{Text: true}, "header + BODYSTRUCTURE, then the text/plain part"},
	} {
		if got := cost(c.p); got != c.want {
			t.Errorf("cost(%+v) = %q, want %q", c.p, got, c.want)
		}
	}
}

// The README's first command: the demo delivers its samples and exits with --once.
func TestDemoOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	code := cli(ctx, []string{"demo", "--once"}, &out, &errb)
	if code != exitOK {
		t.Fatalf("demo exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errb.String())
	}
	got := out.String()
	for _, want := range []string{"rule=ci-failures", "rule=invoices", `fields={"amount":"1.234,00","number":"2026-1234"}`, "signature verified", "all 2 sample deliveries received",
		"  config       ", "mailhook status --config ", "mailhook outbox list --config ", "the personal note matches no rule", "Next steps:\n", "mailhook check --online"} {
		if !strings.Contains(got, want) {
			t.Errorf("demo output lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "NOT verified") {
		t.Errorf("a demo signature failed:\n%s", got)
	}
}

func TestVersion(t *testing.T) {
	var out, errb bytes.Buffer
	if code := cli(context.Background(), []string{"version"}, &out, &errb); code != exitOK || !strings.HasPrefix(out.String(), "mailhook ") {
		t.Fatalf("version: exit %d, %q", code, out.String())
	}
}

// The documented example passes `check` as a whole (strict load, validation, rule compilation).
func TestCheckExampleConfig(t *testing.T) {
	t.Setenv("GMAIL_APP_PASSWORD", "app-password")
	t.Setenv("CI_WEBHOOK_SECRET", testSecret)
	t.Setenv("CI_TOKEN", "token")
	var out, errb bytes.Buffer
	if code := cli(context.Background(), []string{"check", "-c", "../../config.example.yaml"}, &out, &errb); code != exitOK {
		t.Fatalf("exit %d; stderr:\n%s", code, errb.String())
	}
}

// The README's Gmail quick-start config passes `check` as printed.
func TestReadmeQuickStartConfig(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(readme), "## Gmail quick start")
	if ok {
		_, rest, ok = strings.Cut(rest, "```yaml\n")
	}
	block, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("no yaml block under the Gmail quick start")
	}
	var b strings.Builder
	for line := range strings.Lines(block) {
		b.WriteString(strings.TrimPrefix(line, "   ")) // the block is indented inside a list item
	}
	dir := t.TempDir()
	cfg := strings.Replace(b.String(), "state_dir: /var/lib/mailhook", "state_dir: "+filepath.Join(dir, "state"), 1)
	path := filepath.Join(dir, "mailhook.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GMAIL_APP_PASSWORD", "abcd efgh ijkl mnop")
	t.Setenv("CI_WEBHOOK_SECRET", testSecret)
	var out, errb bytes.Buffer
	if code := cli(context.Background(), []string{"check", "-c", path}, &out, &errb); code != exitOK {
		t.Fatalf("exit %d; stderr:\n%s\nconfig:\n%s", code, errb.String(), cfg)
	}
}

// Every watcher sends the binary's version in ID (servers log it, and operators tell clients apart by it): run, test and check build
// their watchers through watcherConfig, so it must set it.
func TestWatcherConfigCarriesVersion(t *testing.T) {
	path, env := writeConfig(t, t.TempDir(), "127.0.0.1:1143", "u", "p", "http://127.0.0.1:1/hook", nil)
	for _, e := range env {
		k, v, _ := strings.Cut(e, "=")
		t.Setenv(k, v)
	}
	l, code := load(path, os.LookupEnv, io.Discard)
	if code != exitOK {
		t.Fatalf("load: exit %d", code)
	}
	wc, err := watcherConfig(l, l.cfg.Accounts[0], "INBOX", nil)
	if err != nil {
		t.Fatal(err)
	}
	if wc.Version == "" || wc.Version != version() {
		t.Errorf("watcher version %q, want %q", wc.Version, version())
	}
}
