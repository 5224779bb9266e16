package rules

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// The README's invoices rule.
var invoiceRule = Spec{
	Name: "invoices",
	When: `subject contains "Invoice"`,
	Extract: map[string]string{
		"number": `find("INV-[0-9]+-[0-9]+", subject + " " + text)`,
		"amount": `groups("total EUR (?P<amount>[0-9.,]+)", text).amount`,
	},
	Actions: []Action{{Webhook: "accounting"}},
}

func TestExtract(t *testing.T) {
	s, err := Compile([]Spec{invoiceRule, {Name: "plain", When: "true"}, {Name: "kinds", When: "true", Extract: map[string]string{
		"count":    `len(attachments)`,
		"ratio":    `size / 4`,
		"flag":     `automated`,
		"list":     `[subject, 1, true, nil]`,
		"map":      `{"from": from.address, "n": 2}`,
		"address":  `from`,
		"nothing":  `nil`,
		"big":      `9007199254740993`,
		"fn":       `header`,
		"fails":    `to[9].name`,
		"too_big":  `repeat("x", 70000)`,
		"infinity": `1 / 0`,
	}}})
	if err != nil {
		t.Fatal(err)
	}
	env := invoiceEnv()
	matched, errs := s.Match(env)
	if len(errs) != 0 || len(matched) != 3 {
		t.Fatalf("matched %v, errors %v", names(matched), errs)
	}
	fields, xerrs := s.Extract(matched[0], env)
	if len(xerrs) != 0 || !reflect.DeepEqual(fields, map[string]any{"number": "INV-2026-0042", "amount": "120.50"}) {
		t.Errorf("invoices: %#v, errors %v", fields, xerrs)
	}
	if fields, errs := s.Extract(matched[1], env); fields != nil || errs != nil {
		t.Errorf("a rule without extract: %#v, %v; want nil", fields, errs)
	}

	fields, xerrs = s.Extract(matched[2], env)
	raw, err := json.Marshal(fields)
	if err != nil {
		t.Fatalf("fields do not marshal: %v", err)
	}
	want := `{"address":{"address":"noreply@GitHub.com","name":"GitHub"},"big":9007199254740993,` +
		`"count":2,"fails":null,"flag":true,"fn":null,"infinity":null,"list":["Invoice INV-2026-0042 for November",1,true,null],` +
		`"map":{"from":"noreply@GitHub.com","n":2},"nothing":null,"ratio":` + jsonOf(t, float64(env.Size)/4) +
		`,"too_big":null}`
	if string(raw) != want {
		t.Errorf("fields\n got %s\nwant %s", raw, want)
	}
	var failed []string
	for _, e := range xerrs {
		var ee *ExtractError
		if !errors.As(error(e), &ee) || ee.Rule != "kinds" || !strings.HasPrefix(e.Error(), `rule "kinds": extract.`+ee.Field+": ") {
			t.Errorf("error %v does not name rule and field", e)
		}
		failed = append(failed, e.Defect())
	}
	if w := []string{"extract_failed:fails", "extract_failed:fn", "extract_failed:infinity", "extract_failed:too_big"}; !reflect.DeepEqual(failed, w) {
		t.Errorf("defects %v, want %v", failed, w)
	}
}

func jsonOf(t *testing.T, v any) string {
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

func TestExtractCompileErrors(t *testing.T) {
	_, err := Compile([]Spec{
		{Name: "a", When: "true", Extract: map[string]string{"ok": "subject", "typo": "sujbect", "empty": " ", "bad name": "1", "9lives": "1"}},
	})
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		`rules[0] "a": extract.typo: unknown name sujbect`,
		`rules[0] "a": extract.empty: expression is empty`,
		`rules[0] "a": extract.bad name: a field name is letters, digits and _`,
		`rules[0] "a": extract.9lives: a field name`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "extract.ok") {
		t.Errorf("the good field is reported: %v", err)
	}
}

// TestExtractReads: what extract expressions read counts in the rule's Reads, so the fetch plan
// fetches text for an extract that reads it even when `when` reads only headers.
func TestExtractReads(t *testing.T) {
	s, err := Compile([]Spec{invoiceRule, {Name: "headers", When: "true", Extract: map[string]string{"s": "subject"}}})
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := s.Rule("invoices"); !r.Reads.Text || r.Reads.HTML {
		t.Errorf("invoices reads %+v, want text only", r.Reads)
	}
	if r, _ := s.Rule("headers"); r.Reads.Text || r.Reads.HTML {
		t.Errorf("headers reads %+v, want no body", r.Reads)
	}
}
