package dispatch

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailhook/mailhook/outbox"
	"github.com/mailhook/mailhook/store"
	"github.com/mailhook/mailhook/store/sqlite"
)

// healthStore is a SQLite store on a settable clock, both Outbox and EndpointStates.
func healthStore(t *testing.T, clk *clock) store.Backend {
	t.Helper()
	st, err := sqlite.Open(t.TempDir(), store.Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// commitJobs commits webhook jobs for target with the given ids, as the pipeline does.
func commitJobs(t *testing.T, st store.Backend, uid uint32, target string, ids ...string) {
	t.Helper()
	var jobs []store.Job
	for _, id := range ids {
		jobs = append(jobs, store.Job{ID: id, Kind: store.KindWebhook, Target: target, Account: "personal",
			Mailbox: "INBOX", UIDValidity: 7, UID: uid, Rule: "r", Body: []byte(`{"id":"` + id + `"}`)})
	}
	if err := store.CommitMessage(context.Background(), st, "personal", "INBOX", store.Commit{Checkpoint: store.Checkpoint{UIDValidity: 7, LastUID: uid}, Jobs: jobs}); err != nil {
		t.Fatal(err)
	}
}

// waitJob polls the store until job id is in state (the store's Finish wakes nothing we can wait on
// from here without racing the workers).
func waitJob(t *testing.T, st store.Backend, id, state string) store.Job {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		j, _, err := st.Job(context.Background(), id)
		if err == nil && j.State == state {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s: state %q (err %v), want %s", id, j.State, err, state)
		}
		time.Sleep(5 * time.Millisecond) // polling an outside store; the deadline bounds it
	}
}

// A 410 dead-letters its job, disables the endpoint and holds its other jobs, including one
// committed afterwards as pending; enabling the endpoint in the store releases them and the
// running dispatcher delivers them.
func TestGoneDisablesEndpoint(t *testing.T) {
	clk := &clock{t: time.Now()}
	st := healthStore(t, clk)
	_, key := testSecret(t, 5, 32)
	var gone atomic.Bool
	gone.Store(true)
	srv, reqs := receiver(t, func(w http.ResponseWriter, r *http.Request, _ int) {
		if gone.Load() {
			w.WriteHeader(http.StatusGone)
		}
	})
	var ev events
	commitJobs(t, st, 1, "ci", "msg_1", "msg_2", "msg_3")
	start(t, mustNew(t, st, []Endpoint{{Name: "ci", URL: srv.URL, Secrets: [][]byte{key}, Concurrency: 1}},
		Options{Quick: noQuick, Now: clk.Now, Observe: ev.observe, States: st}))

	// Two workers may claim (the endpoint's and the any-target one), so which job goes first is
	// open; the concurrency limit of 1 makes it the only one sent.
	first := next(t, reqs).header.Get(HeaderID)
	j1 := waitJob(t, st, first, store.StateDead)
	if !strings.Contains(j1.LastError, "410") {
		t.Errorf("%s last error %q", first, j1.LastError)
	}
	for _, id := range []string{"msg_1", "msg_2", "msg_3"} {
		if id != first {
			waitJob(t, st, id, store.StateHeld)
		}
	}
	e, err := st.Endpoint(context.Background(), "ci")
	if err != nil || !e.Disabled() || e.Reason != "http 410 Gone" {
		t.Fatalf("endpoint state %+v, %v", e, err)
	}
	noMore(t, reqs)

	// A job that reaches the worker as pending while the endpoint is disabled is held, unsent.
	commitJobs(t, st, 2, "ci", "msg_4")
	j4 := waitJob(t, st, "msg_4", store.StateHeld)
	if !strings.Contains(j4.LastError, "endpoint disabled: http 410 Gone") {
		t.Errorf("msg_4 last error %q", j4.LastError)
	}
	noMore(t, reqs)
	if got := ev.of("msg_4"); len(got) != 1 || got[0].Outcome() != OutcomeHeld {
		t.Errorf("msg_4 events %+v, want one %s", got, OutcomeHeld)
	}

	// The receiver is back; `mailhook webhooks enable` releases the held jobs.
	gone.Store(false)
	n, err := st.EnableEndpoint(context.Background(), "ci", clk.Now())
	if err != nil || n != 3 {
		t.Fatalf("EnableEndpoint released %d, %v; want 3", n, err)
	}
	for _, id := range []string{"msg_1", "msg_2", "msg_3", "msg_4"} {
		if id != first {
			waitJob(t, st, id, store.StateDone)
		}
	}
	waitJob(t, st, first, store.StateDead) // a dead letter stays one: `outbox retry` is the way back
}

// An endpoint failing without a single success for DisableAfter is disabled and its jobs held;
// a success in between restarts the period.
func TestFailingPeriodDisables(t *testing.T) {
	clk := &clock{t: time.Now()}
	st := healthStore(t, clk)
	_, key := testSecret(t, 6, 32)
	var ok atomic.Bool
	srv, _ := receiver(t, func(w http.ResponseWriter, r *http.Request, _ int) {
		if !ok.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	retry := outbox.RetryPolicy{MinBackoff: time.Minute, MaxBackoff: time.Minute}
	start(t, mustNew(t, st, []Endpoint{{Name: "ci", URL: srv.URL, Secrets: [][]byte{key}, Concurrency: 1,
		Retry: retry, DisableAfter: time.Hour}}, Options{Quick: noQuick, Now: clk.Now, States: st}))
	ctx := context.Background()
	failingSince := func() time.Time {
		e, err := st.Endpoint(ctx, "ci")
		if err != nil {
			t.Fatal(err)
		}
		return e.FailingSince
	}
	attempts := func(id string) int {
		_, as, err := st.Job(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return len(as)
	}
	waitAttempts := func(id string, n int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for attempts(id) < n {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d attempts, want %d", id, attempts(id), n)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	// advance moves the clock and wakes the workers (any commit does), which otherwise sleep on the
	// real timer of the retry they wait for.
	pokes := uint32(100)
	advance := func(d time.Duration) {
		clk.Advance(d)
		pokes++
		poke := store.Job{ID: "poke_" + time.Duration(pokes).String(), Kind: store.KindPostAction, Target: "mark_seen",
			Account: "personal", Mailbox: "INBOX", UIDValidity: 7, UID: pokes, Rule: "r"}
		if err := store.CommitMessage(ctx, st, "personal", "INBOX", store.Commit{Checkpoint: store.Checkpoint{UIDValidity: 7, LastUID: pokes}, Jobs: []store.Job{poke}}); err != nil {
			t.Fatal(err)
		}
	}

	start := clk.Now()
	commitJobs(t, st, 1, "ci", "msg_a")
	waitAttempts("msg_a", 1)
	if got := failingSince(); got.IsZero() || got.Before(start) {
		t.Fatalf("failing since %v after the first failure", got)
	}

	// 59 minutes later a success: the streak ends.
	ok.Store(true)
	advance(59 * time.Minute)
	waitJob(t, st, "msg_a", store.StateDone)
	if got := failingSince(); !got.IsZero() {
		t.Fatalf("failing since %v after a success", got)
	}

	// Failing again: not disabled before an hour has passed since this streak began…
	ok.Store(false)
	commitJobs(t, st, 2, "ci", "msg_b")
	waitAttempts("msg_b", 1)
	advance(30 * time.Minute)
	waitAttempts("msg_b", 2)
	if e, _ := st.Endpoint(ctx, "ci"); e.Disabled() {
		t.Fatalf("disabled after 30 minutes of failing: %+v", e)
	}
	// …and disabled, with the job held, at the first failure an hour after it began.
	advance(31 * time.Minute)
	j := waitJob(t, st, "msg_b", store.StateHeld)
	if !strings.Contains(j.LastError, "endpoint disabled") {
		t.Errorf("last error %q", j.LastError)
	}
	e, _ := st.Endpoint(ctx, "ci")
	if !e.Disabled() || !strings.Contains(e.Reason, "failing without a success since") {
		t.Errorf("endpoint %+v", e)
	}
	// New jobs are held at once, never sent.
	commitJobs(t, st, 3, "ci", "msg_c")
	waitJob(t, st, "msg_c", store.StateHeld)
}

// The disabled state survives a restart of the dispatcher: a new one holds the jobs it claims.
func TestDisabledStateIsLoaded(t *testing.T) {
	clk := &clock{t: time.Now()}
	st := healthStore(t, clk)
	_, key := testSecret(t, 7, 32)
	srv, reqs := receiver(t, nil)
	if _, err := st.DisableEndpoint(context.Background(), "ci", "http 410 Gone", clk.Now()); err != nil {
		t.Fatal(err)
	}
	commitJobs(t, st, 1, "ci", "msg_1") // as if committed in the instant before the disable
	start(t, mustNew(t, st, []Endpoint{{Name: "ci", URL: srv.URL, Secrets: [][]byte{key}}},
		Options{Quick: noQuick, Now: clk.Now, States: st}))
	waitJob(t, st, "msg_1", store.StateHeld)
	noMore(t, reqs)
}
