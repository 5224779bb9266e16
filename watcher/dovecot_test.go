package watcher_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailhook/mailhook/internal/testmail"
	"github.com/mailhook/mailhook/watcher"
)

// The tests below need real-server behaviour imapmemserver lacks; testmail.StartDovecot skips
// them when Dovecot is not installed (unless MAILHOOK_REQUIRE_DOVECOT=1).

type appender interface {
	Append(mailbox string, raw []byte) (uint32, error)
}

func appendTo(t *testing.T, srv appender, mailbox string, from, n int) []uint32 {
	t.Helper()
	var uids []uint32
	for i := from; i < from+n; i++ {
		uid, err := srv.Append(mailbox, testmail.Sample(i, testmail.SampleOptions{Kind: testmail.SampleKind(i % testmail.NumSampleKinds)}))
		if err != nil {
			t.Fatalf("append sample %d to %q: %v", i, mailbox, err)
		}
		uids = append(uids, uid)
	}
	return uids
}

// recreated appends to a mailbox deleted and created again under a running watcher
// (testmail.Dovecot.AppendRecreated).
type recreated struct{ *testmail.Dovecot }

func (r recreated) Append(mailbox string, raw []byte) (uint32, error) {
	return r.AppendRecreated(mailbox, raw)
}

// TestDovecotHighestUIDQuirk on a real server: Dovecot answers "UID SEARCH UID n:*"
// with the highest UID even when it is below n, and that must produce no event, across many
// catch-ups.
func TestDovecotHighestUIDQuirk(t *testing.T) {
	srv := testmail.StartDovecot(t, testmail.DovecotOptions{})
	old := appendTo(t, srv, "INBOX", 0, 3)
	logs := &syncBuffer{}
	st, rec := newFakeState(), newRecorder()
	cfg := baseConfig(srv.Addr(), srv.User(), srv.Password(), logs)
	cfg.IdleRefresh = 50 * time.Millisecond // every refresh re-runs the catch-up
	w := mustNew(t, cfg, st, rec)
	runWatcher(t, w, logs)

	eventually(t, "several catch-ups", func() bool { return w.Status().Idles >= 5 })
	if got := rec.uids(); len(got) != 0 {
		t.Fatalf("handled %v; UIDs at or below the checkpoint %d must yield nothing", got, old[len(old)-1])
	}
	more := appendTo(t, srv, "INBOX", 3, 1)
	rec.waitUIDs(t, more...)
	eventually(t, "more catch-ups", func() bool { return w.Status().Idles >= 10 })
	if got := rec.uids(); !slices.Equal(got, more) {
		t.Errorf("handled %v, want %v", got, more)
	}
	st.checkInvariants(t)
}

