package rules

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// invoiceEnv is a message like the invoices the README's extract example reads.
func invoiceEnv() *Env {
	m := testMessage()
	m.Subject = "Invoice INV-2026-0042 for November"
	m.Text = "Hello,\n\nyour invoice INV-2026-0042 (see also INV-2026-0041).\nAmount: total EUR 120.50 due on 10 December.\n"
	return NewEnv("acct", "INBOX", 7, m, trusted)
}

func TestPatternHelpers(t *testing.T) {
	s, err := Compile([]Spec{{Name: "r", When: "true"}})
	if err != nil {
		t.Fatal(err)
	}
	env := invoiceEnv()
	for _, tc := range []struct {
		expr string
		want any
	}{
		{`find("INV-[0-9]+-[0-9]+", subject + " " + text)`, "INV-2026-0042"},
		{`find("nothing here", text)`, ""},
		// Lists and maps as the payload's JSON carries them.
		{`find_all("INV-[0-9]+-[0-9]+", text)`, []any{"INV-2026-0042", "INV-2026-0041"}},
		{`find_all("nothing here", text)`, []any{}},
		{`groups("total EUR (?P<amount>[0-9.,]+)", text)`, map[string]any{"amount": "120.50"}},
		{`groups("total EUR (?P<amount>[0-9.,]+)", text).amount`, "120.50"},
		{`groups("(?P<a>x)|(?P<b>total)", text)`, map[string]any{"a": "", "b": "total"}},
		{`groups("(unnamed) EUR", text)`, map[string]any{}},
		{`groups("no match (?P<n>.)", text)`, map[string]any{}},
		{`groups("no match (?P<n>.)", text).n`, nil},
		// A pattern built from mail, as re() takes it.
		{`find("INV-" + find("[0-9]{4}", subject) + "-[0-9]+", text)`, "INV-2026-0042"},
	} {
		got, err := s.eval(tc.expr, env)
		if err != nil {
			t.Errorf("%s: %v", tc.expr, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s = %#v, want %#v", tc.expr, got, tc.want)
		}
	}
	// find_all stops at 100 matches.
	m := testMessage()
	m.Text = strings.Repeat("a1 ", 500)
	got, err := s.eval(`len(find_all("a[0-9]", text))`, NewEnv("acct", "INBOX", 1, m, trusted))
	if err != nil || got != 100 {
		t.Errorf("find_all over 500 matches: %v, %v; want 100", got, err)
	}
}

// TestPatternHelpersBounds: find, find_all and groups share re()'s bounds: a hostile pattern
// from mail fails the rule (rule_failed:NAME) instead of running for seconds, and find_all counts
// its passes.
func TestPatternHelpersBounds(t *testing.T) {
	s, err := Compile([]Spec{
		{Name: "find", When: `find("^\\[" + header("X-Project") + "\\]", subject) != ""`},
		{Name: "groups", When: `len(groups("^\\[(?P<p>" + header("X-Project") + ")\\]", subject)) > 0`},
		// 40 instructions × 300 KiB × 201 passes is over the bound, one pass is not.
		{Name: "find_all", When: `len(find_all("(a|b|c|d|e|f|g|h|i|j)x", text)) > 0`},
	})
	if err != nil {
		t.Fatal(err)
	}
	env := projectEnv(strings.Repeat("x*", 200), "["+strings.Repeat("x", 64<<10)+"]")
	env.Text = strings.Repeat("y", 300<<10)
	_, errs := s.Match(env)
	if len(errs) != 3 {
		t.Fatalf("errors %v; want one per rule", errs)
	}
	for i, name := range []string{"find", "groups", "find_all"} {
		var re *RuleError
		var be *BoundError
		if !errors.As(errs[i], &re) || re.Rule != name || !errors.As(errs[i], &be) || be.What != "match cost" {
			t.Errorf("rule %s: error %v; want its match-cost bound", name, errs[i])
		}
	}
	if _, err := s.find("(a|b|c|d|e|f|g|h|i|j)x", env.Text); err != nil {
		t.Errorf("one pass of the same pattern over the same text: %v; want within the bound", err)
	}
}

// TestConstantPatternsAtLoad: a constant pattern is compiled when the rules load, so a bad one is
// a load error naming the rule, the expression and the helper.
func TestConstantPatternsAtLoad(t *testing.T) {
	_, err := Compile([]Spec{
		{Name: "ok", When: `find("a+", subject) != ""`},
		{Name: "bad-find", When: `find("(", subject) != ""`},
		{Name: "bad-re", When: `re("[z-a]", subject)`},
		{Name: "bad-extract", When: `true`, Extract: map[string]string{"n": `groups("(?P<n", text)`}},
	})
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		`rules[1] "bad-find": when: find("("): error parsing regexp`,
		`rules[2] "bad-re": when: re("[z-a]"): error parsing regexp`,
		`rules[3] "bad-extract": extract.n: groups("(?P<n"): error parsing regexp`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), `"ok"`) {
		t.Errorf("the good rule is reported: %v", err)
	}
}

