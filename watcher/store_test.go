package watcher_test

import (
	"context"
	"slices"
	"testing"

	"github.com/mailhook/mailhook/internal/testmail"
	"github.com/mailhook/mailhook/store"
	"github.com/mailhook/mailhook/store/sqlite"
	"github.com/mailhook/mailhook/watcher"
)

var _ watcher.State = store.MailboxWriter(nil)

// jobRecorder wraps recorder so the jobs satisfy the real store.
type jobRecorder struct{ *recorder }

// Match makes the jobs with jobRecorder.Handle.
func (r jobRecorder) Match(ev *watcher.Event) watcher.Matched {
	return watcher.HandlerFunc(r.Handle).Match(ev)
}

func (r jobRecorder) Handle(ctx context.Context, ev *watcher.Event) ([]store.Job, error) {
	if _, err := r.recorder.Handle(ctx, ev); err != nil {
		return nil, err
	}
	return []store.Job{{
		ID:   store.JobID(ev.Account, ev.Mailbox, ev.UIDValidity, ev.UID, "rule", 0),
		Kind: store.KindWebhook, Target: "hook", Account: ev.Account, Mailbox: ev.Mailbox,
		UIDValidity: ev.UIDValidity, UID: ev.UID, Rule: "rule", Body: []byte("{}"),
	}}, nil
}

// TestStoreRestartAndUIDValidityChange runs the watcher on the SQLite store: a restart resumes from
// the checkpoint without repeats, and after the mailbox is deleted and re-created with the same
// messages re-appended plus new ones (new UIDVALIDITY), only the new ones are handled (the seen
// keys bridge the change).
func TestStoreRestartAndUIDValidityChange(t *testing.T) {
	srv := testmail.StartMemServer(t, testmail.MemOptions{Mailboxes: []string{"Work"}})
	st, err := sqlite.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	mw, err := st.Mailbox(context.Background(), "acct", "Work")
	if err != nil {
		t.Fatal(err)
	}
	appendWork := func(from, n int) []uint32 {
		t.Helper()
		var uids []uint32
		for i := from; i < from+n; i++ {
			uid, err := srv.Append("Work", testmail.Sample(i, testmail.SampleOptions{Kind: testmail.SampleKind(i % testmail.NumSampleKinds)}))
			if err != nil {
				t.Fatal(err)
			}
			uids = append(uids, uid)
		}
		return uids
	}
	run := func(rec *recorder, f func(w *watcher.Watcher)) {
		t.Helper()
		logs := &syncBuffer{}
		cfg := baseConfig(srv.Addr(), srv.User(), srv.Password(), logs)
		cfg.Mailbox = "Work"
		cfg.Start = watcher.StartAll
		w := mustNew(t, cfg, mw, jobRecorder{rec})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- w.Run(ctx) }()
		defer func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
			if t.Failed() {
				t.Logf("watcher log:\n%s", logs.String())
			}
		}()
		f(w)
	}

	first := appendWork(0, 3)
	rec1 := newRecorder()
	run(rec1, func(w *watcher.Watcher) {
		rec1.waitUIDs(t, first...)
		waitState(t, w, watcher.StateIdle)
	})

	// Restart: nothing is handled again; mail that arrived meanwhile is.
	more := appendWork(3, 1)
	rec2 := newRecorder()
	run(rec2, func(w *watcher.Watcher) {
		rec2.waitUIDs(t, more...)
		waitState(t, w, watcher.StateIdle)
	})

	oldValidity, err := srv.UIDValidity("Work")
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.DeleteMailbox("Work"); err != nil {
		t.Fatal(err)
	}
	if err := srv.CreateMailbox("Work"); err != nil {
		t.Fatal(err)
	}
	appendWork(0, 4)          // the same four messages again, new UIDs
	fresh := appendWork(4, 2) // and two new ones
	rec3 := newRecorder()
	run(rec3, func(w *watcher.Watcher) {
		rec3.waitUIDs(t, fresh...)
		waitState(t, w, watcher.StateIdle)
		later := appendWork(6, 1)
		rec3.waitUIDs(t, append(slices.Clone(fresh), later...)...)
		waitState(t, w, watcher.StateIdle) // handled and committed
		if got := w.Status().UIDValidity; got == oldValidity {
			t.Errorf("UIDVALIDITY %d unchanged; the test did not exercise a change", got)
		}
	})
	cp, ok, err := st.Checkpoint(context.Background(), "acct", "Work")
	if err != nil || !ok {
		t.Fatalf("checkpoint: %v %v", ok, err)
	}
	if cp.LastUID != 7 {
		t.Errorf("checkpoint last UID %d, want 7", cp.LastUID)
	}
}
