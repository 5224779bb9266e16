package storetest

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/mailhook/mailhook/store"
)

func testDurability(t *testing.T, h harness) {
	st := h.fresh(t)
	clk := newClock()
	ctx := context.Background()
	s, err := st.openWith(t, store.Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	mustCommit(t, s, 42, "<m@x>/100", webhook("w1", "ci"),
		store.Job{ID: "p1", Kind: store.KindPostAction, Target: "mark_seen", Account: "acct", Mailbox: "INBOX",
			UIDValidity: 7, UID: 42, Rule: "r", DependsOn: []string{"w1"}})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = st.open(t, clk)
	cp := mustCheckpoint(t, s)
	want := store.Checkpoint{UIDValidity: 7, LastUID: 42, LastInternalDate: t0.Add(42 * time.Minute)}
	if cp != want {
		t.Errorf("checkpoint = %+v, want %+v", cp, want)
	}
	if seen, err := seenKey(ctx, s, "acct", "INBOX", "<m@x>/100"); err != nil || !seen {
		t.Errorf("Seen = %v, %v; want true", seen, err)
	}
	j, _ := mustJob(t, s, "w1")
	if string(j.Body) != `{"id":"w1"}` || j.State != store.StatePending || j.Target != "ci" || j.UID != 1 ||
		!j.NextAt.Equal(t0) || !j.CreatedAt.Equal(t0) {
		t.Errorf("w1 = %+v", j)
	}
	p, _ := mustJob(t, s, "p1")
	if !slices.Equal(p.DependsOn, []string{"w1"}) || p.Body != nil {
		t.Errorf("p1 = %+v", p)
	}
}

func testCommitAtomic(t *testing.T, h harness) {
	ctx := context.Background()
	tests := []struct {
		name string
		jobs []store.Job
	}{
		// A job the store refuses inside the transaction, after the checkpoint, the seen key and
		// a first job were written in it. (Backends add a case of their own: a job the database
		// itself rejects.)
		{"unknown dependency", []store.Job{webhook("ok", "ci"), webhook("dep", "ci", "nowhere")}},
		{"dependency on a later job", []store.Job{webhook("ok", "ci", "later"), webhook("later", "ci")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := h.fresh(t).open(t, newClock())
			mustCommit(t, s, 10, "")
			cp := store.Checkpoint{UIDValidity: 7, LastUID: 11}
			if err := commit(ctx, s, "acct", "INBOX", cp, "key11", tt.jobs); err == nil {
				t.Fatal("Commit succeeded, want an error")
			}
			if got := mustCheckpoint(t, s).LastUID; got != 10 {
				t.Errorf("checkpoint advanced to %d by a failed commit", got)
			}
			if seen, _ := seenKey(ctx, s, "acct", "INBOX", "key11"); seen {
				t.Error("seen key recorded by a failed commit")
			}
			if jobs, _ := s.Jobs(ctx, store.Filter{}); len(jobs) != 0 {
				t.Errorf("jobs left by a failed commit: %v", ids(jobs))
			}
		})
	}
}

func testCommitRejectsBadJobs(t *testing.T, h harness) {
	s := h.fresh(t).open(t, newClock())
	for name, j := range map[string]store.Job{
		"empty id":     {Kind: store.KindWebhook},
		"unknown kind": {ID: "x", Kind: "fax"},
		"in flight":    {ID: "x", Kind: store.KindWebhook, State: store.StateInFlight},
		"self dep":     {ID: "x", Kind: store.KindWebhook, DependsOn: []string{"x"}},
		"repeated dep": {ID: "x", Kind: store.KindWebhook, DependsOn: []string{"a", "a"}},
	} {
		if err := commit(context.Background(), s, "acct", "INBOX", store.Checkpoint{UIDValidity: 7, LastUID: 1}, "", []store.Job{j}); err == nil {
			t.Errorf("%s: store.Commit accepted %+v", name, j)
		}
	}
	if _, ok, _ := s.Checkpoint(context.Background(), "acct", "INBOX"); ok {
		t.Error("a rejected commit stored a checkpoint")
	}
}

func testCheckpointNeverDecreases(t *testing.T, h harness) {
	ctx := context.Background()
	s := h.fresh(t).open(t, newClock())
	mustCommit(t, s, 10, "")
	mustCommit(t, s, 5, "k5", webhook("late", "ci"))
	if got := mustCheckpoint(t, s); got.LastUID != 10 || !got.LastInternalDate.Equal(t0.Add(10*time.Minute)) {
		t.Errorf("checkpoint = %+v after committing uid 5 over 10; want uid 10 kept", got)
	}
	// The rest of the commit still happened.
	if _, _, err := s.Job(ctx, "late"); err != nil {
		t.Errorf("job of the older message: %v", err)
	}
	mustCommit(t, s, 10, "")
	mustCommit(t, s, 11, "")
	if got := mustCheckpoint(t, s).LastUID; got != 11 {
		t.Errorf("checkpoint = %d, want 11", got)
	}

	err := commit(ctx, s, "acct", "INBOX", store.Checkpoint{UIDValidity: 8, LastUID: 12}, "", nil)
	if !errors.Is(err, store.ErrUIDValidity) {
		t.Errorf("Commit with another uidvalidity: err = %v, want ErrUIDValidity", err)
	}
	if got := mustCheckpoint(t, s); got.UIDValidity != 7 || got.LastUID != 11 {
		t.Errorf("checkpoint = %+v after a refused commit", got)
	}
}

func testResetCheckpoint(t *testing.T, h harness) {
	ctx := context.Background()
	s := h.fresh(t).open(t, newClock())
	if _, ok, err := s.Checkpoint(ctx, "acct", "INBOX"); ok || err != nil {
		t.Fatalf("fresh store: ok=%v err=%v", ok, err)
	}
	first := store.Checkpoint{UIDValidity: 7, LastUID: 99, LastInternalDate: t0}
	if err := reset(ctx, s, "acct", "INBOX", first); err != nil {
		t.Fatal(err)
	}
	if got := mustCheckpoint(t, s); got != first {
		t.Errorf("checkpoint = %+v, want %+v", got, first)
	}
	mustCommit(t, s, 120, "key120")

	// UIDVALIDITY changed: the reset lowers last_uid, keeps the seen keys, and commits follow it.
	changed := store.Checkpoint{UIDValidity: 8, LastUID: 3, LastInternalDate: t0.Add(time.Hour)}
	if err := reset(ctx, s, "acct", "INBOX", changed); err != nil {
		t.Fatal(err)
	}
	if got := mustCheckpoint(t, s); got != changed {
		t.Errorf("checkpoint = %+v, want %+v", got, changed)
	}
	if seen, _ := seenKey(ctx, s, "acct", "INBOX", "key120"); !seen {
		t.Error("reset dropped the seen keys that bridge the change")
	}
	if err := commit(ctx, s, "acct", "INBOX", store.Checkpoint{UIDValidity: 8, LastUID: 4}, "", nil); err != nil {
		t.Fatalf("commit after reset: %v", err)
	}
	if err := commit(ctx, s, "acct", "INBOX", store.Checkpoint{UIDValidity: 7, LastUID: 121}, "", nil); !errors.Is(err, store.ErrUIDValidity) {
		t.Errorf("commit with the old uidvalidity: err = %v, want ErrUIDValidity", err)
	}
	// Other mailboxes are independent.
	if _, ok, _ := s.Checkpoint(ctx, "acct", "Other"); ok {
		t.Error("checkpoint leaked to another mailbox")
	}
}

func testCommitIdempotent(t *testing.T, h harness) {
	ctx := context.Background()
	clk := newClock()
	s := h.fresh(t).open(t, clk)
	w := webhook("w1", "ci")
	p := store.Job{ID: "p1", Kind: store.KindPostAction, Target: "move:Archive", DependsOn: []string{"w1"}}
	mustCommit(t, s, 1, "k1", w, p)

	got, err := s.Claim(ctx, store.Selector{Kind: store.KindWebhook, Target: "ci"}, clk.Now(), 10)
	if err != nil || len(got) != 1 {
		t.Fatalf("claim: %v %v", ids(got), err)
	}
	if err := s.Finish(ctx, "w1", store.StateDone, time.Time{}, store.Attempt{Status: "http 200"}); err != nil {
		t.Fatal(err)
	}

	// Replaying the message (crash before the watcher learned of the commit) changes nothing.
	clk.Add(time.Minute)
	w.Body = []byte("different")
	p.DependsOn = nil
	mustCommit(t, s, 1, "k1", w, p)
	jobs, err := s.Jobs(ctx, store.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids(jobs), []string{"w1", "p1"}) {
		t.Fatalf("jobs = %v, want one of each", ids(jobs))
	}
	j, as := mustJob(t, s, "w1")
	if j.State != store.StateDone || string(j.Body) != `{"id":"w1"}` || j.Attempts != 1 || len(as) != 1 {
		t.Errorf("replayed w1 = %+v (%d attempts); want it untouched", j, len(as))
	}
	if !slices.Equal(jobs[1].DependsOn, []string{"w1"}) {
		t.Errorf("replayed p1 depends on %v, want [w1]", jobs[1].DependsOn)
	}
}

func testSeenExpires(t *testing.T, h harness) {
	ctx := context.Background()
	clk := newClock()
	s := h.fresh(t).open(t, clk)
	commitNow(t, s, clk, 1, "old")
	clk.Add(20 * 24 * time.Hour)
	commitNow(t, s, clk, 2, "new")

	seen := func(key string) bool {
		t.Helper()
		ok, err := seenKey(ctx, s, "acct", "INBOX", key)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !seen("old") || !seen("new") {
		t.Fatal("keys not seen within 30 days")
	}
	if ok, _ := seenKey(ctx, s, "acct", "Other", "old"); ok {
		t.Error("a key of INBOX is seen in another mailbox")
	}
	clk.Add(10*24*time.Hour + time.Second) // old is now 30 days + 1 s old, new 10 days
	if seen("old") || !seen("new") {
		t.Errorf("after 30 days: old %v new %v; want false true", seen("old"), seen("new"))
	}
	// Pruning keeps what is still within the TTL (the backend's tests check that the expired
	// rows themselves go).
	if err := s.Prune(ctx, clk.Now()); err != nil {
		t.Fatal(err)
	}
	if seen("old") || !seen("new") {
		t.Errorf("after prune: old %v new %v; want false true", seen("old"), seen("new"))
	}
}

// testSeenKeptForRescan: a mailbox quiet for longer than the seen keys' TTL keeps the keys of
// its rescan window (the day before its last internal date, and a day for clock skew), so a
// UIDVALIDITY reset after the quiet months finds the last messages seen instead of delivering
// them again under new ids; older keys still expire, and pruning removes them.
func testSeenKeptForRescan(t *testing.T, h harness) {
	ctx := context.Background()
	clk := newClock()
	s := h.fresh(t).open(t, clk)
	commitNow(t, s, clk, 1, "week-before")
	clk.Add(7 * 24 * time.Hour)
	commitNow(t, s, clk, 2, "hour-before")
	clk.Add(time.Hour)
	commitNow(t, s, clk, 3, "last")
	clk.Add(40 * 24 * time.Hour) // the mailbox is quiet for 40 days; the TTL is 30
	if err := s.Prune(ctx, clk.Now()); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]bool{"last": true, "hour-before": true, "week-before": false} {
		if got, err := seenKey(ctx, s, "acct", "INBOX", key); err != nil || got != want {
			t.Errorf("after 40 quiet days, Seen(%s) = %v, %v; want %v", key, got, err, want)
		}
	}
	// A reset keeps the last internal date (the watcher's rescan starts a day before it), and
	// with it the keys.
	if err := reset(ctx, s, "acct", "INBOX", store.Checkpoint{UIDValidity: 8, LastInternalDate: mustCheckpoint(t, s).LastInternalDate}); err != nil {
		t.Fatal(err)
	}
	if got, _ := seenKey(ctx, s, "acct", "INBOX", "hour-before"); !got {
		t.Error("after the UIDVALIDITY reset the rescan window's key is not seen")
	}
}

// testMailboxesAndCounts: the status view lists checkpoints with their update time and counts
// jobs per state for one mailbox.
func testMailboxesAndCounts(t *testing.T, h harness) {
	ctx := context.Background()
	clk := newClock()
	s := h.fresh(t).open(t, clk)
	mustCommit(t, s, 3, "k3", webhook("j1", "ci"), webhook("j2", "ci"))
	clk.Add(time.Minute)
	if err := reset(ctx, s, "acct", "Work", store.Checkpoint{UIDValidity: 9, LastUID: 4}); err != nil {
		t.Fatal(err)
	}
	ms, err := s.Checkpoints(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 || ms[0].Mailbox != "INBOX" || ms[0].Checkpoint.LastUID != 3 || !ms[0].UpdatedAt.Equal(t0) ||
		ms[1].Mailbox != "Work" || ms[1].Checkpoint.UIDValidity != 9 || !ms[1].UpdatedAt.Equal(t0.Add(time.Minute)) {
		t.Errorf("Mailboxes = %+v", ms)
	}
	jobs, err := s.Claim(ctx, store.Selector{Kind: store.KindWebhook, Target: "ci"}, clk.Now(), 1)
	if err != nil || len(jobs) != 1 {
		t.Fatalf("claim: %v %v", jobs, err)
	}
	if err := s.Finish(ctx, jobs[0].ID, store.StateDead, time.Time{}, store.Attempt{Status: "http 400"}); err != nil {
		t.Fatal(err)
	}
	counts, err := s.MailboxCounts(ctx, "acct", "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	if counts[store.StatePending] != 1 || counts[store.StateDead] != 1 || len(counts) != 2 {
		t.Errorf("counts = %v", counts)
	}
	if counts, _ := s.MailboxCounts(ctx, "acct", "Work"); len(counts) != 0 {
		t.Errorf("counts of Work = %v", counts)
	}
}
