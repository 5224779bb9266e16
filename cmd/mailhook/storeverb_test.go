package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailhook/mailhook/internal/testmail"
	"github.com/mailhook/mailhook/store"
	"github.com/mailhook/mailhook/store/sqlite"
)

func TestStoreCopy(t *testing.T) {
	pg := testmail.StartPostgres(t, testmail.PostgresOptions{})
	dsn := pg.NewDatabase(t)
	ctx := context.Background()
	dir := t.TempDir()
	stateDir := filepath.Join(dir, "state")
	src, err := sqlite.Open(stateDir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := src.Mailbox(ctx, "work", "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	job := store.Job{ID: "msg_1", Kind: store.KindWebhook, Target: "hook", Account: "work", Mailbox: "INBOX", UIDValidity: 1, UID: 5}
	if err := w.Commit(ctx, []store.Commit{{Checkpoint: store.Checkpoint{UIDValidity: 1, LastUID: 5}, Key: "k", Jobs: []store.Job{job}}}); err != nil {
		t.Fatal(err)
	}
	src.Close()

	cfgPath := filepath.Join(dir, "mailhook.yaml")
	yaml := fmt.Sprintf("state_dir: %s\nstore:\n  driver: postgres\n  dsn: ${TEST_DSN}\n", stateDir) + cfgMinimalYAML
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TEST_DSN", dsn)
	l, code := load(cfgPath, os.LookupEnv, &bytes.Buffer{})
	if code != exitOK {
		t.Fatal("config does not load")
	}

	// Before the copy, a daemon refuses the empty PostgreSQL store beside the SQLite state.
	if _, err := openConfiguredStore(ctx, l.cfg, false); err == nil || !strings.Contains(err.Error(), "mailhook store copy") {
		t.Fatalf("daemon open before the copy = %v; want a refusal naming `mailhook store copy`", err)
	}
	var out, errOut bytes.Buffer
	if code := cli(ctx, []string{"store", "copy", "-c", cfgPath}, &out, &errOut); code != exitOK {
		t.Fatalf("store copy = %d: %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), "jobs            1") || !strings.Contains(out.String(), "checkpoints     1") {
		t.Errorf("store copy output:\n%s", out.String())
	}
	st, err := openConfiguredStore(ctx, l.cfg, false)
	if err != nil {
		t.Fatalf("daemon open after the copy: %v", err)
	}
	defer st.Close()
	if cp, ok, err := st.Checkpoint(ctx, "work", "INBOX"); err != nil || !ok || cp.LastUID != 5 {
		t.Errorf("checkpoint after copy = %+v %v %v", cp, ok, err)
	}
	if j, _, err := st.Job(ctx, "msg_1"); err != nil || j.State != store.StatePending {
		t.Errorf("job after copy = %+v, %v", j, err)
	}
	out.Reset()
	errOut.Reset()
	if code := cli(ctx, []string{"store", "copy", "-c", cfgPath}, &out, &errOut); code != exitFail ||
		!strings.Contains(errOut.String(), "already holds state") {
		t.Errorf("second copy = %d: %s", code, errOut.String())
	}
	if strings.Contains(errOut.String(), dsn) {
		t.Errorf("output shows the dsn: %s", errOut.String())
	}
}
