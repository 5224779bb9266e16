package dispatch

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/mailhook/mailhook/store"
)

// events collects what Options.Observe receives.
type events struct {
	mu  sync.Mutex
	got []Event
}

func (e *events) observe(ev Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.got = append(e.got, ev)
}

func (e *events) of(id string) []Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []Event
	for _, ev := range e.got {
		if ev.JobID == id {
			out = append(out, ev)
		}
	}
	return out
}

func TestObserveOutcomes(t *testing.T) {
	_, key := testSecret(t, 3, 32)
	var retried sync.Once
	srv, _ := receiver(t, func(w http.ResponseWriter, r *http.Request, _ int) {
		switch r.Header.Get(HeaderID) {
		case "msg_RETRY":
			retried.Do(func() { w.WriteHeader(http.StatusServiceUnavailable) }) // first attempt only
		case "msg_400":
			w.WriteHeader(http.StatusBadRequest)
		case "msg_410":
			w.WriteHeader(http.StatusGone)
		}
	})
	var ev events
	out := newFakeOutbox()
	// The 410 goes to an endpoint of its own: it disables that endpoint.
	d := mustNew(t, out, []Endpoint{{Name: "ci", URL: srv.URL, Secrets: [][]byte{key}, Retry: fastRetry},
		{Name: "old", URL: srv.URL, Secrets: [][]byte{key}}},
		Options{Quick: noQuick, Observe: ev.observe})
	if !d.Heartbeat().IsZero() {
		t.Errorf("Heartbeat before Run = %v, want zero", d.Heartbeat())
	}
	before := time.Now()
	start(t, d)
	t0 := time.Now()
	out.add(newJob("msg_OK", "ci", t0), newJob("msg_RETRY", "ci", t0), newJob("msg_400", "ci", t0),
		newJob("msg_410", "old", t0), newJob("msg_GONE", "removed", t0))
	out.waitState(t, "msg_OK", store.StateDone)
	out.waitState(t, "msg_RETRY", store.StateDone)
	out.waitState(t, "msg_400", store.StateDead)
	out.waitState(t, "msg_410", store.StateDead)
	out.waitState(t, "msg_GONE", store.StateDead)

	for _, tc := range []struct {
		id       string
		outcomes []string
		reason   string
	}{
		{"msg_OK", []string{OutcomeDelivered}, ""},
		{"msg_RETRY", []string{OutcomeRetry, OutcomeDelivered}, ""},
		{"msg_400", []string{OutcomeDead}, DeadRejected},
		{"msg_410", []string{OutcomeDead}, DeadGone},
		{"msg_GONE", []string{OutcomeDead}, DeadRemoved},
	} {
		got := ev.of(tc.id)
		if len(got) != len(tc.outcomes) {
			t.Errorf("%s: %d events %+v, want %v", tc.id, len(got), got, tc.outcomes)
			continue
		}
		for i, e := range got {
			if e.Outcome() != tc.outcomes[i] {
				t.Errorf("%s event %d: outcome %q (%+v), want %q", tc.id, i, e.Outcome(), e, tc.outcomes[i])
			}
			if e.Rule != "ci-failures" || e.Account != "personal" || e.Mailbox != "INBOX" || e.Attempt != i+1 || e.Inline {
				t.Errorf("%s event %d: %+v lacks the job's names or attempt, or claims spooled content", tc.id, i, e)
			}
		}
		if r := got[len(got)-1].DeadReason(); r != tc.reason {
			t.Errorf("%s: dead reason %q, want %q", tc.id, r, tc.reason)
		}
	}
	if hb := d.Heartbeat(); hb.Before(before) {
		t.Errorf("Heartbeat while running = %v, before Run started at %v", hb, before)
	}
}

func TestDeadReason(t *testing.T) {
	for _, tc := range []struct {
		state, status, want string
	}{
		{store.StateDead, "http 400", DeadRejected},
		{store.StateDead, "http 301", DeadRejected},
		{store.StateDead, "http 410", DeadGone},
		{store.StateDead, "http 503", DeadMaxAge},
		{store.StateDead, "http 429", DeadMaxAge},
		{store.StateDead, "timeout", DeadMaxAge},
		{store.StateDead, "network", DeadMaxAge},
		{store.StateDead, "refused", DeadRefused},
		{store.StateDead, "removed", DeadRemoved},
		{store.StatePending, "http 503", ""},
		{store.StateDone, "http 200", ""},
	} {
		if got := (Event{State: tc.state, Status: tc.status}).DeadReason(); got != tc.want {
			t.Errorf("DeadReason(%s, %s) = %q, want %q", tc.state, tc.status, got, tc.want)
		}
	}
	if got := (Event{State: store.StatePending, Status: "canceled"}).Outcome(); got != OutcomeInterrupted {
		t.Errorf("Outcome(pending, canceled) = %q, want %q", got, OutcomeInterrupted)
	}
}

func TestHeartbeatStopsWithRun(t *testing.T) {
	d := mustNew(t, newFakeOutbox(), nil, Options{})
	stop := start(t, d)
	deadline := time.Now().Add(10 * time.Second)
	for d.Heartbeat().IsZero() {
		if time.Now().After(deadline) {
			t.Fatal("no heartbeat while running")
		}
		time.Sleep(5 * time.Millisecond) // polling with a deadline
	}
	stop()
	if hb := d.Heartbeat(); !hb.IsZero() {
		t.Errorf("Heartbeat after Run returned = %v, want zero", hb)
	}
}
