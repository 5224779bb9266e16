package dispatch

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/mailhook/mailhook/message"
	"github.com/mailhook/mailhook/payload"
	"github.com/mailhook/mailhook/store"
	"github.com/mailhook/mailhook/store/sqlite"
)

// The dispatcher against the real SQLite outbox: a payload committed by the watcher's path is
// retried, delivered byte for byte with a verifiable signature, and a job of a removed webhook is
// dead-lettered.
func TestWithSQLiteStore(t *testing.T) {
	st, err := sqlite.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })

	secret, key := testSecret(t, 3, 32)
	srv, reqs := receiver(t, func(w http.ResponseWriter, _ *http.Request, n int) {
		if n == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	ctx := context.Background()
	id := store.JobID("personal", "INBOX", 7, 42, "ci-failures", 0)
	m := &message.Message{MessageID: "<run-4711@github.com>", Subject: "[acme/app] Run failed",
		From: message.Address{Name: "GitHub", Address: "noreply@github.com"}, Text: "Run failed.", TextFetched: true}
	body, err := payload.New(id, "ci-failures", "personal", "INBOX", 7, 42, m,
		message.Auth{DMARC: "pass"}, payload.BodyText, 0).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	removed := store.JobID("personal", "INBOX", 7, 42, "ci-failures", 1)
	jobs := []store.Job{
		{ID: id, Kind: store.KindWebhook, Target: "ci", Account: "personal", Mailbox: "INBOX",
			UIDValidity: 7, UID: 42, Rule: "ci-failures", Body: body},
		{ID: removed, Kind: store.KindWebhook, Target: "old", Account: "personal", Mailbox: "INBOX",
			UIDValidity: 7, UID: 42, Rule: "ci-failures", Body: body},
	}
	if err := store.CommitMessage(ctx, st, "personal", "INBOX", store.Commit{Checkpoint: store.Checkpoint{UIDValidity: 7, LastUID: 42}, Key: "key42", Jobs: jobs}); err != nil {
		t.Fatal(err)
	}
	start(t, mustNew(t, st, []Endpoint{{Name: "ci", URL: srv.URL, Secrets: [][]byte{key}, Retry: fastRetry}},
		Options{Quick: noQuick}))

	next(t, reqs) // the 503
	r := next(t, reqs)
	wh, _ := standardwebhooks.NewWebhook(secret)
	if err := wh.Verify(r.body, r.header); err != nil {
		t.Errorf("signature: %v", err)
	}
	var p payload.Payload
	if err := json.Unmarshal(r.body, &p); err != nil || p.ID != r.header.Get(HeaderID) || p.ID != id {
		t.Errorf("payload id %q (err %v), webhook-id %q, job %q", p.ID, err, r.header.Get(HeaderID), id)
	}

	j, attempts := waitStored(t, st, id, store.StateDone)
	if j.Attempts != 2 || len(attempts) != 2 || attempts[0].Status != "http 503" || attempts[1].Status != "http 200" {
		t.Errorf("job attempts %d, history %+v; want 503 then 200", j.Attempts, attempts)
	}
	if j, _ := waitStored(t, st, removed, store.StateDead); j.LastError != "webhook_removed" {
		t.Errorf("removed webhook's job: last error %q", j.LastError)
	}
}

// waitStored polls the store until job id is in state, failing after 10s.
func waitStored(t *testing.T, st store.Backend, id, state string) (store.Job, []store.Attempt) {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for {
		j, as, err := st.Job(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if j.State == state {
			return j, as
		}
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("job %s is %s, want %s", id, j.State, state)
		}
	}
}
