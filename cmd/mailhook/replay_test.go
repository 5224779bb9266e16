package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailhook/mailhook/internal/testmail"
)

func TestParseUIDRange(t *testing.T) {
	tests := []struct {
		in     string
		lo, hi uint32
		ok     bool
	}{
		{"7", 7, 7, true},
		{"100:120", 100, 120, true},
		{"120:100", 100, 120, true},
		{"0", 0, 0, false},
		{"1:*", 0, 0, false},
		{"x", 0, 0, false},
		{"4294967296", 0, 0, false},
	}
	for _, tt := range tests {
		lo, hi, err := parseUIDRange(tt.in)
		if (err == nil) != tt.ok || lo != tt.lo || hi != tt.hi {
			t.Errorf("parseUIDRange(%q) = %d, %d, %v", tt.in, lo, hi, err)
		}
	}
}

func runReplay(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	code := replayVerb(ctx, args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestReplayUsage(t *testing.T) {
	dir := t.TempDir()
	path, env := writeConfig(t, dir, "127.0.0.1:1", "u", "p", "http://127.0.0.1:1/hook", nil)
	setEnv(t, env)
	for _, args := range [][]string{
		{"-c", path, "--since", "1h"},                                    // no account
		{"-c", path, "--account", "test"},                                // neither --since nor --uid
		{"-c", path, "--account", "test", "--since", "1h", "--uid", "1"}, // both
		{"-c", path, "--account", "test", "--uid", "1:*"},
		{"-c", path, "--account", "test", "--uid", "1", "--rule", "nope"},
		{"-c", path, "--account", "nope", "--uid", "1"},
	} {
		if code, _, errs := runReplay(t, args...); code != exitConfig {
			t.Errorf("%q: exit %d, want %d; stderr %s", args, code, exitConfig, errs)
		}
	}
	// Nothing processed yet: no checkpoint, exit 1.
	if code, _, errs := runReplay(t, "-c", path, "--account", "test", "--uid", "1"); code != exitFail || !strings.Contains(errs, "no checkpoint") {
		t.Errorf("without a checkpoint: exit %d; %s", code, errs)
	}
}

// TestDovecotReplayBesideDaemon: with `mailhook run` running, replay queues the rules' jobs again
// under new ids, stable per replay id, and the running daemon delivers them.
func TestDovecotReplayBesideDaemon(t *testing.T) {
	dc, led, cfg, env := startStack(t, testmail.DovecotOptions{}, testmail.ReceiverOptions{}, nil)
	d := startDaemon(t, cfg, env...)
	waitReady(t, d)
	m := newMail()
	m.add(t, dc.Append, 3) // CI failure, invoice, personal: two match
	led.waitDelivered(t, 30*time.Second, m.want())
	setEnv(t, env)

	originals := map[string]bool{}
	for _, dl := range led.deliveries(t) {
		originals[dl.ID] = true
	}

	code, out, errs := runReplay(t, "-c", cfg, "--account", "test", "--since", "1h", "--dry-run")
	if code != exitOK || strings.Count(out, "would queue ") != 2 || !strings.Contains(out, "3 messages replayed; 2 jobs would be queued") {
		t.Fatalf("dry run: exit %d\n%s\nstderr:\n%s", code, out, errs)
	}
	code, out, errs = runReplay(t, "-c", cfg, "--account", "test", "--since", "1h", "--replay-id", "r1")
	if code != exitOK || strings.Count(out, "\nqueued ") != 2 {
		t.Fatalf("replay r1: exit %d\n%s\nstderr:\n%s", code, out, errs)
	}
	// The same replay again queues nothing twice.
	code, out, errs = runReplay(t, "-c", cfg, "--account", "test", "--since", "1h", "--replay-id", "r1")
	if code != exitOK || strings.Count(out, "\nalready queued msg_") != 2 || strings.Contains(out, "\nqueued ") {
		t.Fatalf("replay r1 again: exit %d\n%s\nstderr:\n%s", code, out, errs)
	}
	// One rule, by UID range.
	code, out, errs = runReplay(t, "-c", cfg, "--account", "test", "--uid", "1:100", "--rule", "invoices", "--replay-id", "r2")
	if code != exitOK || strings.Count(out, "\nqueued ") != 1 || !strings.Contains(out, `rule "invoices"`) {
		t.Fatalf("replay r2: exit %d\n%s\nstderr:\n%s", code, out, errs)
	}

	// The daemon delivers the three new jobs (within its 30 s outbox re-check), each under an id
	// no original delivery had, and signed like any other.
	eventually(t, 60*time.Second, "the replayed deliveries", func() bool {
		return len(led.deliveries(t)) >= len(originals)+3
	})
	perRule := map[string]int{}
	for _, dl := range led.deliveries(t) {
		if !dl.Verified || dl.Status/100 != 2 {
			t.Errorf("delivery %+v", dl)
		}
		perRule[dl.Rule]++
	}
	if perRule["ci-failures"] != 2 || perRule["invoices"] != 3 || len(led.deliveries(t)) != 5 {
		t.Errorf("deliveries per rule %v; want the CI failure twice (original, r1), the invoice three times (original, r1, r2)", perRule)
	}
	ids := map[string]bool{}
	for _, dl := range led.deliveries(t) {
		if ids[dl.ID] {
			t.Errorf("id %s delivered twice", dl.ID)
		}
		ids[dl.ID] = true
	}

	// The replay touched no checkpoint.
	st, err := openStore(context.Background(), filepath.Join(filepath.Dir(cfg), "state"), true)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cp, ok, err := st.Checkpoint(context.Background(), "test", "INBOX")
	if err != nil || !ok || cp.LastUID != 3 {
		t.Errorf("checkpoint %+v %v %v", cp, ok, err)
	}
	d.terminate()
}
