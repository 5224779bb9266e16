package testmail

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

const (
	testSecret  = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	otherSecret = "whsec_dGhpcyBpcyBhbm90aGVyIHNlY3JldCBrZXk="
)

// postSigned sends body to url signed with secret (empty: unsigned) and returns the status.
func postSigned(t *testing.T, url, secret, id string, ts time.Time, body []byte) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url+"/hook", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(standardwebhooks.HeaderWebhookID, id)
	req.Header.Set(standardwebhooks.HeaderWebhookTimestamp, strconv.FormatInt(ts.Unix(), 10))
	if secret != "" {
		wh, err := standardwebhooks.NewWebhook(secret)
		if err != nil {
			t.Fatal(err)
		}
		sig, err := wh.Sign(id, ts, body)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set(standardwebhooks.HeaderWebhookSignature, sig)
	}
	client := &http.Client{Timeout: testTimeout}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return resp.StatusCode
}

func TestReceiverRecordsAndVerifies(t *testing.T) {
	var seen []Request
	r := StartReceiver(t, ReceiverOptions{
		Secret:     testSecret,
		Status:     []int{503, 429},
		RetryAfter: "2",
		OnRequest:  func(req Request) { seen = append(seen, req) },
	})
	now := time.Now()
	body := []byte(`{"version":1,"id":"msg_1"}`)
	for _, tc := range []struct {
		secret, id string
		ts         time.Time
		body       []byte
		wantStatus int
		wantOK     bool
	}{
		{testSecret, "msg_1", now, body, 503, true},
		{testSecret, "msg_1", now, body, 429, true},
		{otherSecret, "msg_1", now, body, 200, false},
		{"", "msg_2", now, body, 200, false},
		{testSecret, "msg_2", now.Add(-time.Hour), body, 200, false},
	} {
		if got := postSigned(t, r.URL(), tc.secret, tc.id, tc.ts, tc.body); got != tc.wantStatus {
			t.Errorf("status %d, want %d", got, tc.wantStatus)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := r.WaitFor(ctx, 5); err != nil {
		t.Fatal(err)
	}
	reqs := r.Requests()
	wantVerified := []bool{true, true, false, false, false}
	wantStatus := []int{503, 429, 200, 200, 200}
	for i, req := range reqs {
		if req.N != i+1 || req.Verified != wantVerified[i] || req.Status != wantStatus[i] {
			t.Errorf("request %d: N=%d verified=%v (%v) status=%d; want N=%d verified=%v status=%d",
				i, req.N, req.Verified, req.VerifyErr, req.Status, i+1, wantVerified[i], wantStatus[i])
		}
		if !bytes.Equal(req.Body, body) || req.Method != http.MethodPost || req.Path != "/hook" {
			t.Errorf("request %d: %s %s %q", i, req.Method, req.Path, req.Body)
		}
	}
	if !errors.Is(reqs[4].VerifyErr, standardwebhooks.ErrMessageTooOld) {
		t.Errorf("old timestamp: VerifyErr = %v, want ErrMessageTooOld", reqs[4].VerifyErr)
	}
	if err := reqs[2].Verify(otherSecret); err != nil {
		t.Errorf("Verify with the signing secret: %v", err)
	}
	if ids := r.UniqueIDs(); len(ids) != 2 {
		t.Errorf("UniqueIDs() = %v, want msg_1 and msg_2", ids)
	}
	if len(seen) != 5 {
		t.Errorf("OnRequest saw %d requests, want 5", len(seen))
	}

	// A context that ends first makes WaitFor fail.
	short, cancelShort := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancelShort()
	if err := r.WaitFor(short, 6); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitFor(6) = %v, want deadline exceeded", err)
	}
}

func TestReceiverRetryAfterAndRespond(t *testing.T) {
	r := StartReceiver(t, ReceiverOptions{
		RetryAfter: "7",
		Respond: func(n int, req *http.Request) int {
			if strings.Contains(req.Header.Get("Content-Type"), "json") && n == 1 {
				return http.StatusServiceUnavailable
			}
			return http.StatusNoContent
		},
	})
	client := &http.Client{Timeout: testTimeout}
	for i, want := range []struct {
		status     int
		retryAfter string
	}{{503, "7"}, {204, ""}} {
		resp, err := client.Post(r.URL(), "application/json", strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want.status || resp.Header.Get("Retry-After") != want.retryAfter {
			t.Errorf("request %d: %d Retry-After %q; want %d %q", i+1, resp.StatusCode,
				resp.Header.Get("Retry-After"), want.status, want.retryAfter)
		}
	}
}

func TestReceiverHandlerCanHang(t *testing.T) {
	r, err := NewReceiver(ReceiverOptions{
		Handler: func(n int, w http.ResponseWriter, req *http.Request) {
			<-req.Context().Done() // hang until the client gives up
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	client := &http.Client{Timeout: 100 * time.Millisecond}
	if resp, err := client.Post(r.URL(), "application/json", strings.NewReader("{}")); err == nil {
		resp.Body.Close()
		t.Fatal("request to a hanging handler succeeded")
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := r.WaitFor(ctx, 1); err != nil {
		t.Fatal(err)
	}
}
