package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailhook/mailhook/dispatch"
	"github.com/mailhook/mailhook/internal/testmail"
	"github.com/mailhook/mailhook/message"
	"github.com/mailhook/mailhook/payload"
	"github.com/mailhook/mailhook/spool"
	"github.com/mailhook/mailhook/store"
	"github.com/mailhook/mailhook/store/sqlite"
)

// Known secrets of the outbox process test, distinctive so a log scan finds them.
const (
	testHeaderToken = "hdr-Tok3n-9fQ2xZ" // Authorization header, from value_file
	testAPIKey      = "api-K3y-7Wm1pR"   // X-Api-Key header, from ${TEST_API_KEY}
	testURLToken    = "url-T0ken-4Lk8sV" // in the webhook URL's query
)

// tool runs the built binary with args beside the daemon and returns its exit status and output.
func tool(t *testing.T, env []string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(binPath, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("mailhook %v: %v", args, err)
	}
	return code, string(out)
}

// mustTool is tool, requiring exit status 0.
func mustTool(t *testing.T, env []string, args ...string) string {
	t.Helper()
	code, out := tool(t, env, args...)
	if code != 0 {
		t.Fatalf("mailhook %s: exit %d\n%s", strings.Join(args, " "), code, out)
	}
	return out
}

// TestOutboxAndWebhooksBesideRun drives the operator tools against a live daemon: a 400 is
// dead-lettered and listed, shown with its payload and attempts, and requeued; a 410 dead-letters its job and disables the endpoint, later mail is
// held; `webhooks list` reports it, `webhooks enable` releases the held job and `outbox retry
// --all` the dead ones, and the running daemon delivers them all. Meanwhile nothing it logs, and
// nothing the tools print, contains a secret: the IMAP password, the webhook secret, header values
// from value_file and from ${…}, or a token in the URL.
func TestOutboxAndWebhooksBesideRun(t *testing.T) {
	mem := testmail.StartMemServer(t, testmail.MemOptions{Password: testIMAPPassword})
	var status atomic.Int64
	status.Store(http.StatusBadRequest)
	recv := testmail.StartReceiver(t, testmail.ReceiverOptions{Secret: testSecret,
		Respond: func(int, *http.Request) int { return int(status.Load()) }})
	dir := t.TempDir()
	cfg, env := writeConfig(t, dir, mem.Addr(), mem.User(), testIMAPPassword, recv.URL()+"/hook?token="+testURLToken, nil)
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("Bearer "+testHeaderToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	withHeaders := strings.Replace(string(raw), "    body: text\n", "    body: text\n"+
		"    headers: [{name: Authorization, value_file: "+tokenFile+"}, {name: X-Api-Key, value: \"${TEST_API_KEY}\"}]\n", 1)
	if withHeaders == string(raw) {
		t.Fatal("config template changed: no body line to add headers after")
	}
	if err := os.WriteFile(cfg, []byte(withHeaders), 0o600); err != nil {
		t.Fatal(err)
	}
	env = append(env, "TEST_API_KEY="+testAPIKey)

	d := startDaemon(t, cfg, env...)
	waitReady(t, d)
	var tools strings.Builder // everything the tools printed, for the secret scan
	run := func(args ...string) string {
		t.Helper()
		out := mustTool(t, env, append([]string{args[0], args[1], "-c", cfg}, args[2:]...)...)
		tools.WriteString(out)
		return out
	}
	listJSON := func(args ...string) []jobJSON {
		t.Helper()
		var jobs []jobJSON
		out := run(append([]string{"outbox", "list", "--json"}, args...)...)
		if err := json.Unmarshal([]byte(out), &jobs); err != nil {
			t.Fatalf("outbox list --json: %v\n%s", err, out)
		}
		return jobs
	}
	waitJobs := func(what string, n int, args ...string) []jobJSON {
		t.Helper()
		var jobs []jobJSON
		eventually(t, 45*time.Second, what, func() bool {
			jobs = listJSON(args...)
			return len(jobs) == n
		})
		return jobs
	}

	// 1. A 400: dead-lettered, listed, shown with payload and attempts.
	if _, err := mem.Append("INBOX", testmail.SampleCIFailure(1)); err != nil {
		t.Fatal(err)
	}
	dead := waitJobs("the 400 to be dead-lettered", 1, "--dead")
	first := dead[0].ID
	if out := run("outbox", "list", "--dead"); !strings.Contains(out, first) || !strings.Contains(out, "http 400 Bad Request") {
		t.Errorf("outbox list --dead:\n%s", out)
	}
	show := run("outbox", "show", first)
	for _, want := range []string{"job " + first, "state dead", "attempts (1):", "http 400", `"subject":`, `"id": "` + first + `"`} {
		if !strings.Contains(show, want) {
			t.Errorf("outbox show lacks %q:\n%s", want, show)
		}
	}

	// 2. A 410: dead, the endpoint disabled; the next mail is committed held.
	status.Store(http.StatusGone)
	if _, err := mem.Append("INBOX", testmail.SampleCIFailure(2)); err != nil {
		t.Fatal(err)
	}
	waitJobs("the 410 to be dead-lettered", 2, "--dead")
	if _, err := mem.Append("INBOX", testmail.SampleCIFailure(3)); err != nil {
		t.Fatal(err)
	}
	held := waitJobs("the next job to be held", 1, "--state", "held")
	var reports []dispatch.Report
	out := run("webhooks", "list", "--json")
	if err := json.Unmarshal([]byte(out), &reports); err != nil || len(reports) != 1 {
		t.Fatalf("webhooks list --json: %v\n%s", err, out)
	}
	if r := reports[0]; r.Name != "receiver" || r.Enabled || r.Reason != "http 410 Gone" || r.Held != 1 || r.Dead != 2 {
		t.Errorf("webhooks list: %+v", r)
	}
	if out := run("webhooks", "list"); !strings.Contains(out, "disabled") || !strings.Contains(out, "http 410 Gone") {
		t.Errorf("webhooks list:\n%s", out)
	}
	if !strings.Contains(d.out.String(), "webhook endpoint disabled") {
		t.Errorf("the daemon did not log the disabling")
	}

	// 3. The receiver is fixed: requeue one dead job by id, enable the endpoint, requeue the rest.
	status.Store(http.StatusOK)
	before := recv.Len()
	if out := run("outbox", "retry", first); !strings.Contains(out, "requeued 1 jobs") {
		t.Errorf("outbox retry:\n%s", out)
	}
	if out := run("webhooks", "enable", "receiver"); !strings.Contains(out, "1 held jobs released") {
		t.Errorf("webhooks enable:\n%s", out)
	}
	if out := run("outbox", "retry", "--all"); !strings.Contains(out, "requeued 1 jobs") {
		t.Errorf("outbox retry --all:\n%s", out)
	}
	done := waitJobs("the daemon to deliver the three requeued jobs", 3, "--state", "done")
	if len(listJSON()) != 0 {
		t.Errorf("jobs left: %+v", listJSON())
	}
	ids := map[string]bool{}
	for _, j := range done {
		ids[j.ID] = true
	}
	if !ids[first] || !ids[held[0].ID] {
		t.Errorf("done jobs %v lack %s or %s", ids, first, held[0].ID)
	}
	for _, r := range recv.Requests()[before:] {
		if !r.Verified {
			t.Errorf("request %s: signature does not verify: %v", r.ID(), r.VerifyErr)
		}
		if r.Header.Get("Authorization") != "Bearer "+testHeaderToken || r.Header.Get("X-Api-Key") != testAPIKey {
			t.Errorf("request %s: configured headers not sent", r.ID())
		}
	}

	// A done job is not retried: one line says so and names the replay that would send it again.
	if code, out := tool(t, env, "outbox", "retry", "-c", cfg, first); code != exitFail ||
		strings.Count(out, "\n") != 1 || !strings.Contains(out, "job "+first+" was delivered") ||
		!strings.Contains(out, "mailhook replay --config "+cfg+" --account test --mailbox INBOX --uid ") {
		t.Errorf("outbox retry of a done job: exit %d\n%s", code, out)
	}

	// 4. Drop a done job; it is gone.
	if out := run("outbox", "drop", first); !strings.Contains(out, "dropped 1 jobs") {
		t.Errorf("outbox drop:\n%s", out)
	}
	if code, out := tool(t, env, "outbox", "show", "-c", cfg, first); code != exitFail || !strings.Contains(out, "not found") {
		t.Errorf("outbox show of a dropped job: exit %d\n%s", code, out)
	}
	d.terminate()

	// The log and the tools' output hold no secret (the log scan sees delivery lines too).
	logs := d.out.String()
	assertNoSecrets(t, logs)
	for where, text := range map[string]string{"log": logs, "tool output": tools.String()} {
		for _, s := range []string{testHeaderToken, testAPIKey, testURLToken, testIMAPPassword, testSecret,
			strings.TrimPrefix(testSecret, "whsec_")} {
			if strings.Contains(text, s) {
				t.Errorf("the %s contains a secret (%.6s…)", where, s)
			}
		}
	}
	for _, want := range []string{"webhook delivery failed", "webhook delivered", "http 410"} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log lacks %q: the scan did not cover a full cycle", want)
		}
	}
}

