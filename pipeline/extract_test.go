package pipeline_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/mailhook/mailhook/internal/demo"
	"github.com/mailhook/mailhook/payload"
	"github.com/mailhook/mailhook/pipeline"
	"github.com/mailhook/mailhook/rules"
	"github.com/mailhook/mailhook/watcher"
)

// TestExtractFields: a matched rule's extract fields go into its webhook payloads as `fields`
// (reply templates read them as .Fields: reply.TestReplyTemplateFields); a field that fails is null with the defect
// extract_failed:NAME on that rule's payloads only, and the delivery still goes out; a rule
// without extract has no `fields`; `mailhook test`'s explanation shows them.
func TestExtractFields(t *testing.T) {
	p := newPipeline(t, pipeline.Config{
		Rules: compile(t,
			rules.Spec{Name: "invoices", When: `subject startsWith "Invoice"`, Extract: map[string]string{
				"number": `find("[0-9]{4}-[0-9]+", subject)`,
				"amount": `groups("Amount due: (?P<amount>[0-9.,]+)", text).amount`,
				"broken": `attachments[5].filename`,
			}, Actions: []rules.Action{{Webhook: "accounting"}}},
			rules.Spec{Name: "all", Actions: []rules.Action{{Webhook: "accounting"}}}),
		Webhooks: []pipeline.Webhook{{Name: "accounting", Body: payload.BodyText, Attachments: pipeline.AttachmentsMetadata}},
		Accounts: []pipeline.Account{{Name: "a"}},
	})
	ev := &watcher.Event{Account: "a", Mailbox: "INBOX", UIDValidity: 9, UID: 5,
		Message: parse(t, demo.Sample(1, demo.SampleOptions{Kind: demo.Invoice}))}
	jobs, err := p.Handle(context.Background(), ev)
	if err != nil {
		t.Fatal(err)
	}
	var hooks []payload.Payload
	for _, j := range jobs {
		var pl payload.Payload
		if err := json.Unmarshal(j.Body, &pl); err != nil {
			t.Fatal(err)
		}
		hooks = append(hooks, pl)
	}
	if len(hooks) != 2 {
		t.Fatalf("%d jobs; want two webhooks", len(jobs))
	}
	inv, all := hooks[0], hooks[1]
	if inv.Fields["number"] != "2026-1234" || inv.Fields["amount"] != "1.234,00" || inv.Fields["broken"] != nil ||
		len(inv.Fields) != 3 {
		t.Errorf("invoices fields %#v", inv.Fields)
	}
	if !strings.Contains(strings.Join(inv.Defects, " "), "extract_failed:broken") {
		t.Errorf("invoices defects %v lack extract_failed:broken", inv.Defects)
	}
	if all.Fields != nil || strings.Contains(strings.Join(all.Defects, " "), "extract_failed") {
		t.Errorf("rule without extract: fields %#v, defects %v", all.Fields, all.Defects)
	}

	e, err := p.Explain(context.Background(), "invoice.eml", ev, p.Match(ev))
	if err != nil {
		t.Fatal(err)
	}
	if got := e.Rules[0]; got.Fields["number"] != "2026-1234" || !strings.Contains(got.FieldErrors["broken"], "index out of range") {
		t.Errorf("explained rule %+v", got)
	}
	var txt bytes.Buffer
	if err := e.WriteText(&txt); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{`field amount = "1.234,00"`, `field number = "2026-1234"`, `field broken = null (extract_failed: index out of range`} {
		if !strings.Contains(txt.String(), s) {
			t.Errorf("text report lacks %q:\n%s", s, txt.String())
		}
	}
}