// TestDovecotPeekKeepsFlags: after headers, text and HTML were fetched, every
// message's flags are exactly what they were.
func TestDovecotPeekKeepsFlags(t *testing.T) {
	srv := testmail.StartDovecot(t, testmail.DovecotOptions{})
	uids := appendTo(t, srv, "INBOX", 0, 3)
	flags := func(uid uint32) []string {
		t.Helper()
		f, err := srv.Flags("INBOX", uid)
		if err != nil {
			t.Fatal(err)
		}
		// \Recent belongs to whichever session saw the message first; it is not stored state.
		return slices.DeleteFunc(f, func(s string) bool { return strings.EqualFold(s, `\Recent`) })
	}
	before := map[uint32][]string{}
	for _, uid := range uids {
		before[uid] = flags(uid)
	}
	logs := &syncBuffer{}
	st, rec := newFakeState(), newRecorder()
	cfg := baseConfig(srv.Addr(), srv.User(), srv.Password(), logs)
	cfg.Start = watcher.StartAll
	cfg.Plan = watcher.Plan{Text: true, HTML: true}
	w := mustNew(t, cfg, st, rec)
	runWatcher(t, w, logs)

	rec.waitUIDs(t, uids...)
	for _, uid := range uids {
		if after := flags(uid); !slices.Equal(after, before[uid]) || slices.Contains(after, `\Seen`) {
			t.Errorf("uid %d flags %v → %v", uid, before[uid], after)
		}
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if ci := rec.events[0].Message; ci.Text == "" || ci.HTML == "" {
		t.Errorf("CI sample: text %d bytes, html %d bytes; want both", len(ci.Text), len(ci.HTML))
	}
}

// TestDovecotUIDValidityChange with a running watcher: the mailbox is deleted
// and re-created (new UIDVALIDITY) with the processed messages re-appended (same Message-IDs)
// plus new ones; only the new ones are handled, and later mail still flows.
func TestDovecotUIDValidityChange(t *testing.T) {
	const box = "Work" // Dovecot refuses to delete INBOX
	srv := testmail.StartDovecot(t, testmail.DovecotOptions{Mailboxes: []string{box}})
	first := appendTo(t, srv, box, 0, 3)
	logs := &syncBuffer{}
	st, rec := newFakeState(), newRecorder()
	cfg := baseConfig(srv.Addr(), srv.User(), srv.Password(), logs)
	cfg.Mailbox = box
	cfg.Start = watcher.StartAll
	cfg.IdleRefresh = 100 * time.Millisecond // notice the deleted mailbox soon, whatever Dovecot pushes
	w := mustNew(t, cfg, st, rec)
	runWatcher(t, w, logs)
	rec.waitUIDs(t, first...)
	waitState(t, w, watcher.StateIdle)
	validity := w.Status().UIDValidity

	if err := srv.DeleteMailbox(box); err != nil {
		t.Fatal(err)
	}
	if err := srv.CreateMailbox(box); err != nil {
		t.Fatal(err)
	}
	// The watcher still has the old mailbox selected: recreated allows for Dovecot's "deleted
	// under us" while it tears that down.
	appendTo(t, recreated{srv}, box, 0, 3)          // the same messages again
	fresh := appendTo(t, recreated{srv}, box, 3, 2) // and two new ones
	eventually(t, "new UIDVALIDITY", func() bool {
		s := w.Status()
		return s.UIDValidity != validity && s.State == watcher.StateIdle
	})
	later := appendTo(t, srv, box, 5, 1)
	want := slices.Concat(first, fresh, later)
	rec.waitUIDs(t, want...)
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.resets) < 2 {
		t.Errorf("ResetCheckpoint called %d times, want the first run and the UIDVALIDITY change", len(st.resets))
	}
}

// TestDovecotIdlePush: with an IDLE refresh far beyond the test, a message appended from
// another connection arrives through the EXISTS push (Dovecot delays it by 0.5 s).
func TestDovecotIdlePush(t *testing.T) {
	srv := testmail.StartDovecot(t, testmail.DovecotOptions{})
	logs := &syncBuffer{}
	st, rec := newFakeState(), newRecorder()
	cfg := baseConfig(srv.Addr(), srv.User(), srv.Password(), logs)
	cfg.IdleRefresh = time.Hour
	cfg.Version = "test"
	w := mustNew(t, cfg, st, rec)
	runWatcher(t, w, logs)

	waitState(t, w, watcher.StateIdle)
	for i := range 3 {
		uids := appendTo(t, srv, "INBOX", i, 1)
		eventually(t, "push", func() bool { return slices.Contains(rec.uids(), uids[0]) })
	}
	if s := w.Status(); s.Connects != 1 {
		t.Errorf("Connects = %d (reason %q); the pushes must arrive on one connection", s.Connects, s.Reason)
	}
}

// TestDovecotNoIdlePolls: on a real server without IDLE the watcher polls, and mail still arrives.
func TestDovecotNoIdlePolls(t *testing.T) {
	srv := testmail.StartDovecot(t, testmail.DovecotOptions{NoIdle: true})
	logs := &syncBuffer{}
	st, rec := newFakeState(), newRecorder()
	cfg := baseConfig(srv.Addr(), srv.User(), srv.Password(), logs)
	cfg.PollInterval = 50 * time.Millisecond
	w := mustNew(t, cfg, st, rec)
	runWatcher(t, w, logs)

	waitState(t, w, watcher.StatePolling)
	uids := appendTo(t, srv, "INBOX", 0, 2)
	rec.waitUIDs(t, uids...)
	if n := w.Status().Idles; n != 0 {
		t.Errorf("%d IDLE commands without IDLE advertised", n)
	}
}
