package store

import (
	"context"
	"slices"
	"testing"
)

func TestReplayJobID(t *testing.T) {
	orig := JobID("acct", "INBOX", 7, 42, "ci", 0)
	a := ReplayJobID("20261126T100000Z", orig)
	if a == orig || a != ReplayJobID("20261126T100000Z", orig) || len(a) != len(orig) || a[:4] != "msg_" {
		t.Fatalf("replay id %q of %q", a, orig)
	}
	for _, other := range []string{
		ReplayJobID("20261126T100001Z", orig),
		ReplayJobID("20261126T100000Z", JobID("acct", "INBOX", 7, 43, "ci", 0)),
		ReplayJobID("", orig),
	} {
		if other == a {
			t.Errorf("replay ids collide: %q", a)
		}
	}
	// Golden: the id is part of the webhook contract (webhook-id), it must never change.
	// Computed independently: python3 hashlib over the length-prefixed fields.
	if got, want := ReplayJobID("r1", "msg_x"), "msg_yvdgkg7iauxibt4s7yjr6hjh6e"; got != want {
		t.Errorf("ReplayJobID = %q", got)
	}
}

func TestEnqueue(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir(), newClock())
	wake := s.Wake()
	a, b := webhook("a", "hook"), webhook("b", "hook", "a")
	got, err := s.Enqueue(ctx, []Job{a, b})
	if err != nil || !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("Enqueue = %v, %v", got, err)
	}
	select {
	case <-wake:
	default:
		t.Error("Enqueue did not wake the workers")
	}
	if _, ok, err := s.Checkpoint(ctx, "acct", "INBOX"); ok || err != nil {
		t.Errorf("Enqueue made a checkpoint: %v %v", ok, err)
	}
	// Again: nothing new; a third job is added.
	c := webhook("c", "hook")
	if got, err = s.Enqueue(ctx, []Job{a, c, b}); err != nil || !slices.Equal(got, []string{"c"}) {
		t.Fatalf("second Enqueue = %v, %v", got, err)
	}
	jobs, err := s.Jobs(ctx, Filter{})
	if err != nil || len(jobs) != 3 {
		t.Fatalf("jobs %v, %v", ids(jobs), err)
	}
	// Claimable as any other job; b waits for a.
	claimed, err := s.Claim(ctx, KindWebhook, "hook", t0, 10)
	if err != nil || !slices.Equal(ids(claimed), []string{"a", "c"}) {
		t.Fatalf("claimed %v, %v", ids(claimed), err)
	}
	// A bad job refuses the whole batch.
	if _, err := s.Enqueue(ctx, []Job{webhook("d", "hook"), {ID: "e", Kind: "nonsense"}}); err == nil {
		t.Error("bad kind accepted")
	}
	if _, err := s.Enqueue(ctx, []Job{webhook("f", "hook", "missing")}); err == nil {
		t.Error("missing dependency accepted")
	}
	if _, _, err := s.Job(ctx, "d"); err == nil {
		t.Error("a job of a refused batch was stored")
	}
}
