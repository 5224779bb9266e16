package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/mailhook/mailhook/dispatch"
	"github.com/mailhook/mailhook/internal/testmail"
	"github.com/mailhook/mailhook/message"
	"github.com/mailhook/mailhook/store"
	"github.com/mailhook/mailhook/watcher"
)

// The GitHub format brings its Accept header unless the webhook sets one, and a template's
// content_type becomes the endpoint's Content-Type.
func TestEndpointsFromFormats(t *testing.T) {
	yaml := strings.Replace(cfgMinimalYAML, "    secret: "+cfgSecret, "    secret: "+cfgSecret+`
    format: github
    headers: [{name: Authorization, value: "Bearer x"}]
  - name: gh2
    url: https://api.github.com/repos/o/r/dispatches
    secret: `+cfgSecret+`
    format: github
    headers: [{name: accept, value: application/json}]
  - name: text
    url: https://hooks.example.com/text
    secret: `+cfgSecret+`
    format: template
    content_type: text/plain
    template: "{{ .Subject }}"`, 1)
	cfg, _, err := cfgLoad(t, yaml, nil)
	if err != nil {
		t.Fatal(err)
	}
	eps, err := endpoints(cfg)
	if err != nil {
		t.Fatal(err)
	}
	headers := func(ep dispatch.Endpoint) string {
		var b strings.Builder
		for _, h := range ep.Headers {
			b.WriteString(h.Name + "=" + h.Value + ";")
		}
		return b.String()
	}
	if got := headers(eps[0]); got != "Authorization=Bearer x;Accept=application/vnd.github+json;" {
		t.Errorf("github headers %q", got)
	}
	if got := headers(eps[1]); got != "accept=application/json;" {
		t.Errorf("github with its own Accept: headers %q", got)
	}
	if eps[0].ContentType != "application/json" || eps[2].ContentType != "text/plain" {
		t.Errorf("content types %q, %q", eps[0].ContentType, eps[2].ContentType)
	}
}

// The pipeline renders each webhook's body in its format once, commits the job of a disabled
// endpoint held, and commits a job whose template fails on this message dead with the reason,
// rather than failing the commit (which would stall the mailbox).
func TestPipelineRendersFormats(t *testing.T) {
	yaml := strings.Replace(cfgMinimalYAML, "    secret: "+cfgSecret, "    secret: "+cfgSecret+`
    format: slack
  - name: picky
    url: https://hooks.example.com/picky
    secret: `+cfgSecret+`
    format: template
    template: '{"n": {{ if eq .Rule "sample-rule" }}1{{ else }}{{ .Subject }}{{ end }}}'
  - name: off
    url: https://hooks.example.com/off
    secret: `+cfgSecret, 1)
	yaml = strings.Replace(yaml, "      - webhook: hook", "      - webhook: hook\n      - webhook: picky\n      - webhook: off", 1)
	var stderr bytes.Buffer
	l, code := load(cfgWrite(t, yaml), cfgEnv(nil), &stderr)
	if code != exitOK {
		t.Fatalf("load: %s", stderr.String())
	}
	st, err := openStore(context.Background(), t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	if _, err := st.DisableEndpoint(ctx, "off", "http 410 Gone", time.Now()); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	p := newPipeline(l, slog.New(slog.NewTextHandler(&logs, nil)))
	p.states = st
	jobs, err := p.Handle(ctx, sampleEvent(t, "work"))
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 3 {
		t.Fatalf("%d jobs, want 3", len(jobs))
	}
	var slack map[string]any
	if err := json.Unmarshal(jobs[0].Body, &slack); err != nil || slack["blocks"] == nil || jobs[0].State != "" {
		t.Errorf("slack job: state %q, body %s (%v)", jobs[0].State, jobs[0].Body, err)
	}
	if jobs[1].State != store.StateDead || !strings.Contains(jobs[1].LastError, "render: ") || jobs[1].Body != nil {
		t.Errorf("picky job: state %q, last error %q", jobs[1].State, jobs[1].LastError)
	}
	if !strings.Contains(logs.String(), "webhook body cannot be rendered") {
		t.Errorf("render failure not logged:\n%s", logs.String())
	}
	if jobs[2].State != store.StateHeld || jobs[2].LastError != "endpoint disabled: http 410 Gone" || len(jobs[2].Body) == 0 {
		t.Errorf("off job: state %q, last error %q", jobs[2].State, jobs[2].LastError)
	}
}

// sampleEvent is a CI-failure mail of account, as the watcher hands it to the pipeline.
func sampleEvent(t *testing.T, account string) *watcher.Event {
	t.Helper()
	m, err := message.Parse(bytes.NewReader(testmail.SampleCIFailure(1)), message.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	return &watcher.Event{Account: account, Mailbox: "INBOX", UIDValidity: 9, UID: 5, Message: m}
}