// The tools refuse bad usage with status 2 and a missing job with status 1, without a daemon.
func TestOutboxUsage(t *testing.T) {
	mem := testmail.StartMemServer(t, testmail.MemOptions{})
	dir := t.TempDir()
	cfg, env := writeConfig(t, dir, mem.Addr(), mem.User(), mem.Password(), "http://127.0.0.1:1/hook", nil)
	// The tools create no state: the daemon does.
	if code, out := tool(t, env, "outbox", "list", "-c", cfg); code != exitFail || !strings.Contains(out, "no state at "+filepath.Join(dir, "state")) {
		t.Errorf("outbox list without state: exit %d\n%s", code, out)
	}
	st, err := sqlite.Open(filepath.Join(dir, "state"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"outbox"}, exitConfig, "Usage:"},
		{[]string{"outbox", "frobnicate", "-c", cfg}, exitConfig, "unknown subcommand"},
		{[]string{"outbox", "retry", "-c", cfg}, exitConfig, "give job IDs, or --all"},
		{[]string{"outbox", "retry", "-c", cfg, "--all", "msg_X"}, exitConfig, "give job IDs, or --all"},
		{[]string{"outbox", "list", "-c", cfg, "--state", "lost"}, exitConfig, "not one of"},
		{[]string{"outbox", "show", "-c", cfg, "msg_NOPE"}, exitFail, "not found"},
		{[]string{"outbox", "drop", "-c", cfg, "msg_NOPE"}, exitFail, "not found"},
		{[]string{"outbox", "list", "-c", cfg}, exitOK, "no jobs"},
		{[]string{"webhooks", "enable", "-c", cfg, "nope"}, exitFail, `no webhook "nope"`},
		{[]string{"webhooks", "enable", "-c", cfg, "receiver"}, exitOK, "was not disabled; 0 held jobs released"},
		{[]string{"webhooks", "list", "-c", cfg}, exitOK, "receiver  enabled"},
		{[]string{"webhooks"}, exitConfig, "Usage:"},
	} {
		code, out := tool(t, env, tc.args...)
		if code != tc.code || !strings.Contains(out, tc.want) {
			t.Errorf("mailhook %s: exit %d, want %d with %q\n%s", strings.Join(tc.args, " "), code, tc.code, tc.want, out)
		}
	}
}

