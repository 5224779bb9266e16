package main

import (
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailhook/mailhook/store"
	"github.com/mailhook/mailhook/store/sqlite"
)

// The operator verbs run in an operator's shell, which lacks the daemon's secrets (under systemd
// they live in the unit's environment), and from any working directory. They resolve no secret,
// and they never create a state directory: without one they name the absolute path they looked
// at and, for a relative state_dir, the working directory it was resolved against.
func TestOperatorVerbsNeedNoSecretAndCreateNoState(t *testing.T) {
	dir := t.TempDir()
	secrets := filepath.Join(dir, "secrets")
	cfg := filepath.Join(dir, "mailhook.yaml")
	if err := os.WriteFile(cfg, []byte(`state_dir: ./state
http: {listen: "127.0.0.1:1"}
accounts:
  - name: personal
    imap: {host: imap.gmail.com, username: me@gmail.com, password: "${GMAIL_APP_PASSWORD}"}
  - name: work
    imap: {host: imap.example.com, username: me@example.com, password_file: `+secrets+`/imap}
webhooks:
  - name: ci
    url: ${CI_WEBHOOK_URL}
    secrets: ["${CI_WEBHOOK_SECRET}"]
  - name: erp
    url: https://erp.example.com/hooks
    secret_file: `+secrets+`/erp
    headers: [{name: Authorization, value: "Bearer ${ERP_TOKEN}"}]
rules:
  - name: all
    when: 'true'
    actions: [{webhook: ci}, {webhook: erp}]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"GMAIL_APP_PASSWORD=", "CI_WEBHOOK_URL=", "CI_WEBHOOK_SECRET=", "ERP_TOKEN="}
	run := func(args ...string) (int, string) {
		t.Helper()
		cmd := exec.Command(binPath, args...)
		cmd.Dir = dir
		for _, e := range os.Environ() {
			if k, _, _ := strings.Cut(e, "="); !strings.Contains(strings.Join(env, " "), k+"=") {
				cmd.Env = append(cmd.Env, e)
			}
		}
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(out)
		} else if err != nil {
			t.Fatal(err)
		}
		return 0, string(out)
	}
	verbs := [][]string{{"status"}, {"outbox", "list"}, {"webhooks", "list"}}
	state := filepath.Join(dir, "state")
	for _, v := range verbs {
		code, out := run(append(v, "-c", cfg)...)
		if code != exitFail || !strings.Contains(out, "no state at "+state+" (state_dir \"./state\" is relative to the working directory, here "+dir+")") {
			t.Errorf("%v without state: exit %d\n%s", v, code, out)
		}
		if _, err := os.Stat(state); err == nil {
			t.Fatalf("%v created %s", v, state)
		}
	}
	// The daemon's state exists: the verbs work without a single secret.
	st, err := sqlite.Open(state, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	for _, v := range verbs {
		if code, out := run(append(v, "-c", cfg)...); code != exitOK || strings.Contains(out, "not set") {
			t.Errorf("%v without secrets: exit %d\n%s", v, code, out)
		}
	}
	// healthcheck reads only http.listen; nothing listens there, so it fails, but not on a secret.
	if code, out := run("healthcheck", "-c", cfg, "--timeout", "2s"); code != exitFail || strings.Contains(out, "not set") {
		t.Errorf("healthcheck without secrets: exit %d\n%s", code, out)
	}
	// The daemon's verbs still need them.
	if code, out := run("check", "-c", cfg); code != exitConfig || !strings.Contains(out, "${GMAIL_APP_PASSWORD} is not set") {
		t.Errorf("check without secrets: exit %d\n%s", code, out)
	}
}

// The operator verbs on a state directory an older mailhook wrote (no daemon running) neither
// migrate it nor fail obscurely: they exit 1 naming the version found, the version expected and
// what to do (run the daemon once), and leave the schema version as it was.
func TestOperatorVerbsOnAnOlderSchema(t *testing.T) {
	dir, cfg, env := toolConfig(t)
	state := filepath.Join(dir, "state")
	if st, err := sqlite.Open(state, store.Options{}); err != nil || st.Close() != nil {
		t.Fatal(err)
	}
	version := func(set int) int {
		t.Helper()
		db, err := sql.Open("sqlite", filepath.Join(state, "mailhook.db"))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if set > 0 {
			if _, err := db.Exec(fmt.Sprintf("PRAGMA user_version = %d", set)); err != nil {
				t.Fatal(err)
			}
		}
		var v int
		if err := db.QueryRow("PRAGMA user_version").Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	current := version(0)
	version(5) // as an older mailhook left it
	for _, args := range [][]string{{"status"}, {"outbox", "list"}, {"outbox", "show", "msg_X"},
		{"webhooks", "list"}, {"webhooks", "enable", "receiver"}} {
		args = append(args, "-c", cfg)
		code, out := tool(t, env, args...)
		want := fmt.Sprintf("schema version 5, this mailhook uses %d", current)
		if code != exitFail || !strings.Contains(out, want) || !strings.Contains(out, "run the daemon (mailhook run)") {
			t.Errorf("mailhook %s on a version 5 state: exit %d, want 1 with %q and what to do\n%s",
				strings.Join(args, " "), code, want, out)
		}
	}
	if v := version(0); v != 5 {
		t.Errorf("schema version after the verbs: %d, want 5 (nothing migrated)", v)
	}
}
