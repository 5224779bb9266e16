package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailhook/mailhook/internal/testmail"
	"github.com/mailhook/mailhook/message"
	"github.com/mailhook/mailhook/payload"
	"github.com/mailhook/mailhook/pipeline"
	"github.com/mailhook/mailhook/store"
)

// setEnv applies writeConfig's environment for in-process verbs.
func setEnv(t *testing.T, env []string) {
	t.Helper()
	for _, e := range env {
		k, v, _ := strings.Cut(e, "=")
		t.Setenv(k, v)
	}
}

// runTest runs `mailhook test` in process.
func runTest(t *testing.T, stdin io.Reader, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	code = testVerb(ctx, args, stdin, &out, &errb)
	return code, out.String(), errb.String()
}

// decodeReports reads the JSON lines of `mailhook test --json`.
func decodeReports(t *testing.T, out string) []pipeline.Explanation {
	t.Helper()
	var reps []pipeline.Explanation
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var r pipeline.Explanation
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("line is not a JSON object: %v\n%s", err, sc.Text())
		}
		reps = append(reps, r)
	}
	return reps
}

func TestTestVerbFiles(t *testing.T) {
	dir := t.TempDir()
	path, env := writeConfig(t, dir, "127.0.0.1:1", "u", "p", "http://127.0.0.1:1/hook", nil)
	setEnv(t, env)
	files := map[string][]byte{
		"ci.eml":       testmail.Sample(1, testmail.SampleOptions{Kind: testmail.CIFailure}),
		"invoice.eml":  testmail.Sample(2, testmail.SampleOptions{Kind: testmail.Invoice}),
		"personal.eml": testmail.Sample(3, testmail.SampleOptions{Kind: testmail.Personal}),
	}
	for name, raw := range files {
		if err := os.WriteFile(filepath.Join(dir, name), raw, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ci, pers := filepath.Join(dir, "ci.eml"), filepath.Join(dir, "personal.eml")

	code, out, errs := runTest(t, nil, "-c", path, ci, pers)
	if code != exitOK {
		t.Fatalf("exit %d; stderr:\n%s", code, errs)
	}
	for _, want := range []string{
		`rule "ci-failures": MATCH → webhook: receiver`,
		`rule "invoices": no match: false: subject matches "(?i)invoice"`,
		`rule "ci-failures": no match: false: from.address endsWith "@github.com"`,
		`webhook "receiver" (rule "ci-failures"), id msg_`,
		"nothing would be sent",
		", body:\n     {\n       \"version\": 1,\n", // indented like the demo's
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	// --json after the files; "-" reads standard input.
	code, out, errs = runTest(t, bytes.NewReader(files["invoice.eml"]), "-c", path, ci, "-", pers, "--json")
	if code != exitOK {
		t.Fatalf("exit %d; stderr:\n%s", code, errs)
	}
	reps := decodeReports(t, out)
	if len(reps) != 3 || reps[0].File != ci || reps[1].File != "-" || reps[2].File != pers {
		t.Fatalf("reports %+v", reps)
	}
	r := reps[0]
	if r.Message == nil || r.Message.Subject == "" || r.Message.Auth.DMARC != "pass" || r.Account != "test" || r.Mailbox != "INBOX" {
		t.Errorf("message %+v", r.Message)
	}
	if len(r.Rules) != 3 || !r.Rules[0].Matched || !r.Rules[0].Fires || r.Rules[1].Matched ||
		r.Rules[1].FalseClause != `subject matches "(?i)invoice"` || len(r.Rules[1].Clauses) != 1 {
		t.Errorf("rules %+v", r.Rules)
	}
	if len(reps[1].Deliveries) != 1 || reps[1].Deliveries[0].Rule != "invoices" || len(reps[2].Deliveries) != 0 {
		t.Errorf("deliveries: invoice %+v, personal %+v", reps[1].Deliveries, reps[2].Deliveries)
	}

	// The body is the one the daemon would send for this message: same id derivation, same
	// payload function, byte for byte.
	l, code := load(path, os.LookupEnv, io.Discard)
	if code != exitOK {
		t.Fatal("config does not load")
	}
	m, err := message.Parse(bytes.NewReader(files["ci.eml"]), message.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	wh := l.cfg.Webhooks[0]
	id := store.JobID("test", "INBOX", 0, 0, "ci-failures", 0)
	want, err := payload.New(id, "ci-failures", "test", "INBOX", 0, 0, m, m.Auth("mx.google.com"),
		payload.BodyMode(wh.Body), int(wh.MaxBodyBytes)).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Deliveries) != 1 || r.Deliveries[0].ID != id || !bytes.Equal(r.Deliveries[0].Body, want) {
		t.Errorf("delivery %+v\nwant body %s", r.Deliveries, want)
	}

	// The account and mailbox filters of rules see --account/--mailbox.
	if code, _, errs := runTest(t, nil, "-c", path, "--account", "nope", ci); code != exitConfig || !strings.Contains(errs, `"nope"`) {
		t.Errorf("unknown account: exit %d, %s", code, errs)
	}
	if code, _, errs := runTest(t, nil, "-c", path, "--mailbox", "Archive", ci); code != exitConfig || !strings.Contains(errs, "Archive") {
		t.Errorf("unwatched mailbox: exit %d, %s", code, errs)
	}
}

func TestTestVerbExitCodes(t *testing.T) {
	dir := t.TempDir()
	path, env := writeConfig(t, dir, "127.0.0.1:1", "u", "p", "http://127.0.0.1:1/hook", nil)
	setEnv(t, env)
	good := filepath.Join(dir, "good.eml")
	// Broken but readable: defects, not failure.
	if err := os.WriteFile(good, []byte("Subject: =?bogus?q?x?=\nFrom: =?utf-8?q?=40evil.com?=@x.com\nContent-Type: multipart/mixed\n\nno boundary"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("accounts: [{name: a, nonsense: 1}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		code int
	}{
		{"defects are fine", []string{"-c", path, good}, exitOK},
		{"unreadable file", []string{"-c", path, good, filepath.Join(dir, "missing.eml")}, exitFail},
		{"bad config", []string{"-c", bad, good}, exitConfig},
		{"no config", []string{good}, exitConfig},
		{"no message", []string{"-c", path}, exitConfig},
		{"files and --last", []string{"-c", path, "--account", "test", "--last", "2", good}, exitConfig},
		{"--uid without --account", []string{"-c", path, "--uid", "3"}, exitConfig},
		{"--last and --uid", []string{"-c", path, "--account", "test", "--last", "1", "--uid", "3"}, exitConfig},
		{"unknown flag", []string{"-c", path, "--nope", good}, exitConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errs := runTest(t, strings.NewReader(""), append(tt.args, "--json")...)
			if code != tt.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tt.code, errs)
			}
			if tt.code == exitFail {
				// Every input still gets its line; the unreadable one says why.
				reps := decodeReports(t, out)
				if len(reps) != 2 || reps[0].Error != "" || reps[1].Error == "" || !slices.Contains(reps[0].Message.Defects, "missing_boundary") {
					t.Errorf("reports %+v", reps)
				}
			}
		})
	}
}

// TestTestVerbLive fetches from a loopback server: --last and --uid pick the messages, nothing
// changes on the server, and the bytes are charged to the account's budget in the state store.
func TestTestVerbLive(t *testing.T) {
	srv := testmail.StartMemServer(t, testmail.MemOptions{})
	var uids []uint32
	for i, kind := range []testmail.SampleKind{testmail.CIFailure, testmail.Invoice, testmail.Personal} {
		uid, err := srv.Append("INBOX", testmail.Sample(i, testmail.SampleOptions{Kind: kind}))
		if err != nil {
			t.Fatal(err)
		}
		uids = append(uids, uid)
	}
	flagsBefore, err := srv.Flags("INBOX", uids[0])
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path, env := writeConfig(t, dir, srv.Addr(), srv.User(), srv.Password(), "http://127.0.0.1:1/hook", nil)
	setEnv(t, env)

	code, out, errs := runTest(t, nil, "-c", path, "--account", "test", "--last", "2", "--json")
	if code != exitOK {
		t.Fatalf("exit %d; stderr:\n%s", code, errs)
	}
	reps := decodeReports(t, out)
	if len(reps) != 2 || reps[0].UID != uids[1] || reps[1].UID != uids[2] || reps[0].UIDValid == 0 {
		t.Fatalf("reports for uids %v: %+v", uids, reps)
	}
	if len(reps[0].Deliveries) != 1 || reps[0].Deliveries[0].Rule != "invoices" || len(reps[1].Deliveries) != 0 {
		t.Errorf("deliveries %+v / %+v", reps[0].Deliveries, reps[1].Deliveries)
	}

	code, out, errs = runTest(t, nil, "-c", path, "--account", "test", "--uid", "1")
	if code != exitOK || !strings.Contains(out, `rule "ci-failures": MATCH`) || !strings.Contains(out, "uid 1") {
		t.Fatalf("exit %d\n%s\nstderr:\n%s", code, out, errs)
	}
	if after, err := srv.Flags("INBOX", uids[0]); err != nil || !slices.Equal(after, flagsBefore) {
		t.Errorf("flags %v → %v (%v)", flagsBefore, after, err)
	}
	if code, _, errs := runTest(t, nil, "-c", path, "--account", "test", "--uid", "99"); code != exitFail {
		t.Errorf("missing uid: exit %d; %s", code, errs)
	}

	st, err := openStore(context.Background(), filepath.Join(dir, "state"), false)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	buckets, err := st.BudgetBuckets(context.Background(), "test", time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var charged int64
	for _, b := range buckets {
		charged += b.Bytes
	}
	if charged < 1000 {
		t.Errorf("%d bytes charged to the budget for three fetches", charged)
	}
}

// check says per rule what it reads and costs: headers only, text/html parts, and the attachment
// list, which is free (BODYSTRUCTURE).
func TestCheckReportsAttachmentList(t *testing.T) {
	dir := t.TempDir()
	path, env := writeConfig(t, dir, "127.0.0.1:1", "u", "p", "http://127.0.0.1:1/hook", nil)
	setEnv(t, env)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	raw = append(raw, []byte("  - name: body-rule\n    when: 'text contains \"x\" && len(attachments) > 0'\n    actions: [{webhook: receiver}]\n")...)
	raw = append(raw, []byte("  - name: approvals\n    when: 'reply_text startsWith \"Approved\"'\n    actions: [{webhook: receiver}]\n")...)
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := cli(context.Background(), []string{"check", "-c", path}, &out, &errb); code != exitOK {
		t.Fatalf("exit %d; stderr:\n%s", code, errb.String())
	}
	for _, want := range []string{
		"config " + path + ": ok (1 account, 1 webhook, 5 rules)\n",
		`rule "hard-bounces" reads report parts (bounce, complaint)` + "\n",
		`rule "ci-failures" reads headers and structure only (no body bytes)` + "\n",
		`rule "invoices" reads headers and structure only (no body bytes) + the attachment list (no attachment bytes)` + "\n",
		`rule "body-rule" reads the text part + the attachment list (no attachment bytes)` + "\n",
		`rule "approvals" reads the text part (the html part of a message without one)` + "\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("check output lacks %q:\n%s", want, out.String())
		}
	}
}
