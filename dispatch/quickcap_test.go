package dispatch

import (
	"net/http"
	"testing"
	"time"

	"github.com/mailhook/mailhook/outbox"
	"github.com/mailhook/mailhook/store"
)

// An endpoint whose durable min_backoff is shorter than the quick retry's first wait gets no
// quick retries: the failure goes to the outbox (freeing the slot) and is retried from there. With
// a quick wait of an hour, a quick retry would hold the job past the test's deadline.
func TestNoQuickRetryWhenDurableIsSooner(t *testing.T) {
	_, key := testSecret(t, 5, 32)
	srv, _ := receiver(t, func(w http.ResponseWriter, _ *http.Request, n int) {
		if n == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	out := newFakeOutbox()
	start(t, mustNew(t, out, []Endpoint{{Name: "ci", URL: srv.URL, Secrets: [][]byte{key},
		Retry: outbox.RetryPolicy{MinBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond}}},
		Options{Quick: QuickRetry{Max: 2, WaitMin: time.Hour, WaitMax: time.Hour}}))
	out.add(newJob("msg_Q", "ci", time.Now()))
	h := out.waitFinished(t, "msg_Q", 2)
	if h[0].State != store.StatePending || h[0].Status != "http 503" || h[1].State != store.StateDone {
		t.Errorf("history = %+v, want pending after the 503 (no quick retry), then done", h)
	}
}
