package demo

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// The receiver as the demo runs it: every request answered 200 and reported once, in arrival
// order, with its signature checked against the secret.
func TestReceiverVerifiesAndReports(t *testing.T) {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	const other = "whsec_dGhpcyBpcyBhbm90aGVyIHNlY3JldCBrZXk="
	var (
		mu   sync.Mutex
		seen []Request
	)
	r, err := NewReceiver(ReceiverOptions{Secret: secret, OnRequest: func(req Request) {
		mu.Lock()
		seen = append(seen, req)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	now := time.Now()
	body := []byte(`{"version":1,"id":"msg_1"}`)
	cases := []struct {
		signWith string // "": unsigned
		ts       time.Time
		verified bool
		errIs    error
	}{
		{secret, now, true, nil},
		{other, now, false, standardwebhooks.ErrNoMatchingSignature},
		{"", now, false, nil},
		{secret, now.Add(-time.Hour), false, standardwebhooks.ErrMessageTooOld},
	}
	client := &http.Client{Timeout: testTimeout}
	for i, tc := range cases {
		req, err := http.NewRequest(http.MethodPost, r.URL()+"/hook", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		id := "msg_" + strconv.Itoa(i)
		req.Header.Set(standardwebhooks.HeaderWebhookID, id)
		req.Header.Set(standardwebhooks.HeaderWebhookTimestamp, strconv.FormatInt(tc.ts.Unix(), 10))
		if tc.signWith != "" {
			wh, err := standardwebhooks.NewWebhook(tc.signWith)
			if err != nil {
				t.Fatal(err)
			}
			sig, err := wh.Sign(id, tc.ts, body)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set(standardwebhooks.HeaderWebhookSignature, sig)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		answer, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(answer) != "200 OK\n" {
			t.Errorf("request %d: answered %d %q, want 200 %q", i, resp.StatusCode, answer, "200 OK\n")
		}
	}

	mu.Lock()
	defer mu.Unlock()
	if len(seen) != len(cases) {
		t.Fatalf("OnRequest saw %d requests, want %d", len(seen), len(cases))
	}
	for i, tc := range cases {
		got := seen[i]
		if got.N != i+1 || got.ID() != "msg_"+strconv.Itoa(i) || got.Method != http.MethodPost ||
			got.Path != "/hook" || !bytes.Equal(got.Body, body) || got.Status != http.StatusOK {
			t.Errorf("request %d reported as N=%d id=%s %s %s %q status %d", i, got.N, got.ID(), got.Method, got.Path, got.Body, got.Status)
		}
		if got.Verified != tc.verified || (tc.errIs != nil && !errors.Is(got.VerifyErr, tc.errIs)) {
			t.Errorf("request %d: verified=%v (%v), want %v (%v)", i, got.Verified, got.VerifyErr, tc.verified, tc.errIs)
		}
	}
	if err := seen[1].Verify(other); err != nil {
		t.Errorf("Verify with the signing secret: %v", err)
	}
	if err := seen[1].Verify("not base64"); err == nil || strings.Contains(err.Error(), "not base64") {
		t.Errorf("Verify with an invalid secret: %v, want an error that does not repeat the secret", err)
	}
}

// Close ends the connections of requests still being answered and returns once their handlers
// have: a handler that watches r.Context() cannot hold it up.
func TestReceiverCloseEndsHangingHandlers(t *testing.T) {
	started := make(chan struct{})
	r, err := NewReceiver(ReceiverOptions{Handler: func(_ int, _ http.ResponseWriter, hr *http.Request) {
		close(started)
		<-hr.Context().Done()
	}})
	if err != nil {
		t.Fatal(err)
	}
	posted := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.URL(), strings.NewReader("{}"))
		if err == nil {
			var resp *http.Response
			if resp, err = http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}
		posted <- err
	}()
	select {
	case <-started:
	case <-time.After(testTimeout):
		t.Fatal("the handler was not called")
	}

	closed := make(chan struct{})
	go func() {
		r.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(testTimeout):
		t.Fatal("Close did not return while a handler hung on its request's context")
	}
	if err := <-posted; err == nil {
		t.Error("the hanging request got an answer")
	}
	r.Close() // a second Close is harmless
}
