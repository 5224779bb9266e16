package store

import (
	"context"
	"testing"
	"time"
)

// Disabling an endpoint holds its pending jobs (not other endpoints', not other kinds'), survives a
// reopen, and enabling it releases exactly those held jobs and wakes the workers.
func TestEndpointDisableEnable(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	clk := newClock()
	s := open(t, dir, clk)
	reply := webhook("r1", "gone")
	reply.Kind = KindReply
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
	for id, want := range map[string]string{"a1": StateHeld, "a2": StateHeld, "b1": StatePending, "r1": StatePending} {
		if j, _ := mustJob(t, s, id); j.State != want {
			t.Errorf("job %s: %s, want %s", id, j.State, want)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(t, dir, clk)
	e, err = s.Endpoint(ctx, "gone")
	if err != nil || !e.Disabled() || !e.DisabledAt.Equal(t0) || e.Reason != "http 410 Gone" ||
		!e.FailingSince.Equal(t0.Add(-time.Hour)) {
		t.Fatalf("after reopen: %+v, %v", e, err)
	}
	all, err := s.Endpoints(ctx)
	if err != nil || len(all) != 1 || all[0].Name != "gone" {
		t.Fatalf("Endpoints: %+v, %v", all, err)
	}
	counts, err := s.TargetCounts(ctx, KindWebhook)
	if err != nil || counts["gone"][StateHeld] != 2 || counts["other"][StatePending] != 1 || len(counts) != 2 {
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
	jobs, err := s.Claim(ctx, KindWebhook, "gone", clk.Now(), 10)
	if err != nil || len(jobs) != 2 {
		t.Errorf("claim after enable: %v, %v", ids(jobs), err)
	}
	if n, err := s.EnableEndpoint(ctx, "never-disabled", clk.Now()); err != nil || n != 0 {
		t.Errorf("enable of an unknown endpoint: %d, %v", n, err)
	}
}

func TestSetEndpointFailingClears(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir(), newClock())
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
