package pipeline_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/mailhook/mailhook/payload"
	"github.com/mailhook/mailhook/pipeline"
	"github.com/mailhook/mailhook/rules"
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
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || back.File != "sample.eml" || !bytes.Contains(js.Bytes(), want[0].Body) {
		t.Fatalf("JSON line %s (err %v) does not carry the exact body %s", js.Bytes(), err, want[0].Body)
	}
	var txt bytes.Buffer
	if err := e.WriteText(&txt); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{`rule "never": no match: false: `, `rule "hook": MATCH → webhook: ci, flag: [\Flagged]`,
		`has no trusted_authserv_id`, "webhook \"ci\" (rule \"hook\")"} {
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
