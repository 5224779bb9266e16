package sqlite

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mailhook/mailhook/store"
)

// One group commit settles each job on its own: a job no longer in flight, a missing one, or a
// change the database refuses fails only its own Finish, and the rest are written and wake.
func TestFinishBatchIsolatesFailures(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	s := open(t, t.TempDir(), clk)
	claimAll(t, s, clk, "a", "b", "c", "d")
	if err := s.Finish(ctx, "d", store.StateDead, time.Time{}, store.Attempt{Status: "http 400"}); err != nil {
		t.Fatal(err)
	}
	op := func(id, state string) *finishOp {
		return &finishOp{id: id, state: state, at: dbTime(clk.Now()), now: dbTime(clk.Now()),
			a: store.Attempt{Status: "s-" + id}, ready: make(chan struct{})}
	}
	// "bogus" passes no CHECK constraint: the batch's transaction fails and each op goes alone.
	batch := []*finishOp{op("a", store.StateDone), op("d", store.StateDone), op("missing", store.StateDone),
		op("c", "bogus"), op("b", store.StatePending)}
	wake := s.Wake()
	s.commitFinishes(ctx, batch, nil)
	for _, o := range batch {
		select {
		case <-o.ready:
		default:
			t.Errorf("op %s: ready not closed", o.id)
		}
	}
	want := map[string]error{"a": nil, "b": nil, "d": store.ErrState, "missing": store.ErrNotFound}
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
	for id, state := range map[string]string{"a": store.StateDone, "b": store.StatePending, "c": store.StateInFlight, "d": store.StateDead} {
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

// Claiming and NextDue walk an index in due order and stop early, for every selector shape the
// workers use; sorting every pending job made each claim cost the whole backlog.
func TestClaimQueriesUseDueIndexes(t *testing.T) {
	s := open(t, t.TempDir(), newClock())
	for _, sel := range []store.Selector{
		{Kind: store.KindWebhook, Target: "ci"},
		{Kind: store.KindWebhook},
		{Kind: store.KindReply, Account: "acct"},
		{Kind: store.KindPostAction, Account: "acct", Mailbox: "INBOX"},
	} {
		cond, args := where(sel)
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