// toolConfig writes the configuration of the tool tests (an IMAP server, the webhook "receiver")
// in a new directory, which it returns with the config path and environment.
func toolConfig(t *testing.T) (dir, cfg string, env []string) {
	mem := testmail.StartMemServer(t, testmail.MemOptions{})
	dir = t.TempDir()
	cfg, env = writeConfig(t, dir, mem.Addr(), mem.User(), mem.Password(), "http://127.0.0.1:1/hook", nil)
	return dir, cfg, env
}

// `outbox show` of a job shipping an attachment inline shows what is delivered in its place, not
// the spool's internal reference: "<attachment 2: 3,412 bytes, spooled>" (or that the file is
// missing), in the text and the JSON output alike.
func TestOutboxShowInlineAttachment(t *testing.T) {
	dir, cfg, env := toolConfig(t)
	state := filepath.Join(dir, "state")
	st, err := sqlite.Open(state, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sp, err := spool.Open(state, spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	pdf := filepath.Join(dir, "a.pdf")
	if err := os.WriteFile(pdf, bytes.Repeat([]byte("%PDF"), 853), 0o600); err != nil { // 3,412 bytes
		t.Fatal(err)
	}
	p := payload.New("msg_INLINE", "r", "acct", "INBOX", 7, 1, &message.Message{
		Attachments: []message.Attachment{{Filename: "a.pdf", ContentType: "application/pdf", Size: 4620, Section: "2"},
			{Filename: "b.pdf", ContentType: "application/pdf", Size: 10, Section: "3"}},
	}, message.Auth{}, payload.BodyNone, 0)
	p.InlineFromSpool(0, "2")
	p.InlineFromSpool(1, "3") // its file never made it to the spool
	body, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := sp.Attach(context.Background(), "msg_INLINE", map[string]string{"2": pdf}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Enqueue(context.Background(), []store.Job{{ID: "msg_INLINE", Kind: store.KindWebhook,
		Target: "receiver", Account: "acct", Mailbox: "INBOX", UIDValidity: 7, UID: 1, Rule: "r", Body: body}}); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"outbox", "show", "-c", cfg, "msg_INLINE"}, {"outbox", "show", "-c", cfg, "--json", "msg_INLINE"}} {
		out := mustTool(t, env, args...)
		if strings.Contains(out, `\u0000`) || strings.Contains(out, "spool:") ||
			!strings.Contains(out, `"content_base64": "<attachment 2: 3,412 bytes, spooled>"`) ||
			!strings.Contains(out, `"content_base64": "<attachment 3: spooled file missing>"`) {
			t.Errorf("mailhook %s:\n%s", strings.Join(args, " "), out)
		}
	}
}
