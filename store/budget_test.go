package store

import (
	"context"
	"slices"
	"testing"
	"time"
)

// TestBudgetLedger: deltas add up per bucket, survive a reopen, old buckets are pruned, and the
// throttle decision is kept per account.
func TestBudgetLedger(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	clk := newClock()
	s, err := OpenWith(dir, Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	m0, m1 := t0.Truncate(time.Minute), t0.Truncate(time.Minute).Add(time.Minute)
	if err := s.AddBudget(ctx, "a", []BudgetBucket{{m0, 100}, {m1, 5}}, BudgetThrottle{}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	until := t0.Add(3 * time.Hour)
	if err := s.AddBudget(ctx, "a", []BudgetBucket{{m1, 7}, {m1.Add(time.Minute), 0}},
		BudgetThrottle{Until: until, Reason: "budget"}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddBudget(ctx, "b", []BudgetBucket{{m0, 1}}, BudgetThrottle{}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddBudget(ctx, "a", []BudgetBucket{{m0, -1}}, BudgetThrottle{}, time.Time{}); err == nil {
		t.Error("negative delta accepted")
	}
	s.Close()

	s = open(t, dir, clk)
	got, err := s.BudgetBuckets(ctx, "a", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if want := []BudgetBucket{{m0, 100}, {m1, 12}}; !slices.Equal(got, want) {
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
	if err := s.AddBudget(ctx, "a", nil, BudgetThrottle{}, m1); err != nil {
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

// TestMailboxesAndCounts: the status view lists checkpoints with their update time and counts
// jobs per state for one mailbox.
func TestMailboxesAndCounts(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	s := open(t, t.TempDir(), clk)
	mustCommit(t, s, 3, "k3", webhook("j1", "ci"), webhook("j2", "ci"))
	clk.Add(time.Minute)
	if err := s.ResetCheckpoint(ctx, "acct", "Work", Checkpoint{UIDValidity: 9, LastUID: 4}); err != nil {
		t.Fatal(err)
	}
	ms, err := s.Mailboxes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 || ms[0].Mailbox != "INBOX" || ms[0].Checkpoint.LastUID != 3 || !ms[0].UpdatedAt.Equal(t0) ||
		ms[1].Mailbox != "Work" || ms[1].Checkpoint.UIDValidity != 9 || !ms[1].UpdatedAt.Equal(t0.Add(time.Minute)) {
		t.Errorf("Mailboxes = %+v", ms)
	}
	jobs, err := s.Claim(ctx, KindWebhook, "ci", clk.Now(), 1)
	if err != nil || len(jobs) != 1 {
		t.Fatalf("claim: %v %v", jobs, err)
	}
	if err := s.Finish(ctx, jobs[0].ID, StateDead, time.Time{}, Attempt{Status: "http 400"}); err != nil {
		t.Fatal(err)
	}
	counts, err := s.MailboxCounts(ctx, "acct", "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	if counts[StatePending] != 1 || counts[StateDead] != 1 || len(counts) != 2 {
		t.Errorf("counts = %v", counts)
	}
	if counts, _ := s.MailboxCounts(ctx, "acct", "Work"); len(counts) != 0 {
		t.Errorf("counts of Work = %v", counts)
	}
}