// eval compiles expression src with the Set's options (any result type) and runs it on env.
func (s *Set) eval(src string, env *Env) (any, error) {
	r := &Rule{Spec: Spec{Name: "eval", Extract: map[string]string{"v": src}}}
	if errs := s.compileExtract(r, "eval", s.options()); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	fields, errs := s.Extract(r, env)
	if len(errs) > 0 {
		return nil, errs[0]
	}
	v := fields["v"]
	if n, ok := v.(json.Number); ok {
		return n.String(), nil
	}
	return v, nil
}

// TestReplyTextAndURLsEnv: reply_text and urls are in the environment, and what a rule reading
// them reads is fetched: reply_text the text part (or the html one of mail without it), urls
// both bodies.
func TestReplyTextAndURLsEnv(t *testing.T) {
	s, err := Compile([]Spec{
		{Name: "approval", When: `reply_text matches "(?i)^approved"`},
		{Name: "links", When: `any(urls, # startsWith "https://ci.example/")`},
	})
	if err != nil {
		t.Fatal(err)
	}
	m := testMessage()
	m.Text = "Approved, see https://ci.example/run/1\n\nOn Mon, Nov 30, 2026 at 9:00 AM Alice <a@example.com> wrote:\n> Approved? https://old.example/\n"
	got, errs := s.Match(NewEnv("a", "INBOX", 1, m, trusted))
	if names(got) != "approval,links" || len(errs) != 0 {
		t.Errorf("matched %q, errors %v", names(got), errs)
	}
	if r, _ := s.Rule("approval"); r.Reads != (Reads{ReplyText: true}) {
		t.Errorf("reply_text reads %+v, want the reply text only", r.Reads)
	}
	if r, _ := s.Rule("links"); !r.Reads.Text || !r.Reads.HTML {
		t.Errorf("urls reads %+v, want both bodies", r.Reads)
	}
}

// TestUnderstandOnlyWhenRead: reply_text and urls cost a pass over both bodies, so Match fills
// them only when a rule (its when or an extract) reads them.
func TestUnderstandOnlyWhenRead(t *testing.T) {
	m := testMessage()
	m.Text = "Approved, see https://ci.example/run/1\n\n> old\n"
	for _, tc := range []struct {
		spec Spec
		want bool
	}{
		{Spec{Name: "plain", When: `text contains "Approved"`}, false},
		{Spec{Name: "when", When: `reply_text != ""`}, true},
		{Spec{Name: "extract", When: "true", Extract: map[string]string{"u": "urls"}}, true},
	} {
		s, err := Compile([]Spec{tc.spec})
		if err != nil {
			t.Fatal(err)
		}
		env := NewEnv("a", "INBOX", 1, m, trusted)
		s.Match(env)
		if got := env.ReplyText != ""; got != tc.want {
			t.Errorf("%s: reply_text filled %v, want %v", tc.spec.Name, got, tc.want)
		}
	}
}
