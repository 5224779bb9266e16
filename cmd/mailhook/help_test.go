package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/mailhook/mailhook/dispatch"
)

// Every verb and subverb answers -h and --help with its help on stdout and exit 0: what it does,
// its usage, its flags by their --double-dash names, and an example.
func TestHelpEveryVerb(t *testing.T) {
	for _, name := range []string{"run", "check", "healthcheck", "test", "replay", "demo", "status",
		"outbox", "outbox list", "outbox show", "outbox retry", "outbox drop",
		"webhooks", "webhooks list", "webhooks enable", "webhooks test", "webhooks secret", "store", "store copy", "auth", "version"} {
		args := strings.Fields(name)
		if name == "auth" {
			args = append(args, "google")
		}
		for _, flag := range []string{"-h", "--help"} {
			var out, errb bytes.Buffer
			code := cli(context.Background(), append(args, flag), &out, &errb)
			help := out.String()
			if code != exitOK || errb.Len() > 0 {
				t.Errorf("%s %s: exit %d, stderr %q", name, flag, code, errb.String())
			}
			if !strings.HasPrefix(help, "mailhook "+name+": ") || !strings.Contains(help, "\nUsage:\n  mailhook "+name) ||
				!strings.Contains(help, "\nExample:\n  ") {
				t.Errorf("%s %s: not a help text:\n%s", name, flag, help)
			}
			_, flags, _ := strings.Cut(help, "\nFlags:\n")
			flags, _, _ = strings.Cut(flags, "\n\n")
			for line := range strings.Lines(flags) {
				if l := strings.TrimSpace(line); !strings.HasPrefix(l, "--") && !strings.HasPrefix(l, "-c, --config") {
					t.Errorf("%s %s: flag line without a --name: %q", name, flag, line)
				}
			}
		}
	}
	// A flag error before the help flag is still an error, on stderr.
	var out, errb bytes.Buffer
	if code := cli(context.Background(), []string{"status", "--bogus", "--help"}, &out, &errb); code != exitConfig || out.Len() > 0 {
		t.Errorf("status --bogus --help: exit %d, stdout %q", code, out.String())
	}
}

// Mistyped verbs and subverbs get one line with a suggestion; the config given before the verb or
// as the verb's argument either works or says what to type; MAILHOOK_CONFIG stands for --config.
func TestCLIForgivesTheUsualMistakes(t *testing.T) {
	path, env := writeConfig(t, t.TempDir(), "127.0.0.1:1143", "u", "p", "http://127.0.0.1:1/hook", nil)
	for _, e := range env {
		k, v, _ := strings.Cut(e, "=")
		t.Setenv(k, v)
	}
	for _, tc := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"stauts"}, exitConfig, "mailhook: unknown verb \"stauts\"; did you mean \"status\"? run mailhook --help for the list\n"},
		{[]string{"outbox", "lst"}, exitConfig, "mailhook outbox: unknown subcommand \"lst\"; did you mean \"list\"? want list, show, retry or drop\n"},
		{[]string{"webhooks", "enabel"}, exitConfig, "mailhook webhooks: unknown subcommand \"enabel\"; did you mean \"enable\"? want list, enable, test or secret\n"},
		{[]string{"frobnicate"}, exitConfig, "mailhook: unknown verb \"frobnicate\"; run mailhook --help for the list\n"},
		{[]string{"check", "mailhook.yaml"}, exitConfig, "mailhook check: unexpected argument \"mailhook.yaml\": the configuration is a flag: mailhook check --config mailhook.yaml\n"},
		{[]string{"-c", path, "check"}, exitOK, ""},
		{[]string{"--config=" + path, "check"}, exitOK, ""},
		{[]string{"-c", path, "webhooks", "list"}, exitFail, ""}, // reached the verb: no state yet
	} {
		var out, errb bytes.Buffer
		code := cli(context.Background(), tc.args, &out, &errb)
		if code != tc.code || (tc.stderr != "" && errb.String() != tc.stderr) {
			t.Errorf("%q: exit %d, stderr %q; want %d, %q", tc.args, code, errb.String(), tc.code, tc.stderr)
		}
	}
	t.Setenv("MAILHOOK_CONFIG", path)
	var out, errb bytes.Buffer
	if code := cli(context.Background(), []string{"check"}, &out, &errb); code != exitOK {
		t.Errorf("check with MAILHOOK_CONFIG: exit %d\n%s", code, errb.String())
	}
	t.Setenv("MAILHOOK_CONFIG", "")
	os.Unsetenv("MAILHOOK_CONFIG")
	errb.Reset()
	if code := cli(context.Background(), []string{"check"}, &out, &errb); code != exitConfig ||
		!strings.Contains(errb.String(), "--config FILE is required (or set MAILHOOK_CONFIG)") {
		t.Errorf("check without a config: exit %d, %q", code, errb.String())
	}
}

// webhooks secret prints a fresh secret the Standard Webhooks library and the config accept.
func TestWebhooksSecret(t *testing.T) {
	seen := map[string]bool{}
	for range 2 {
		var out, errb bytes.Buffer
		if code := cli(context.Background(), []string{"webhooks", "secret"}, &out, &errb); code != exitOK {
			t.Fatalf("exit %d: %s", code, errb.String())
		}
		s := strings.TrimSuffix(out.String(), "\n")
		if _, err := standardwebhooks.NewWebhook(s); err != nil || !strings.HasPrefix(s, "whsec_") || seen[s] {
			t.Errorf("secret %q: %v (seen before: %v)", s, err, seen[s])
		}
		if _, err := dispatch.ParseSecret(s); err != nil {
			t.Errorf("the config would refuse %q: %v", s, err)
		}
		seen[s] = true
	}
}
