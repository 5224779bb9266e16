package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// claimAll commits webhook jobs with ids to target "ci" and claims them all.
func claimAll(t *testing.T, s *Store, clk *clock, ids ...string) {
	t.Helper()
	var jobs []Job
	for _, id := range ids {
		jobs = append(jobs, webhook(id, "ci"))
	}
	mustCommit(t, s, 1, "", jobs...)
	got, err := s.Claim(context.Background(), KindWebhook, "ci", clk.Now(), len(ids))
	if err != nil || len(got) != len(ids) {
		t.Fatalf("claim: %d jobs, err %v", len(got), err)
	}
}

// One group commit settles each job on its own: a job no longer in flight, a missing one, or a
// change the database refuses fails only its own Finish, and the rest are written and wake.
func TestFinishBatchIsolatesFailures(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	s := open(t, t.TempDir(), clk)
	claimAll(t, s, clk, "a", "b", "c", "d")
	if err := s.Finish(ctx, "d", StateDead, time.Time{}, Attempt{Status: "http 400"}); err != nil {
		t.Fatal(err)
	}
	op := func(id, state string) *finishOp {
		return &finishOp{id: id, state: state, at: dbTime(clk.Now()), now: dbTime(clk.Now()),
			a: Attempt{Status: "s-" + id}, ready: make(chan struct{})}
	}
	// "bogus" passes no CHECK constraint: the batch's transaction fails and each op goes alone.
	batch := []*finishOp{op("a", StateDone), op("d", StateDone), op("missing", StateDone),
		op("c", "bogus"), op("b", StatePending)}
	wake := s.Wake()
	s.commitFinishes(ctx, batch, nil)
	for _, o := range batch {
		select {
		case <-o.ready:
		default:
			t.Errorf("op %s: ready not closed", o.id)
		}
	}
	want := map[string]error{"a": nil, "b": nil, "d": ErrState, "missing": ErrNotFound}
	for _, o := range batch {
		switch w, ok := want[o.id]; {
		case !ok: // c: refused by the database
			if o.err == nil || !strings.Contains(o.err.Error(), "finish job c as bogus") {
				t.Errorf("op c: err %v, want the database's refusal, naming the job", o.err)
			}
		case w == nil && o.err != nil, w != nil && !errors.Is(o.err, w):
			t.Errorf("op %s: err %v, want %v", o.id, o.err, w)
		}
	}
	for id, state := range map[string]string{"a": StateDone, "b": StatePending, "c": StateInFlight, "d": StateDead} {
		j, as := mustJob(t, s, id)
		if j.State != state {
			t.Errorf("%s is %s, want %s", id, j.State, state)
		}
		if n := len(as); (id == "a" || id == "b" || id == "d") != (n == 1) {
			t.Errorf("%s has %d attempts recorded", id, n)
		}
	}
	select {
	case <-wake:
	default:
		t.Error("a batch with a job done did not fire Wake")
	}
}

// Many concurrent Finishes all return nil only once durable: after a reopen every job is in its
// final state with exactly one attempt, whatever the batches were.
func TestFinishConcurrentDurable(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	dir := t.TempDir()
	s, err := OpenWith(dir, Options{Now: clk.Now})
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
		state := StateDone
		if i%3 == 0 {
			state = StatePending
		}
		wg.Go(func() { errs[i] = s.Finish(ctx, id, state, time.Time{}, Attempt{Status: "http 200"}) })
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
	s = open(t, dir, clk)
	for i, id := range ids {
		j, as := mustJob(t, s, id)
		want := StateDone
		if i%3 == 0 {
			want = StatePending
		}
		if j.State != want || len(as) != 1 {
			t.Errorf("%s after reopen: %s with %d attempts, want %s with 1", id, j.State, len(as), want)
		}
	}
}

// A Finish whose context is done before it is called writes nothing.
func TestFinishCanceled(t *testing.T) {
	clk := newClock()
	s := open(t, t.TempDir(), clk)
	claimAll(t, s, clk, "a")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Finish(ctx, "a", StateDone, time.Time{}, Attempt{}); !errors.Is(err, context.Canceled) {
		t.Errorf("Finish with a canceled context = %v", err)
	}
	if j, as := mustJob(t, s, "a"); j.State != StateInFlight || len(as) != 0 {
		t.Errorf("job is %s with %d attempts, want in flight with none", j.State, len(as))
	}
}

// Claims go in due order: earliest next_at first, insertion order among equals.
func TestClaimDueOrder(t *testing.T) {
	clk := newClock()
	now := clk.Now()
	late, early := webhook("late", "ci"), webhook("early", "ci")
	late.NextAt, early.NextAt = now.Add(time.Second), now.Add(-time.Second)
	for _, target := range []string{"ci", ""} {
		t.Run("target="+target, func(t *testing.T) {
			s := open(t, t.TempDir(), clk)
			mustCommit(t, s, 1, "", late, webhook("a", "ci"), early, webhook("b", "ci"))
			got, err := s.Claim(context.Background(), KindWebhook, target, now.Add(time.Minute), 10)
			if err != nil {
				t.Fatal(err)
			}
			if want := []string{"early", "a", "b", "late"}; !slices.Equal(ids(got), want) {
				t.Errorf("claimed %v, want %v", ids(got), want)
			}
		})
	}
}

// Claiming and NextDue walk an index in due order and stop early, for every selector shape the
// workers use; sorting every pending job made each claim cost the whole backlog.
func TestClaimQueriesUseDueIndexes(t *testing.T) {
	s := open(t, t.TempDir(), newClock())
	for _, sel := range []Selector{
		{Kind: KindWebhook, Target: "ci"},
		{Kind: KindWebhook},
		{Kind: KindReply, Account: "acct"},
		{Kind: KindPostAction, Account: "acct", Mailbox: "INBOX"},
	} {
		cond, args := sel.where()
		for name, q := range map[string]string{"claim": claimQuery(cond), "next due": nextDueQuery(cond)} {
			qargs := args
			if name == "claim" {
				qargs = append(append([]any{int64(0)}, args...), 1)
			}
			rows, err := s.db.Query("EXPLAIN QUERY PLAN "+q, qargs...)
			if err != nil {
				t.Fatal(err)
			}
			var plan []string
			for rows.Next() {
				var id, parent, unused int
				var detail string
				if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
					t.Fatal(err)
				}
				plan = append(plan, detail)
			}
			rows.Close()
			text := strings.Join(plan, "; ")
			if strings.Contains(text, "TEMP B-TREE") || !strings.Contains(text, "USING INDEX jobs_due") {
				t.Errorf("%s %+v: plan %q, want a due index and no sort", name, sel, text)
			}
		}
	}
}
