package pipeline_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/mailhook/mailhook/internal/fixture"
	"github.com/mailhook/mailhook/payload"
	"github.com/mailhook/mailhook/pipeline"
	"github.com/mailhook/mailhook/rules"
	"github.com/mailhook/mailhook/watcher"
)

// Explain reports every rule's verdict and the jobs with the very bodies Handle makes, and the
// text form says why auth.* is empty on an account that believes no Authentication-Results.
func TestExplain(t *testing.T) {
	p := newPipeline(t, pipeline.Config{
		Rules: compile(t,
			rules.Spec{Name: "never", When: `subject == "nothing like this" && true`},
			rules.Spec{Name: "hook", Actions: []rules.Action{{Webhook: "ci"}, {Flag: []string{`\Flagged`}}}}),
		Webhooks: []pipeline.Webhook{{Name: "ci", Body: payload.BodyText, Attachments: pipeline.AttachmentsMetadata}},
		Accounts: []pipeline.Account{{Name: "a"}},
	})
	ctx := context.Background()
	ev := sampleEvent(t, "a")
	want, err := p.Handle(ctx, sampleEvent(t, "a"))
	if err != nil {
		t.Fatal(err)
	}
	e, err := p.Explain(ctx, "sample.eml", ev, p.Match(ev))
	if err != nil {
		t.Fatal(err)
	}
	if len(e.Rules) != 2 || e.Rules[0].Matched || e.Rules[0].FalseClause == "" || !e.Rules[1].Fires ||
		strings.Join(e.Rules[1].Actions, "; ") != `webhook: ci; flag: [\Flagged]` {
		t.Fatalf("rules = %+v", e.Rules)
	}
	if len(e.Deliveries) != len(want) {
		t.Fatalf("%d deliveries, Handle made %d jobs", len(e.Deliveries), len(want))
	}
	for i, d := range e.Deliveries {
		if d.ID != want[i].ID || (d.Body != nil && !bytes.Equal(d.Body, want[i].Body)) {
			t.Errorf("delivery %d = %s %q, want %s %q", i, d.ID, d.Body, want[i].ID, want[i].Body)
		}
	}

	var js bytes.Buffer
	if err := e.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back pipeline.Explanation
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || back.File != "sample.eml" || !bytes.Contains(js.Bytes(), want[0].Body) ||
		back.Message.ReplyText == "" || len(back.Message.URLs) == 0 {
		t.Fatalf("JSON line %s (err %v) does not carry the exact body %s", js.Bytes(), err, want[0].Body)
	}
	var txt bytes.Buffer
	if err := e.WriteText(&txt); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{`rule "never": no match: false: `, `rule "hook": MATCH → webhook: ci, flag: [\Flagged]`,
		`has no trusted_authserv_id`, "webhook \"ci\" (rule \"hook\")", "urls https://"} {
		if !strings.Contains(txt.String(), s) {
			t.Errorf("text report lacks %q:\n%s", s, txt.String())
		}
	}

	var bad bytes.Buffer
	if err := pipeline.Unreadable("gone.eml", context.Canceled).WriteJSON(&bad); err != nil ||
		!strings.Contains(bad.String(), `"rules":[],"deliveries":[],"error":"context canceled"`) {
		t.Fatalf("unreadable = %s (%v)", bad.String(), err)
	}
}

// `mailhook test` shows bounce, complaint and calendar in its text and --json.
func TestExplainReports(t *testing.T) {
	p := newPipeline(t, pipeline.Config{
		Rules:    compile(t, rules.Spec{Name: "hard", When: `bounce.kind == "hard"`, Actions: []rules.Action{{Webhook: "ci"}}}),
		Webhooks: []pipeline.Webhook{{Name: "ci", Body: payload.BodyText, Attachments: pipeline.AttachmentsMetadata}},
		Accounts: []pipeline.Account{{Name: "a"}},
	})
	for file, want := range map[string][]string{
		"bounce-postfix.eml": {"bounce hard, reporting_mta mx1.example.net, original_message_id <inv-2026-0042.1764663245@shop.example.com>",
			`jane.doe@example.org failed 5.1.1 "550 5.1.1`, `rule "hard": MATCH`, `"bounce":{"kind":"hard"`},
		"arf-complaint.eml": {"complaint abuse about shop.example.com, original_rcpt_to reader@example-isp.com", `"complaint":{"feedback_type":"abuse"`},
		"invite-google.eml": {`calendar REQUEST "Release review", start 2026-12-10T09:00:00Z, end 2026-12-10T10:00:00Z`,
			`"calendar":{"method":"REQUEST"`},
	} {
		ev := &watcher.Event{Account: "a", Mailbox: "INBOX", UIDValidity: 1, UID: 1, Message: fixture.Message(t, file)}
		e, err := p.Explain(context.Background(), file, ev, p.Match(ev))
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if err := e.WriteText(&out); err != nil {
			t.Fatal(err)
		}
		if err := e.WriteJSON(&out); err != nil {
			t.Fatal(err)
		}
		for _, w := range want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("%s: report lacks %q:\n%s", file, w, out.String())
			}
		}
	}
}
