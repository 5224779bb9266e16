package storetest

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/mailhook/mailhook/store"
)

// A batch commit is one transaction: every message's jobs and seen key and the last entry's
// checkpoint, or nothing at all when any part fails.
func testCommitBatch(t *testing.T, h harness) {
	ctx := context.Background()
	clk := newClock()
	s := h.fresh(t).open(t, clk)
	w := writer(ctx, t, s, "acct", "INBOX")
	cp := func(uid uint32) store.Checkpoint {
		return store.Checkpoint{UIDValidity: 7, LastUID: uid, LastInternalDate: t0.Add(time.Duration(uid) * time.Minute)}
	}
	if err := w.Commit(ctx, nil); err != nil {
		t.Fatalf("empty batch: %v", err)
	}
	if _, ok, _ := w.Checkpoint(ctx); ok {
		t.Error("an empty batch stored a checkpoint")
	}
	wake := s.Wake()
	err := w.Commit(ctx, []store.Commit{
		{Checkpoint: cp(3), Key: "k3", Jobs: []store.Job{webhook("a3", "ci")}},
		{Checkpoint: cp(4), Key: "k4"},
		{Checkpoint: cp(5), Key: "k5", Jobs: []store.Job{webhook("a5", "ci", "a3"), webhook("b5", "ci")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-wake:
	default:
		t.Error("a batch commit did not fire Wake")
	}
	if got, ok, err := w.Checkpoint(ctx); err != nil || !ok || got != cp(5) {
		t.Errorf("checkpoint = %+v, %v, %v; want the last entry's %+v", got, ok, err, cp(5))
	}
	for _, k := range []string{"k3", "k4", "k5"} {
		if seen, err := w.Seen(ctx, k); err != nil || !seen {
			t.Errorf("Seen(%s) = %v, %v; want true", k, seen, err)
		}
	}
	if jobs, _ := s.Jobs(ctx, store.Filter{}); !slices.Equal(ids(jobs), []string{"a3", "a5", "b5"}) {
		t.Errorf("jobs = %v", ids(jobs))
	}

	// A failure in the last message undoes the first ones too: the checkpoint stays behind every
	// message whose jobs are not stored.
	err = w.Commit(ctx, []store.Commit{
		{Checkpoint: cp(6), Key: "k6", Jobs: []store.Job{webhook("a6", "ci")}},
		{Checkpoint: cp(7), Key: "k7", Jobs: []store.Job{webhook("a7", "ci", "nowhere")}},
	})
	if err == nil {
		t.Fatal("a batch with an unknown dependency committed")
	}
	if got, _, _ := w.Checkpoint(ctx); got != cp(5) {
		t.Errorf("checkpoint = %+v after a failed batch, want %+v", got, cp(5))
	}
	if seen, _ := w.Seen(ctx, "k6"); seen {
		t.Error("seen key of a failed batch recorded")
	}
	if _, _, err := s.Job(ctx, "a6"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("job of a failed batch: err = %v, want ErrNotFound", err)
	}
	// Entries of one batch share one UIDVALIDITY, the stored one.
	err = w.Commit(ctx, []store.Commit{{Checkpoint: cp(8)}, {Checkpoint: store.Checkpoint{UIDValidity: 9, LastUID: 9}}})
	if !errors.Is(err, store.ErrUIDValidity) {
		t.Errorf("mixed uidvalidity: err = %v, want ErrUIDValidity", err)
	}
	if got, _, _ := w.Checkpoint(ctx); got != cp(5) {
		t.Errorf("checkpoint = %+v after a refused batch, want %+v", got, cp(5))
	}
	// The first batch of a mailbox creates its checkpoint.
	o := writer(ctx, t, s, "acct", "Other")
	if err := o.Commit(ctx, []store.Commit{{Checkpoint: cp(1)}, {Checkpoint: cp(2)}}); err != nil {
		t.Fatal(err)
	}
	if got, ok, _ := s.Checkpoint(ctx, "acct", "Other"); !ok || got != cp(2) {
		t.Errorf("first batch: checkpoint %+v, %v; want %+v", got, ok, cp(2))
	}
}

// The record of a fetch under way survives a restart until a commit reaches its end; strikes of a
// message add up across restarts until a commit passes the message.
func testFetchRecords(t *testing.T, h harness) {
	ctx := context.Background()
	clk := newClock()
	st := h.fresh(t)
	s := st.open(t, clk)
	w := writer(ctx, t, s, "acct", "INBOX")
	if err := w.ResetCheckpoint(ctx, store.Checkpoint{UIDValidity: 7, LastUID: 9}); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := w.UnfinishedFetch(ctx); ok || err != nil {
		t.Fatalf("fresh mailbox: unfinished fetch %v, %v", ok, err)
	}
	r := store.FetchRange{UIDValidity: 7, Lo: 10, Hi: 20, Begun: t0}
	if err := w.BeginFetch(ctx, r); err != nil {
		t.Fatal(err)
	}
	if err := w.BeginFetch(ctx, store.FetchRange{UIDValidity: 7, Lo: 5, Hi: 4}); err == nil {
		t.Error("an empty range was recorded")
	}
	for range 2 {
		if _, err := w.StrikeFetch(ctx, 7, 12, "connection reset"); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := w.StrikeFetch(ctx, 7, 15, "panic"); err != nil || n != 1 {
		t.Errorf("first strike of 15 = %d, %v", n, err)
	}
	s.Close() // as if the process died while fetching

	s = st.open(t, clk)
	w = writer(ctx, t, s, "acct", "INBOX")
	if got, ok, err := w.UnfinishedFetch(ctx); err != nil || !ok || got != r {
		t.Errorf("after restart: unfinished fetch %+v, %v, %v; want %+v", got, ok, err, r)
	}
	if n, err := w.StrikeFetch(ctx, 7, 12, "stack overflow"); err != nil || n != 3 {
		t.Errorf("third strike of 12 = %d, %v; want 3", n, err)
	}
	if n, _ := w.FetchStrikes(ctx, 7, 12); n != 3 {
		t.Errorf("FetchStrikes(12) = %d, want 3", n)
	}
	if n, _ := w.FetchStrikes(ctx, 8, 12); n != 0 {
		t.Errorf("strikes of another uidvalidity = %d, want 0", n)
	}
	if _, ok, _ := writer(ctx, t, s, "acct", "Other").UnfinishedFetch(ctx); ok {
		t.Error("fetch record leaked to another mailbox")
	}

	// A commit that stops short of Hi keeps the record and clears the strikes it passed.
	if err := w.Commit(ctx, []store.Commit{{Checkpoint: store.Checkpoint{UIDValidity: 7, LastUID: 12}}}); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := w.UnfinishedFetch(ctx); !ok {
		t.Error("a commit short of the range's end cleared the record")
	}
	if n, _ := w.FetchStrikes(ctx, 7, 12); n != 0 {
		t.Errorf("strikes of a committed message = %d, want 0", n)
	}
	if n, _ := w.FetchStrikes(ctx, 7, 15); n != 1 {
		t.Errorf("strikes of a message not yet committed = %d, want 1", n)
	}
	if err := w.Commit(ctx, []store.Commit{{Checkpoint: store.Checkpoint{UIDValidity: 7, LastUID: 20}}}); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := w.UnfinishedFetch(ctx); ok {
		t.Error("a commit reaching the range's end left the record")
	}
	if n, _ := w.FetchStrikes(ctx, 7, 15); n != 0 {
		t.Errorf("strikes of 15 after the commit passed it = %d, want 0", n)
	}

	// EndFetch clears a record; a reset to another UIDVALIDITY drops the old one's records.
	if err := w.BeginFetch(ctx, store.FetchRange{UIDValidity: 7, Lo: 21, Hi: 30}); err != nil {
		t.Fatal(err)
	}
	if err := w.EndFetch(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := w.UnfinishedFetch(ctx); ok {
		t.Error("EndFetch left the record")
	}
	if err := w.EndFetch(ctx); err != nil {
		t.Errorf("second EndFetch: %v", err)
	}
	if err := w.BeginFetch(ctx, store.FetchRange{UIDValidity: 7, Lo: 21, Hi: 30}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.StrikeFetch(ctx, 7, 25, "x"); err != nil {
		t.Fatal(err)
	}
	if err := w.ResetCheckpoint(ctx, store.Checkpoint{UIDValidity: 8, LastUID: 0}); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := w.UnfinishedFetch(ctx); ok {
		t.Error("a reset to another UIDVALIDITY kept the old fetch record")
	}
	if n, _ := w.FetchStrikes(ctx, 7, 25); n != 0 {
		t.Errorf("a reset to another UIDVALIDITY kept old strikes: %d", n)
	}
}

// A mailbox writer claims and finishes only its own mailbox's post-actions.
func testWriterPostActions(t *testing.T, h harness) {
	ctx := context.Background()
	clk := newClock()
	s := h.fresh(t).open(t, clk)
	post := func(id, mailbox string) store.Job {
		return store.Job{ID: id, Kind: store.KindPostAction, Target: "mark_seen", Account: "acct", Mailbox: mailbox,
			UIDValidity: 7, UID: 1, Rule: "r"}
	}
	if err := commit(ctx, s, "acct", "INBOX", store.Checkpoint{UIDValidity: 7, LastUID: 1}, "",
		[]store.Job{post("in1", "INBOX"), webhook("hook", "ci"), post("in2", "INBOX")}); err != nil {
		t.Fatal(err)
	}
	if err := commit(ctx, s, "acct", "Work", store.Checkpoint{UIDValidity: 7, LastUID: 1}, "",
		[]store.Job{post("work", "Work")}); err != nil {
		t.Fatal(err)
	}
	w := writer(ctx, t, s, "acct", "INBOX")
	mine := store.Selector{Kind: store.KindPostAction, Account: "acct", Mailbox: "INBOX"}
	if next, ok, err := w.NextDue(ctx, mine); err != nil || !ok || !next.Equal(t0) {
		t.Errorf("NextDue = %v, %v, %v; want %v", next, ok, err, t0)
	}
	for _, other := range []store.Selector{
		{Kind: store.KindWebhook},
		{Kind: store.KindPostAction, Account: "acct", Mailbox: "Work"},
		{Kind: store.KindPostAction, Account: "other", Mailbox: "INBOX"},
	} {
		if got, err := w.Claim(ctx, other, clk.Now(), 10); err == nil {
			t.Errorf("writer of INBOX claimed with %+v: %v", other, ids(got))
		}
		if _, _, err := w.NextDue(ctx, other); err == nil {
			t.Errorf("writer of INBOX answered NextDue for %+v", other)
		}
	}
	got, err := w.Claim(ctx, store.Selector{}, clk.Now(), 10)
	if err != nil || !slices.Equal(ids(got), []string{"in1", "in2"}) {
		t.Fatalf("writer's claim = %v, %v; want its own post-actions", ids(got), err)
	}
	if err := w.Finish(ctx, "in1", store.StateDone, time.Time{}, store.Attempt{Status: "ok"}); err != nil {
		t.Fatal(err)
	}
	// A job of another mailbox cannot be finished through this writer.
	if _, err := s.Claim(ctx, store.Selector{Kind: store.KindPostAction, Mailbox: "Work"}, clk.Now(), 1); err != nil {
		t.Fatal(err)
	}
	if err := w.Finish(ctx, "work", store.StateDone, time.Time{}, store.Attempt{Status: "ok"}); err == nil {
		t.Error("writer of INBOX finished a post-action of Work")
	}
	if j, _ := mustJob(t, s, "work"); j.State != store.StateInFlight {
		t.Errorf("Work's post-action is %s, want still in flight", j.State)
	}
	if err := w.Heartbeat(ctx, clk.Now()); err != nil {
		t.Errorf("Heartbeat: %v", err)
	}
}

// A budget reservation is granted while charged bytes within the window plus live reservations
// leave room; it counts until released or until its hold lapses; a refusal says when it could fit.
func testBudgetReserve(t *testing.T, h harness) {
	ctx := context.Background()
	clk := newClock()
	st := h.fresh(t)
	s := st.open(t, clk)
	w := writer(ctx, t, s, "acct", "INBOX")
	w2 := writer(ctx, t, s, "acct", "Work") // another mailbox of the same account shares the budget
	lim := store.BudgetLimit{Bytes: 1000, Window: time.Hour, Bucket: time.Minute, Hold: 10 * time.Minute}
	now := t0.Truncate(time.Minute)

	if err := s.ChargeBudget(ctx, "acct", []store.BudgetBucket{{Start: now, Bytes: 300}}, store.BudgetThrottle{}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	g1, err := w.ReserveBudget(ctx, 500, lim, now)
	if err != nil || !g1.Granted || g1.ID == "" || g1.Used != 300 {
		t.Fatalf("first reservation = %+v, %v; want granted with 300 used", g1, err)
	}
	g2, err := w2.ReserveBudget(ctx, 300, lim, now)
	if err != nil || g2.Granted || g2.Used != 800 {
		t.Fatalf("second reservation = %+v, %v; want refused with 800 used", g2, err)
	}
	// 100 bytes must go: the reservation's 500 lapse first (hold), the charge's 300 later.
	if want := now.Add(lim.Hold); !g2.Until.Equal(want) {
		t.Errorf("refusal until %v, want %v (the reservation lapses)", g2.Until, want)
	}
	// A process that holds no lease (a tool beside the daemon) reserves against the same uses.
	gt, err := s.ReserveBudget(ctx, "acct", 200, lim, now)
	if err != nil || !gt.Granted || gt.ID == "" || gt.Used != 800 {
		t.Fatalf("tool's reservation = %+v, %v; want granted with 800 used", gt, err)
	}
	if g, err := w2.ReserveBudget(ctx, 1, lim, now); err != nil || g.Granted || g.Used != 1000 {
		t.Errorf("reservation beside the tool's = %+v, %v; want refused with 1000 used", g, err)
	}
	if err := s.ReleaseBudget(ctx, "acct", gt.ID); err != nil {
		t.Fatal(err)
	}
	if g, err := writer(ctx, t, s, "other", "INBOX").ReserveBudget(ctx, 900, lim, now); err != nil || !g.Granted || g.Used != 0 {
		t.Errorf("another account's reservation = %+v, %v; want granted, nothing used", g, err)
	}

	// Releasing the first reservation (its fetch read 450 bytes, charged) makes room.
	if err := s.ChargeBudget(ctx, "acct", []store.BudgetBucket{{Start: now, Bytes: 450}}, store.BudgetThrottle{}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := s.ReleaseBudget(ctx, "acct", g1.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.ReleaseBudget(ctx, "acct", g1.ID); err != nil {
		t.Errorf("second release: %v", err)
	}
	g3, err := w2.ReserveBudget(ctx, 200, lim, now)
	if err != nil || !g3.Granted || g3.Used != 750 {
		t.Fatalf("after release = %+v, %v; want granted with 750 used", g3, err)
	}
	// The unreleased reservation lapses after its hold; the charges leave the window after
	// bucket + window.
	if g, _ := w.ReserveBudget(ctx, 200, lim, now.Add(lim.Hold-time.Second)); g.Granted {
		t.Errorf("granted while a live reservation filled the budget: %+v", g)
	}
	g4, err := w.ReserveBudget(ctx, 200, lim, now.Add(lim.Hold))
	if err != nil || !g4.Granted || g4.Used != 750 {
		t.Errorf("after the hold lapsed = %+v, %v; want granted with 750 used", g4, err)
	}
	s.Close()

	// Reservations survive a restart (another process's fetch may still be under way).
	s = st.open(t, clk)
	w = writer(ctx, t, s, "acct", "INBOX")
	if g, err := w.ReserveBudget(ctx, 900, lim, now.Add(lim.Hold)); err != nil || g.Granted || g.Used != 950 {
		t.Errorf("after restart = %+v, %v; want refused with 950 used", g, err)
	}
	// A request above the limit fits only alone.
	if g, _ := w.ReserveBudget(ctx, 5000, lim, now.Add(lim.Hold)); g.Granted {
		t.Errorf("oversized request granted beside other use: %+v", g)
	}
	gone := now.Add(lim.Bucket + lim.Window)
	if g, _ := w.ReserveBudget(ctx, 1000, lim, gone.Add(-time.Second)); g.Granted || !g.Until.Equal(gone) {
		t.Errorf("before the charges left the window = %+v; want refused until %v", g, gone)
	}
	if g, err := w.ReserveBudget(ctx, 5000, lim, gone.Add(lim.Hold)); err != nil || !g.Granted {
		t.Errorf("oversized request with nothing used = %+v, %v; want granted", g, err)
	}
	if _, err := w.ReserveBudget(ctx, -1, lim, now); err == nil {
		t.Error("negative request accepted")
	}
}
