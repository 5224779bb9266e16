package watcher_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mailhook/mailhook/internal/testmail"
	"github.com/mailhook/mailhook/watcher"
)

func TestProbe(t *testing.T) {
	srv := testmail.StartMemServer(t, testmail.MemOptions{Mailboxes: []string{"Processed"}})
	appendN(t, srv, 0, 2)
	logs := &syncBuffer{}
	cfg := baseConfig(srv.Addr(), srv.User(), srv.Password(), logs)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()

	rep, err := watcher.Probe(ctx, cfg, []string{"INBOX", "Missing"}, []string{"Processed", "Archive", "inbox"})
	if err != nil {
		t.Fatalf("Probe: %v", err)
	}
	if !rep.Idle {
		t.Error("Idle = false; the MemServer advertises IDLE")
	}
	if len(rep.Mailboxes) != 2 || len(rep.Folders) != 3 {
		t.Fatalf("report %+v: want 2 mailboxes and 3 folders", rep)
	}
	if mb := rep.Mailboxes[0]; mb.Err != nil || mb.Messages != 2 || mb.UIDValidity == 0 {
		t.Errorf("INBOX: %+v, want 2 messages, a UIDVALIDITY, no error", mb)
	}
	if mb := rep.Mailboxes[1]; mb.Err == nil {
		t.Errorf("Missing: %+v, want an error", mb)
	}
	for i, want := range []bool{true, false, true} {
		if f := rep.Folders[i]; (f.Err == nil) != want {
			t.Errorf("folder %s: err %v, want ok=%v", f.Name, f.Err, want)
		}
	}
	if got, want := rep.Folders[1].Err.Error(), `folder "Archive" does not exist`; got != want {
		t.Errorf("Archive: %q, want %q", got, want)
	}
	// Read-only: nothing was fetched, so nothing is \Seen.
	for uid := uint32(1); uid <= 2; uid++ {
		flags, err := srv.Flags("INBOX", uid)
		if err != nil {
			t.Fatal(err)
		}
		if len(flags) != 0 {
			t.Errorf("uid %d has flags %v after Probe", uid, flags)
		}
	}
}

func TestProbeWrongPassword(t *testing.T) {
	srv := testmail.StartMemServer(t, testmail.MemOptions{})
	const wrong = "not-the-password-8271"
	cfg := baseConfig(srv.Addr(), srv.User(), wrong, &syncBuffer{})
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	rep, err := watcher.Probe(ctx, cfg, []string{"INBOX"}, nil)
	if err == nil {
		t.Fatalf("Probe with a wrong password succeeded: %+v", rep)
	}
	if !strings.Contains(err.Error(), "login") || strings.Contains(err.Error(), wrong) {
		t.Errorf("error %q: want a login failure without the password", err)
	}
	if len(rep.Mailboxes) != 0 {
		t.Errorf("mailboxes probed after a failed login: %+v", rep.Mailboxes)
	}
}

// The heartbeat moves with every IDLE cycle, so a liveness probe can tell a waiting loop from a
// stuck one.
func TestHeartbeatAdvances(t *testing.T) {
	srv := testmail.StartMemServer(t, testmail.MemOptions{})
	logs := &syncBuffer{}
	cfg := baseConfig(srv.Addr(), srv.User(), srv.Password(), logs)
	cfg.IdleRefresh = 30 * time.Millisecond
	w := mustNew(t, cfg, newFakeState(), newRecorder())
	created := w.Status().Heartbeat
	if created.IsZero() {
		t.Fatal("no heartbeat after New")
	}
	runWatcher(t, w, logs)
	waitState(t, w, watcher.StateIdle)
	first := w.Status()
	eventually(t, "two more IDLE cycles", func() bool { return w.Status().Idles >= first.Idles+2 })
	if hb := w.Status().Heartbeat; !hb.After(first.Heartbeat) || !first.Heartbeat.After(created) {
		t.Errorf("heartbeats %v → %v → %v do not advance", created, first.Heartbeat, hb)
	}
}
