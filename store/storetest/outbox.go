package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailhook/mailhook/store"
)

func testClaim(t *testing.T, h harness) {
	ctx := context.Background()
	clk := newClock()
	s := h.fresh(t).open(t, clk)
	now := clk.Now()
	later := webhook("later", "ci")
	later.NextAt = now.Add(time.Minute)
	held := webhook("held", "ci")
	held.State, held.LastError = store.StateHeld, "endpoint disabled"
	mustCommit(t, s, 1, "",
		webhook("a", "ci"),
		webhook("b", "other"),
		later,
		held,
		store.Job{ID: "reply", Kind: store.KindReply, Target: "ack"},
		store.Job{ID: "post", Kind: store.KindPostAction, Target: "mark_seen", Account: "acct", Mailbox: "INBOX",
			DependsOn: []string{"a", "reply"}},
		webhook("c", "ci"),
	)

	claim := func(kind, target string, at time.Time, max int) []string {
		t.Helper()
		jobs, err := s.Claim(ctx, store.Selector{Kind: kind, Target: target}, at, max)
		if err != nil {
			t.Fatalf("claim %s/%s: %v", kind, target, err)
		}
		for _, j := range jobs {
			if j.State != store.StateInFlight || j.Attempts != 1 {
				t.Errorf("claimed %s: state %s attempts %d", j.ID, j.State, j.Attempts)
			}
		}
		return ids(jobs)
	}
	check := func(name string, got, want []string) {
		t.Helper()
		if !slices.Equal(got, want) {
			t.Errorf("%s: claimed %v, want %v", name, got, want)
		}
	}

	if next, ok, err := s.NextDue(ctx, store.Selector{Kind: store.KindPostAction, Target: ""}); ok || err != nil {
		t.Errorf("NextDue of a blocked post-action = %v, %v; want none", next, ok)
	}
	if h, _ := mustJob(t, s, "held"); h.State != store.StateHeld || h.LastError != "endpoint disabled" {
		t.Errorf("held job stored as %s %q", h.State, h.LastError)
	}
	check("max 1, oldest first", claim(store.KindWebhook, "ci", now, 1), []string{"a"})
	check("not due, held, claimed skipped", claim(store.KindWebhook, "ci", now, 10), []string{"c"})
	check("nothing left due", claim(store.KindWebhook, "ci", now, 10), nil)
	if next, ok, _ := s.NextDue(ctx, store.Selector{Kind: store.KindWebhook, Target: "ci"}); !ok || !next.Equal(now.Add(time.Minute)) {
		t.Errorf("NextDue = %v, %v; want %v", next, ok, now.Add(time.Minute))
	}
	check("due at next_at", claim(store.KindWebhook, "", now.Add(time.Minute), 10), []string{"b", "later"})
	check("max 0", claim(store.KindReply, "", now, 0), nil)

	check("dependencies pending", claim(store.KindPostAction, "", now, 10), nil)
	if err := s.Finish(ctx, "a", store.StateDone, time.Time{}, store.Attempt{Status: "http 200"}); err != nil {
		t.Fatal(err)
	}
	check("one dependency done", claim(store.KindPostAction, "", now, 10), nil)
	check("reply by kind", claim(store.KindReply, "ack", now, 10), []string{"reply"})
	if err := s.Finish(ctx, "reply", store.StateUnknown, time.Time{}, store.Attempt{Status: "smtp", Error: "connection lost after DATA"}); err != nil {
		t.Fatal(err)
	}
	check("unknown dependency holds", claim(store.KindPostAction, "", now, 10), nil)
	if err := s.Requeue(ctx, "reply", now); err != nil {
		t.Fatal(err)
	}
	check("requeued reply", claim(store.KindReply, "", now, 10), []string{"reply"})
	if err := s.Finish(ctx, "reply", store.StateDone, time.Time{}, store.Attempt{Status: "smtp 250"}); err != nil {
		t.Fatal(err)
	}
	if next, ok, _ := s.NextDue(ctx, store.Selector{Kind: store.KindPostAction, Target: ""}); !ok || !next.Equal(now) {
		t.Errorf("NextDue of an unblocked post-action = %v, %v; want %v", next, ok, now)
	}
	post, err := s.Claim(ctx, store.Selector{Kind: store.KindPostAction, Account: "acct", Mailbox: "Other"}, now, 10)
	if err != nil {
		t.Fatal(err)
	}
	check("another mailbox's post-actions", ids(post), nil)
	post, err = s.Claim(ctx, store.Selector{Kind: store.KindPostAction, Account: "acct", Mailbox: "INBOX"}, now, 10)
	if err != nil {
		t.Fatal(err)
	}
	check("own post-actions, all dependencies done", ids(post), []string{"post"})
}

