package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// `webhooks test NAME` sends one signed test event in the webhook's format to a real receiver,
// which verifies it with the Standard Webhooks library; it prints the status and latency and exits
// 0 on 2xx, 1 on any other status or no answer. A chat format says in its text that it is a test.
func TestWebhooksTestSendsASignedTestEvent(t *testing.T) {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	type got struct {
		path, id string
		body     []byte
		verified error
	}
	requests := make(chan got, 10)
	var status atomic.Int32
	status.Store(http.StatusNoContent)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		requests <- got{r.URL.Path, r.Header.Get("webhook-id"), body, wh.Verify(body, r.Header)}
		w.WriteHeader(int(status.Load()))
	}))
	defer srv.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String() + "/"
	ln.Close()

	cfg := filepath.Join(t.TempDir(), "mailhook.yaml")
	if err := os.WriteFile(cfg, []byte(`state_dir: ./state
accounts:
  - name: personal
    imap: {host: imap.example.com, username: me@example.com, password: "${IMAP_PASSWORD}"}
webhooks:
  - {name: ci, url: "`+srv.URL+`/ci", secrets: ["${CI_SECRET}"]}
  - {name: chat, url: "`+srv.URL+`/chat", format: slack}
  - {name: gone, url: "`+closed+`", secrets: ["${CI_SECRET}"]}
  - {name: other, url: "${OTHER_URL}", secrets: ["${OTHER_SECRET}"]}
rules:
  - {name: all, when: 'true', actions: [{webhook: ci}, {webhook: chat}, {webhook: gone}, {webhook: other}]}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("IMAP_PASSWORD", "")
	os.Unsetenv("IMAP_PASSWORD") // it uses no account's secret, nor another webhook's
	t.Setenv("CI_SECRET", secret)
	run := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := cli(context.Background(), append([]string{"webhooks", "test", "-c", cfg}, args...), &out, &errb)
		return code, out.String(), errb.String()
	}

	code, out, errs := run("ci")
	if code != exitOK || !strings.Contains(out, "HTTP 204 in ") || !strings.Contains(out, "mailhook.test event test_") {
		t.Fatalf("webhooks test ci: exit %d\nstdout: %s\nstderr: %s", code, out, errs)
	}
	r := <-requests
	if r.verified != nil || r.path != "/ci" {
		t.Fatalf("the receiver's Standard Webhooks library refused the test event at %s: %v", r.path, r.verified)
	}
	var p map[string]any
	if err := json.Unmarshal(r.body, &p); err != nil || p["type"] != "mailhook.test" || p["id"] != r.id ||
		!strings.Contains(out, r.id) {
		t.Errorf("json test event: %v; type %v id %v (webhook-id %s); stdout %q", err, p["type"], p["id"], r.id, out)
	}

	code, out, errs = run("chat")
	r = <-requests
	if code != exitOK || r.path != "/chat" || !strings.Contains(string(r.body), "mailhook test event for webhook chat") {
		t.Errorf("webhooks test chat: exit %d, %s %s\nstdout: %s\nstderr: %s", code, r.path, r.body, out, errs)
	}

	status.Store(http.StatusInternalServerError)
	code, out, _ = run("ci")
	<-requests
	if code != exitFail || !strings.Contains(out, "http 500 Internal Server Error") {
		t.Errorf("a 500: exit %d, stdout %q; want 1 and the status", code, out)
	}
	code, out, _ = run("gone")
	if code != exitFail || !strings.Contains(out, "failed after") || strings.Contains(out, closed) {
		t.Errorf("no receiver: exit %d, stdout %q; want 1, the error without the URL", code, out)
	}
	code, _, errs = run("other")
	if code != exitConfig || !strings.Contains(errs, `${OTHER_SECRET} is not set`) || strings.Contains(errs, "IMAP_PASSWORD") {
		t.Errorf("the tested webhook's own secret unset: exit %d, %q; want 2 naming it alone", code, errs)
	}
	code, _, errs = run("cj")
	if code != exitConfig || !strings.Contains(errs, `no webhook "cj"`) || !strings.Contains(errs, "ci") {
		t.Errorf("an unknown webhook: exit %d, %q", code, errs)
	}
}
