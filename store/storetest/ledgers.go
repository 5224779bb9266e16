package storetest

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/mailhook/mailhook/store"
)

// Disabling an endpoint holds its pending jobs (not other endpoints', not other kinds'), survives a
// reopen, and enabling it releases exactly those held jobs and wakes the workers.
func testEndpointDisableEnable(t *testing.T, h harness) {
	ctx := context.Background()
	st := h.fresh(t)
	clk := newClock()
	s := st.open(t, clk)
	reply := webhook("r1", "gone")
	reply.Kind = store.KindReply
	mustCommit(t, s, 1, "", webhook("a1", "gone"), webhook("a2", "gone"), webhook("b1", "other"), reply)

	e, err := s.Endpoint(ctx, "gone")
	if err != nil || e.Disabled() || !e.FailingSince.IsZero() {
		t.Fatalf("unknown endpoint: %+v, %v", e, err)
	}
	if err := s.SetEndpointFailing(ctx, "gone", t0.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	held, err := s.DisableEndpoint(ctx, "gone", "http 410 Gone", t0)
	if err != nil || held != 2 {
		t.Fatalf("DisableEndpoint: held %d, %v; want 2", held, err)
	}
	// A second disable keeps the first reason and time.
	clk.Add(time.Minute)
	if _, err := s.DisableEndpoint(ctx, "gone", "failing for 120h", clk.Now()); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]string{"a1": store.StateHeld, "a2": store.StateHeld, "b1": store.StatePending, "r1": store.StatePending} {
		if j, _ := mustJob(t, s, id); j.State != want {
			t.Errorf("job %s: %s, want %s", id, j.State, want)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = st.open(t, clk)
	e, err = s.Endpoint(ctx, "gone")
	if err != nil || !e.Disabled() || !e.DisabledAt.Equal(t0) || e.Reason != "http 410 Gone" ||
		!e.FailingSince.Equal(t0.Add(-time.Hour)) {
		t.Fatalf("after reopen: %+v, %v", e, err)
	}
	all, err := s.Endpoints(ctx)
	if err != nil || len(all) != 1 || all[0].Name != "gone" {
		t.Fatalf("Endpoints: %+v, %v", all, err)
	}
	counts, err := s.TargetCounts(ctx, store.KindWebhook)
	if err != nil || counts["gone"][store.StateHeld] != 2 || counts["other"][store.StatePending] != 1 || len(counts) != 2 {
		t.Fatalf("TargetCounts: %v, %v", counts, err)
	}

	wake := s.Wake()
	released, err := s.EnableEndpoint(ctx, "gone", clk.Now())
	if err != nil || released != 2 {
		t.Fatalf("EnableEndpoint: released %d, %v; want 2", released, err)
	}
	select {
	case <-wake:
	default:
		t.Error("EnableEndpoint did not fire Wake")
	}
	e, _ = s.Endpoint(ctx, "gone")
	if e.Disabled() || e.Reason != "" || !e.FailingSince.IsZero() {
		t.Errorf("after enable: %+v", e)
	}
	jobs, err := s.Claim(ctx, store.Selector{Kind: store.KindWebhook, Target: "gone"}, clk.Now(), 10)
	if err != nil || len(jobs) != 2 {
		t.Errorf("claim after enable: %v, %v", ids(jobs), err)
	}
	if n, err := s.EnableEndpoint(ctx, "never-disabled", clk.Now()); err != nil || n != 0 {
		t.Errorf("enable of an unknown endpoint: %d, %v", n, err)
	}
}

func testSetEndpointFailingClears(t *testing.T, h harness) {
	ctx := context.Background()
	s := h.fresh(t).open(t, newClock())
	if err := s.SetEndpointFailing(ctx, "x", t0); err != nil {
		t.Fatal(err)
	}
	if e, _ := s.Endpoint(ctx, "x"); !e.FailingSince.Equal(t0) || e.Disabled() {
		t.Fatalf("%+v", e)
	}
	if err := s.SetEndpointFailing(ctx, "x", time.Time{}); err != nil {
		t.Fatal(err)
	}
	if e, _ := s.Endpoint(ctx, "x"); !e.FailingSince.IsZero() {
		t.Fatalf("%+v", e)
	}
}

// An auto-reply goes once per (account, lower-cased sender, reply) per period, across a restart;
// the entry expires exactly when its period has passed, not before.
func testReplyLedgerAcrossRestart(t *testing.T, h harness) {
	st := h.fresh(t)
	clk := newClock()
	s, err := st.openWith(t, store.Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	week := 7 * 24 * time.Hour
	k := store.ReplyKey{Account: "acct", Sender: "Alice@Example.COM", Reply: "ack"}
	if r := reserve(t, s, k, "<r1@x>", week, 0, t0); r.Status != store.ReplyReserved {
		t.Fatalf("first reservation: %+v", r)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = st.open(t, clk)
	ctx := context.Background()
	for _, sender := range []string{"alice@example.com", "ALICE@EXAMPLE.COM"} {
		k2 := k
		k2.Sender = sender
		if r := reserve(t, s, k2, "<r2@x>", week, 0, t0.Add(week-time.Nanosecond)); r.Status != store.ReplyDuplicate {
			t.Errorf("after restart, %s within the period: %+v, want duplicate", sender, r)
		}
		if ok, _ := s.Replied(ctx, k2, t0.Add(week-time.Nanosecond)); !ok {
			t.Errorf("Replied(%s) = false within the period", sender)
		}
	}
	// Another reply name or account is another entry.
	if r := reserve(t, s, store.ReplyKey{Account: "acct", Sender: "alice@example.com", Reply: "other"}, "<r3@x>", week, 0, t0.Add(time.Hour)); r.Status != store.ReplyReserved {
		t.Errorf("other reply name: %+v", r)
	}
	if r := reserve(t, s, store.ReplyKey{Account: "acct2", Sender: "alice@example.com", Reply: "ack"}, "<r4@x>", week, 0, t0.Add(time.Hour)); r.Status != store.ReplyReserved {
		t.Errorf("other account: %+v", r)
	}
	if ok, _ := s.Replied(ctx, k, t0.Add(week)); ok {
		t.Error("Replied = true once the period has passed")
	}
	if r := reserve(t, s, k, "<r5@x>", week, 0, t0.Add(week)); r.Status != store.ReplyReserved {
		t.Errorf("once the period has passed: %+v, want reserved", r)
	}
	for _, id := range []string{"<r1@x>", "<r5@x>"} {
		if ok, err := s.OwnReply(ctx, id); err != nil || !ok {
			t.Errorf("OwnReply(%s) = %v, %v", id, ok, err)
		}
	}
	if ok, _ := s.OwnReply(ctx, "<r2@x>"); ok {
		t.Error("a refused reservation recorded its Message-ID")
	}
}

// The ledger has no size cap: it holds at least 1,000 entries, none forgotten before its period.
func testReplyLedgerHoldsThousands(t *testing.T, h harness) {
	s := h.fresh(t).open(t, newClock())
	const n = 1000
	for i := range n {
		k := store.ReplyKey{Account: "a", Sender: fmt.Sprintf("s%d@example.com", i), Reply: "ack"}
		if r := reserve(t, s, k, fmt.Sprintf("<%d@x>", i), 24*time.Hour, 0, t0.Add(time.Duration(i)*time.Second)); r.Status != store.ReplyReserved {
			t.Fatalf("entry %d: %+v", i, r)
		}
	}
	late := t0.Add(n * time.Second)
	for i := range n {
		k := store.ReplyKey{Account: "a", Sender: fmt.Sprintf("s%d@example.com", i), Reply: "ack"}
		if ok, err := s.Replied(context.Background(), k, late); err != nil || !ok {
			t.Fatalf("entry %d forgotten: %v, %v", i, ok, err)
		}
	}
}

// The rolling 24 h cap stops replies at the cap and says when the window allows again; a pause
// (after a daily-limit refusal) stops every reply of the account; a release frees the ledger and
// the count.
func testReplyCapPauseRelease(t *testing.T, h harness) {
	s := h.fresh(t).open(t, newClock())
	ctx := context.Background()
	key := func(i int) store.ReplyKey {
		return store.ReplyKey{Account: "a", Sender: fmt.Sprintf("s%d@x", i), Reply: "ack"}
	}
	for i := range 3 {
		if r := reserve(t, s, key(i), fmt.Sprintf("<%d@x>", i), 24*time.Hour, 3, t0.Add(time.Duration(i)*time.Hour)); r.Status != store.ReplyReserved {
			t.Fatalf("send %d: %+v", i, r)
		}
	}
	r := reserve(t, s, key(3), "<3@x>", 24*time.Hour, 3, t0.Add(3*time.Hour))
	if r.Status != store.ReplyOverCap || !r.Until.Equal(t0.Add(store.ReplyWindow)) || r.Sent != 3 {
		t.Fatalf("at the cap: %+v, want over_cap until %v", r, t0.Add(store.ReplyWindow))
	}
	if n, _ := s.RepliesSent(ctx, "a", t0.Add(3*time.Hour)); n != 3 {
		t.Errorf("RepliesSent = %d, want 3", n)
	}
	// Another account has its own count.
	if r := reserve(t, s, store.ReplyKey{Account: "b", Sender: "s@x", Reply: "ack"}, "<b@x>", 24*time.Hour, 3, t0.Add(3*time.Hour)); r.Status != store.ReplyReserved {
		t.Errorf("other account: %+v", r)
	}
	// Once the first send leaves the window, one more fits.
	if r := reserve(t, s, key(3), "<3@x>", 24*time.Hour, 3, t0.Add(store.ReplyWindow)); r.Status != store.ReplyReserved {
		t.Errorf("after the window moved: %+v", r)
	}

	// Release: the ledger entry and the count go.
	if err := s.ReleaseReply(ctx, key(3), "<3@x>"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.Replied(ctx, key(3), t0.Add(store.ReplyWindow)); ok {
		t.Error("released reply still in the ledger")
	}
	if ok, _ := s.OwnReply(ctx, "<3@x>"); ok {
		t.Error("released reply still counted as sent")
	}

	// Pause after a daily-limit refusal: until the oldest reply in the window leaves it (here the
	// send at t0+1h, counted from t0+25h: sends at t0+1h, t0+2h and t0+24h are in the window),
	// never shortened by a later, shorter pause; every sender of the account waits.
	until, err := s.PauseReplies(ctx, "a", t0.Add(store.ReplyWindow), "550 5.4.5")
	if err != nil {
		t.Fatal(err)
	}
	if want := t0.Add(time.Hour + store.ReplyWindow); !until.Equal(want) {
		t.Errorf("pause until %v, want %v (oldest send in the window + 24h)", until, want)
	}
	if u2, _ := s.PauseReplies(ctx, "a", t0.Add(store.ReplyWindow+time.Minute), "again"); !u2.Equal(until) && u2.Before(until) {
		t.Errorf("a later pause shortened the first: %v", u2)
	}
	if r := reserve(t, s, key(9), "<9@x>", 24*time.Hour, 0, t0.Add(store.ReplyWindow+time.Minute)); r.Status != store.ReplyPaused || r.Until.Before(until) {
		t.Errorf("while paused: %+v, want paused until %v", r, until)
	}
	if u, ok, _ := s.RepliesPaused(ctx, "a", t0.Add(store.ReplyWindow+time.Minute)); !ok || u.Before(until) {
		t.Errorf("RepliesPaused = %v, %v", u, ok)
	}
	// Without any reply of its own in the window, an account pauses a whole window.
	if u, _ := s.PauseReplies(ctx, "c", t0, "550 5.4.5"); !u.Equal(t0.Add(store.ReplyWindow)) {
		t.Errorf("pause without own sends until %v, want %v", u, t0.Add(store.ReplyWindow))
	}
	end, _, _ := s.RepliesPaused(ctx, "a", t0.Add(store.ReplyWindow+time.Minute))
	if r := reserve(t, s, key(9), "<9@x>", 24*time.Hour, 0, end); r.Status != store.ReplyReserved {
		t.Errorf("after the pause: %+v", r)
	}
}

// testBudgetLedger: deltas add up per bucket, survive a reopen, old buckets are pruned, and the
// throttle decision is kept per account.
func testBudgetLedger(t *testing.T, h harness) {
	ctx := context.Background()
	st := h.fresh(t)
	clk := newClock()
	s, err := st.openWith(t, store.Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	m0, m1 := t0.Truncate(time.Minute), t0.Truncate(time.Minute).Add(time.Minute)
	if err := s.ChargeBudget(ctx, "a", []store.BudgetBucket{{Start: m0, Bytes: 100}, {Start: m1, Bytes: 5}}, store.BudgetThrottle{}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	until := t0.Add(3 * time.Hour)
	if err := s.ChargeBudget(ctx, "a", []store.BudgetBucket{{Start: m1, Bytes: 7}, {Start: m1.Add(time.Minute), Bytes: 0}},
		store.BudgetThrottle{Until: until, Reason: "budget"}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := s.ChargeBudget(ctx, "b", []store.BudgetBucket{{Start: m0, Bytes: 1}}, store.BudgetThrottle{}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := s.ChargeBudget(ctx, "a", []store.BudgetBucket{{Start: m0, Bytes: -1}}, store.BudgetThrottle{}, time.Time{}); err == nil {
		t.Error("negative delta accepted")
	}
	s.Close()

	s = st.open(t, clk)
	got, err := s.BudgetBuckets(ctx, "a", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if want := []store.BudgetBucket{{Start: m0, Bytes: 100}, {Start: m1, Bytes: 12}}; !slices.Equal(got, want) {
		t.Errorf("buckets after reopen = %v, want %v", got, want)
	}
	if got, _ := s.BudgetBuckets(ctx, "a", m1); len(got) != 1 || got[0].Bytes != 12 {
		t.Errorf("buckets since %v = %v", m1, got)
	}
	th, ok, err := s.BudgetThrottleOf(ctx, "a")
	if err != nil || !ok || !th.Until.Equal(until) || th.Reason != "budget" || !th.UpdatedAt.Equal(t0) {
		t.Errorf("throttle of a = %+v, %v, %v", th, ok, err)
	}
	if _, ok, _ := s.BudgetThrottleOf(ctx, "nobody"); ok {
		t.Error("throttle of an unknown account reported")
	}
	// Pruning drops what starts before the cut, for this account only.
	if err := s.ChargeBudget(ctx, "a", nil, store.BudgetThrottle{}, m1); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.BudgetBuckets(ctx, "a", time.Time{}); len(got) != 1 || !got[0].Start.Equal(m1) {
		t.Errorf("after prune: %v", got)
	}
	if got, _ := s.BudgetBuckets(ctx, "b", time.Time{}); len(got) != 1 {
		t.Errorf("other account pruned: %v", got)
	}
	if th, _, _ := s.BudgetThrottleOf(ctx, "a"); !th.Until.IsZero() {
		t.Errorf("throttle not cleared: %+v", th)
	}
}

// testInstallationKey: one key of 32 bytes per store, created on first use, the same for every
// handle (a tool beside the daemon, replicas) and after a restart.
func testInstallationKey(t *testing.T, h harness) {
	ctx := context.Background()
	clk := newClock()
	st := h.fresh(t)
	a := st.open(t, clk)
	k1, err := a.InstallationKey(ctx)
	if err != nil || len(k1) != 32 {
		t.Fatalf("key %x, %v; want 32 bytes", k1, err)
	}
	b, err := st.openWith(t, store.Options{Now: clk.Now, Shared: true}) // a tool beside the daemon
	if err != nil {
		t.Fatal(err)
	}
	k2, err := b.InstallationKey(ctx)
	if err != nil || !bytes.Equal(k1, k2) {
		t.Errorf("second handle's key %x, %v; want %x", k2, err, k1)
	}
	if other, _ := h.fresh(t).open(t, clk).InstallationKey(ctx); bytes.Equal(other, k1) {
		t.Error("two installations share a key")
	}
}