func testClaimConcurrent(t *testing.T, h harness) {
	ctx := context.Background()
	clk := newClock()
	s := h.fresh(t).open(t, clk)
	const n = 120
	var jobs []store.Job
	for i := range n {
		jobs = append(jobs, webhook(fmt.Sprintf("j%03d", i), "ci"))
	}
	mustCommit(t, s, 1, "", jobs...)

	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		got = map[string]int{}
	)
	errc := make(chan error, 2)
	for range 2 {
		wg.Go(func() {
			for {
				js, err := s.Claim(ctx, store.Selector{Kind: store.KindWebhook, Target: "ci"}, clk.Now(), 3)
				if err != nil {
					errc <- err
					return
				}
				if len(js) == 0 {
					return
				}
				mu.Lock()
				for _, j := range js {
					got[j.ID]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Errorf("claimed %d distinct jobs, want %d", len(got), n)
	}
	for id, c := range got {
		if c != 1 {
			t.Errorf("job %s claimed %d times", id, c)
		}
	}
}

// Claims go in due order: earliest next_at first, insertion order among equals.
func testClaimDueOrder(t *testing.T, h harness) {
	clk := newClock()
	now := clk.Now()
	late, early := webhook("late", "ci"), webhook("early", "ci")
	late.NextAt, early.NextAt = now.Add(time.Second), now.Add(-time.Second)
	for _, target := range []string{"ci", ""} {
		t.Run("target="+target, func(t *testing.T) {
			s := h.fresh(t).open(t, clk)
			mustCommit(t, s, 1, "", late, webhook("a", "ci"), early, webhook("b", "ci"))
			got, err := s.Claim(context.Background(), store.Selector{Kind: store.KindWebhook, Target: target}, now.Add(time.Minute), 10)
			if err != nil {
				t.Fatal(err)
			}
			if want := []string{"early", "a", "b", "late"}; !slices.Equal(ids(got), want) {
				t.Errorf("claimed %v, want %v", ids(got), want)
			}
		})
	}
}

// Jobs a stopped process left in flight stay in flight when the state is opened again (opening
// recovers nothing); Recover settles them once their claims have expired: webhooks and
// post-actions go again (at least once), replies become unknown (at most once).
func testRecoverAfterRestart(t *testing.T, h harness) {
	ctx := context.Background()
	st := h.fresh(t)
	clk := newClock()
	s, err := st.openWith(t, store.Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	mustCommit(t, s, 1, "", webhook("w", "ci"), store.Job{ID: "r", Kind: store.KindReply, Target: "ack"},
		webhook("idle", "other"))
	for _, kind := range []string{store.KindWebhook, store.KindReply} {
		if _, err := s.Claim(ctx, store.Selector{Kind: kind}, clk.Now(), 1); err != nil {
			t.Fatal(err)
		}
	}
	s.Close() // as if killed: nothing settled the claimed jobs

	clk.Add(store.DefaultClaimTTL + time.Second)
	s = st.open(t, clk)
	if j, _ := mustJob(t, s, "w"); j.State != store.StateInFlight {
		t.Errorf("opening the state settled an in-flight job: %s", j.State)
	}
	n, err := s.Recover(ctx, clk.Now())
	if err != nil || n != 2 {
		t.Errorf("Recover = %d, %v; want 2", n, err)
	}
	tests := []struct {
		id, state string
		attempts  int
		recorded  bool
	}{
		{"w", store.StatePending, 1, true}, // at least once: goes again, attempt counted
		{"r", store.StateUnknown, 1, true}, // at most once: never resent
		{"idle", store.StatePending, 0, false},
	}
	for _, tt := range tests {
		j, as := mustJob(t, s, tt.id)
		if j.State != tt.state || j.Attempts != tt.attempts {
			t.Errorf("%s: state %s attempts %d, want %s %d", tt.id, j.State, j.Attempts, tt.state, tt.attempts)
		}
		if tt.recorded != (len(as) == 1 && as[0].Status == "interrupted" && as[0].At.Equal(clk.Now())) {
			t.Errorf("%s: attempts %+v", tt.id, as)
		}
		if j.ClaimOwner != "" || !j.ClaimExpires.IsZero() {
			t.Errorf("%s: claim %q until %v left after recovery", tt.id, j.ClaimOwner, j.ClaimExpires)
		}
	}
	if got, _ := s.Claim(ctx, store.Selector{Kind: store.KindWebhook, Target: "ci"}, clk.Now(), 10); !slices.Equal(ids(got), []string{"w"}) {
		t.Errorf("claim after recovery = %v, want [w]", ids(got))
	}
	if n, err := s.Recover(ctx, clk.Now()); err != nil || n != 0 {
		t.Errorf("second Recover = %d, %v; want 0 (the new claim is live)", n, err)
	}
}

// A claim records its owner and expiry; Heartbeat pushes the expiry of the owner's claims; Recover
// leaves a live claim alone and settles it once it has expired; Finish of a recovered job is
// refused (the job is no longer in flight).
func testClaimExpiryAndHeartbeat(t *testing.T, h harness) {
	ctx := context.Background()
	clk := newClock()
	const ttl = 30 * time.Second
	s, err := h.fresh(t).openWith(t, store.Options{Now: clk.Now, Owner: "replica-1", ClaimTTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	mustCommit(t, s, 1, "", webhook("a", "ci"), webhook("b", "ci"))
	now := clk.Now()
	got, err := s.Claim(ctx, store.Selector{Kind: store.KindWebhook}, now, 2)
	if err != nil || len(got) != 2 {
		t.Fatalf("claim: %v, %v", ids(got), err)
	}
	for _, j := range got {
		if j.ClaimOwner != "replica-1" || !j.ClaimExpires.Equal(now.Add(ttl)) {
			t.Errorf("claimed %s: owner %q expires %v, want replica-1 at %v", j.ID, j.ClaimOwner, j.ClaimExpires, now.Add(ttl))
		}
	}
	if err := s.Finish(ctx, "b", store.StateDone, time.Time{}, store.Attempt{Status: "ok"}); err != nil {
		t.Fatal(err)
	}
	if j, _ := mustJob(t, s, "b"); j.ClaimOwner != "" || !j.ClaimExpires.IsZero() {
		t.Errorf("finished job keeps its claim: %q %v", j.ClaimOwner, j.ClaimExpires)
	}
	if n, err := s.Recover(ctx, now.Add(ttl-time.Second)); err != nil || n != 0 {
		t.Errorf("Recover before expiry = %d, %v; want 0", n, err)
	}
	beat := now.Add(20 * time.Second)
	if err := s.Heartbeat(ctx, beat); err != nil {
		t.Fatal(err)
	}
	if j, _ := mustJob(t, s, "a"); !j.ClaimExpires.Equal(beat.Add(ttl)) {
		t.Errorf("after Heartbeat the claim expires %v, want %v", j.ClaimExpires, beat.Add(ttl))
	}
	if n, err := s.Recover(ctx, now.Add(ttl+time.Second)); err != nil || n != 0 {
		t.Errorf("Recover of a renewed claim = %d, %v; want 0", n, err)
	}
	wake := s.Wake()
	if n, err := s.Recover(ctx, beat.Add(ttl)); err != nil || n != 1 {
		t.Errorf("Recover at expiry = %d, %v; want 1", n, err)
	}
	select {
	case <-wake:
	default:
		t.Error("Recover of a job did not fire Wake")
	}
	j, as := mustJob(t, s, "a")
	if j.State != store.StatePending || len(as) != 1 || as[0].Status != "interrupted" {
		t.Errorf("recovered job: %s, attempts %+v", j.State, as)
	}
	if err := s.Finish(ctx, "a", store.StateDone, time.Time{}, store.Attempt{Status: "ok"}); !errors.Is(err, store.ErrState) {
		t.Errorf("Finish after the claim was recovered: err = %v, want ErrState", err)
	}
}

func testWakeBroadcast(t *testing.T, h harness) {
	ctx := context.Background()
	s := h.fresh(t).open(t, newClock())
	w1, w2 := s.Wake(), s.Wake()
	select {
	case <-w1:
		t.Fatal("Wake fired before any change")
	default:
	}

	woken := make(chan int, 2)
	for i, w := range []<-chan struct{}{w1, w2} {
		go func() {
			select {
			case <-w:
				woken <- i
			case <-time.After(10 * time.Second):
				woken <- -1
			}
		}()
	}
	mustCommit(t, s, 1, "", webhook("a", "ci"))
	for range 2 {
		if i := <-woken; i < 0 {
			t.Fatal("a waiter was not woken by Commit")
		}
	}

	// The next channel is a fresh one, fired by the next change (here a Finish to done).
	w3 := s.Wake()
	select {
	case <-w3:
		t.Fatal("new Wake channel already fired")
	default:
	}
	if _, err := s.Claim(ctx, store.Selector{Kind: store.KindWebhook, Target: ""}, t0, 1); err != nil {
		t.Fatal(err)
	}
	if err := s.Finish(ctx, "a", store.StateDone, time.Time{}, store.Attempt{Status: "ok"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-w3:
	case <-time.After(10 * time.Second):
		t.Fatal("Finish(done) did not wake")
	}
}

func testFinish(t *testing.T, h harness) {
	ctx := context.Background()
	clk := newClock()
	s := h.fresh(t).open(t, clk)
	mustCommit(t, s, 1, "", webhook("a", "ci"))
	if err := s.Finish(ctx, "a", store.StateDone, time.Time{}, store.Attempt{}); !errors.Is(err, store.ErrState) {
		t.Errorf("Finish of a pending job: err = %v, want ErrState", err)
	}
	if err := s.Finish(ctx, "nope", store.StateDone, time.Time{}, store.Attempt{}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Finish of a missing job: err = %v, want ErrNotFound", err)
	}
	if err := s.Finish(ctx, "a", store.StateInFlight, time.Time{}, store.Attempt{}); err == nil {
		t.Error("Finish to in_flight accepted")
	}

	retryAt := clk.Now().Add(30 * time.Second)
	if _, err := s.Claim(ctx, store.Selector{Kind: store.KindWebhook, Target: "ci"}, clk.Now(), 1); err != nil {
		t.Fatal(err)
	}
	if err := s.Finish(ctx, "a", store.StatePending, retryAt, store.Attempt{Status: "http 503", Error: "service unavailable"}); err != nil {
		t.Fatal(err)
	}
	j, as := mustJob(t, s, "a")
	if j.State != store.StatePending || !j.NextAt.Equal(retryAt) || j.LastError != "service unavailable" || j.Attempts != 1 {
		t.Errorf("after retry: %+v", j)
	}
	if len(as) != 1 || as[0] != (store.Attempt{JobID: "a", At: clk.Now(), Status: "http 503", Error: "service unavailable"}) {
		t.Errorf("attempts = %+v", as)
	}
	if got, _ := s.Claim(ctx, store.Selector{Kind: store.KindWebhook, Target: "ci"}, retryAt.Add(-time.Nanosecond), 1); len(got) != 0 {
		t.Error("claimed before next_at")
	}
	got, _ := s.Claim(ctx, store.Selector{Kind: store.KindWebhook, Target: "ci"}, retryAt, 1)
	if len(got) != 1 || got[0].Attempts != 2 {
		t.Fatalf("second claim = %+v", got)
	}
	at := clk.Now().Add(time.Minute)
	if err := s.Finish(ctx, "a", store.StateDead, time.Time{}, store.Attempt{At: at, Status: "http 404", Error: "not found"}); err != nil {
		t.Fatal(err)
	}
	j, as = mustJob(t, s, "a")
	if j.State != store.StateDead || !j.NextAt.Equal(retryAt) || len(as) != 2 || !as[1].At.Equal(at) {
		t.Errorf("after dead: %+v %+v", j, as)
	}
}

// Many concurrent Finishes all return nil only once durable: after a reopen every job is in its
// final state with exactly one attempt, whatever the batches were.
func testFinishConcurrentDurable(t *testing.T, h harness) {
	ctx := context.Background()
	clk := newClock()
	st := h.fresh(t)
	s, err := st.openWith(t, store.Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	const n = 64
	var ids []string
	for i := range n {
		ids = append(ids, fmt.Sprintf("j%02d", i))
	}
	claimAll(t, s, clk, ids...)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, id := range ids {
		state := store.StateDone
		if i%3 == 0 {
			state = store.StatePending
		}
		wg.Go(func() { errs[i] = s.Finish(ctx, id, state, time.Time{}, store.Attempt{Status: "http 200"}) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("finish %s: %v", ids[i], err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = st.open(t, clk)
	for i, id := range ids {
		j, as := mustJob(t, s, id)
		want := store.StateDone
		if i%3 == 0 {
			want = store.StatePending
		}
		if j.State != want || len(as) != 1 {
			t.Errorf("%s after reopen: %s with %d attempts, want %s with 1", id, j.State, len(as), want)
		}
	}
}

// A Finish whose context is done before it is called writes nothing.
func testFinishCanceled(t *testing.T, h harness) {
	clk := newClock()
	s := h.fresh(t).open(t, clk)
	claimAll(t, s, clk, "a")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Finish(ctx, "a", store.StateDone, time.Time{}, store.Attempt{}); !errors.Is(err, context.Canceled) {
		t.Errorf("Finish with a canceled context = %v", err)
	}
	if j, as := mustJob(t, s, "a"); j.State != store.StateInFlight || len(as) != 0 {
		t.Errorf("job is %s with %d attempts, want in flight with none", j.State, len(as))
	}
}

func testRequeueReleaseDropCounts(t *testing.T, h harness) {
	ctx := context.Background()
	clk := newClock()
	s := h.fresh(t).open(t, clk)
	h1, h2 := webhook("h1", "off"), webhook("h2", "off")
	h1.State, h2.State = store.StateHeld, store.StateHeld
	mustCommit(t, s, 1, "", webhook("a", "ci"), webhook("b", "ci"), h1, h2,
		store.Job{ID: "post", Kind: store.KindPostAction, Target: "mark_seen", DependsOn: []string{"a"}})
	if _, err := s.Claim(ctx, store.Selector{Kind: store.KindWebhook, Target: "ci"}, clk.Now(), 2); err != nil {
		t.Fatal(err)
	}
	if err := s.Finish(ctx, "a", store.StateDead, time.Time{}, store.Attempt{Status: "http 400"}); err != nil {
		t.Fatal(err)
	}

	counts, err := s.Counts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{store.StatePending: 1, store.StateInFlight: 1, store.StateDone: 0, store.StateDead: 1, store.StateUnknown: 0, store.StateHeld: 2}
	if fmt.Sprint(counts) != fmt.Sprint(want) {
		t.Errorf("Counts = %v, want %v", counts, want)
	}
	dead, err := s.Jobs(ctx, store.Filter{State: store.StateDead})
	if err != nil || !slices.Equal(ids(dead), []string{"a"}) || dead[0].Body != nil {
		t.Errorf("Jobs(dead) = %+v, %v", dead, err)
	}
	if page, _ := s.Jobs(ctx, store.Filter{Limit: 2}); !slices.Equal(ids(page), []string{"a", "b"}) {
		t.Errorf("Jobs(limit 2) = %v", ids(page))
	}
	if tgt, _ := s.Jobs(ctx, store.Filter{Selector: store.Selector{Target: "off"}}); !slices.Equal(ids(tgt), []string{"h1", "h2"}) {
		t.Errorf("Jobs(target off) = %v", ids(tgt))
	}

	if err := s.Requeue(ctx, "b", clk.Now()); !errors.Is(err, store.ErrState) {
		t.Errorf("Requeue of an in-flight job: err = %v, want ErrState", err)
	}
	if err := s.Drop(ctx, "b"); !errors.Is(err, store.ErrState) {
		t.Errorf("Drop of an in-flight job: err = %v, want ErrState", err)
	}
	err = s.Drop(ctx, "a")
	if !errors.Is(err, store.ErrDependents) || !strings.Contains(err.Error(), "post") {
		t.Errorf("Drop of a job with a pending dependent: err = %v, want store.ErrDependents naming post", err)
	}
	if err := s.Drop(ctx, "missing"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Drop of a missing job: err = %v, want ErrNotFound", err)
	}

	clk.Add(time.Hour)
	if err := s.Requeue(ctx, "a", clk.Now()); err != nil {
		t.Fatal(err)
	}
	j, as := mustJob(t, s, "a")
	if j.State != store.StatePending || j.Attempts != 0 || !j.NextAt.Equal(clk.Now()) || len(as) != 1 {
		t.Errorf("requeued: %+v, %d attempts recorded", j, len(as))
	}

	n, err := s.Release(ctx, store.Selector{Kind: store.KindWebhook, Target: "off"}, clk.Now())
	if err != nil || n != 2 {
		t.Errorf("Release = %d, %v; want 2", n, err)
	}
	if got, _ := s.Claim(ctx, store.Selector{Kind: store.KindWebhook, Target: "off"}, clk.Now(), 10); !slices.Equal(ids(got), []string{"h1", "h2"}) {
		t.Errorf("claim after release = %v", ids(got))
	}

	if err := s.Drop(ctx, "post"); err != nil {
		t.Fatal(err)
	}
	if err := s.Drop(ctx, "a"); err != nil {
		t.Fatalf("Drop after its dependent went: %v", err)
	}
	if _, _, err := s.Job(ctx, "a"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("dropped job: err = %v, want ErrNotFound", err)
	}
}

func testEnqueue(t *testing.T, h harness) {
	ctx := context.Background()
	s := h.fresh(t).open(t, newClock())
	wake := s.Wake()
	a, b := webhook("a", "hook"), webhook("b", "hook", "a")
	got, err := s.Enqueue(ctx, []store.Job{a, b})
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
	if got, err = s.Enqueue(ctx, []store.Job{a, c, b}); err != nil || !slices.Equal(got, []string{"c"}) {
		t.Fatalf("second Enqueue = %v, %v", got, err)
	}
	jobs, err := s.Jobs(ctx, store.Filter{})
	if err != nil || len(jobs) != 3 {
		t.Fatalf("jobs %v, %v", ids(jobs), err)
	}
	// Claimable as any other job; b waits for a.
	claimed, err := s.Claim(ctx, store.Selector{Kind: store.KindWebhook, Target: "hook"}, t0, 10)
	if err != nil || !slices.Equal(ids(claimed), []string{"a", "c"}) {
		t.Fatalf("claimed %v, %v", ids(claimed), err)
	}
	// A bad job refuses the whole batch.
	if _, err := s.Enqueue(ctx, []store.Job{webhook("d", "hook"), {ID: "e", Kind: "nonsense"}}); err == nil {
		t.Error("bad kind accepted")
	}
	if _, err := s.Enqueue(ctx, []store.Job{webhook("f", "hook", "missing")}); err == nil {
		t.Error("missing dependency accepted")
	}
	if _, _, err := s.Job(ctx, "d"); err == nil {
		t.Error("a job of a refused batch was stored")
	}
}

func testPrune(t *testing.T, h harness) {
	ctx := context.Background()
	clk := newClock()
	s, err := h.fresh(t).openWith(t, store.Options{Now: clk.Now, DoneRetention: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mustCommit(t, s, 1, "",
		webhook("done", "ci"), webhook("needed", "ci"), webhook("dead", "ci"),
		store.Job{ID: "post", Kind: store.KindPostAction, Target: "mark_seen", DependsOn: []string{"needed", "dead"}})
	if _, err := s.Claim(ctx, store.Selector{Kind: store.KindWebhook, Target: "ci"}, clk.Now(), 3); err != nil {
		t.Fatal(err)
	}
	for id, st := range map[string]string{"done": store.StateDone, "needed": store.StateDone, "dead": store.StateDead} {
		if err := s.Finish(ctx, id, st, time.Time{}, store.Attempt{Status: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Prune(ctx, clk.Now().Add(23*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if jobs, _ := s.Jobs(ctx, store.Filter{}); len(jobs) != 4 {
		t.Errorf("pruned before the retention: %v", ids(jobs))
	}
	if err := s.Prune(ctx, clk.Now().Add(25*time.Hour)); err != nil {
		t.Fatal(err)
	}
	jobs, _ := s.Jobs(ctx, store.Filter{})
	if !slices.Equal(ids(jobs), []string{"needed", "dead", "post"}) {
		t.Errorf("after prune: %v; want the done job needed by post kept", ids(jobs))
	}

	// Commit prunes by itself, at most once an hour.
	clk.Add(48 * time.Hour)
	mustCommit(t, s, 2, "")
	if jobs, _ := s.Jobs(ctx, store.Filter{}); len(jobs) != 3 {
		t.Errorf("Commit pruned jobs still needed: %v", ids(jobs))
	}
}

// A tool opens the state beside a running daemon (Options.Shared), sees its data, and its
// writes are visible to the daemon; it does not recover the daemon's live claims.
func testSharedBesideDaemon(t *testing.T, h harness) {
	ctx := context.Background()
	st := h.fresh(t)
	daemon, err := st.openWith(t, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	job := store.Job{ID: "msg_a", Kind: store.KindWebhook, Target: "ci", Account: "a", Mailbox: "INBOX", UIDValidity: 1, UID: 1}
	if err := commit(ctx, daemon, "a", "INBOX", store.Checkpoint{UIDValidity: 1, LastUID: 1}, "k", []store.Job{job}); err != nil {
		t.Fatal(err)
	}
	if claimed, err := daemon.Claim(ctx, store.Selector{Kind: store.KindWebhook, Target: "ci"}, now.Add(time.Minute), 1); err != nil || len(claimed) != 1 {
		t.Fatalf("claim: %d jobs, %v", len(claimed), err)
	}

	tool, err := st.openWith(t, store.Options{Shared: true})
	if err != nil {
		t.Fatalf("shared open beside the daemon: %v", err)
	}
	if n, err := tool.Recover(ctx, now); err != nil || n != 0 {
		t.Errorf("tool's Recover = %d, %v; want the daemon's live claim left alone", n, err)
	}
	got, _, err := tool.Job(ctx, "msg_a")
	if err != nil {
		t.Fatal(err)
	}
	if got.State != store.StateInFlight {
		t.Errorf("tool recovered the daemon's in-flight job: state %s", got.State)
	}
	if err := tool.Finish(ctx, "msg_a", store.StateDead, time.Time{}, store.Attempt{At: now, Status: "http 400"}); err != nil {
		t.Fatal(err)
	}
	if err := tool.Requeue(ctx, "msg_a", now); err != nil {
		t.Fatal(err)
	}
	if err := tool.Close(); err != nil {
		t.Fatal(err)
	}
	got, _, err = daemon.Job(ctx, "msg_a")
	if err != nil || got.State != store.StatePending {
		t.Errorf("daemon sees %v, %v; want the tool's requeue", got.State, err)
	}
}
