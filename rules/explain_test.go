package rules

import (
	"strings"
	"testing"
)

func TestExplain(t *testing.T) {
	specs := []Spec{
		// endsWith is case-sensitive and the address is noreply@GitHub.com.
		{Name: "ci", When: `from.address endsWith "@github.com" && auth.dmarc == "pass" && subject contains "failed"`},
		{Name: "ci-dmarc", When: `domain(from.address) == "github.com" && auth.dmarc == "pass" && subject contains "failed"`},
		{Name: "ci-dkim", When: `domain(from.address) == "github.com" and auth.dkim == "pass" and subject contains "failed"`, Stop: true},
		{Name: "after-stop", When: `subject != ""`},
		{Name: "other-account", Account: "work", When: `true`},
		{Name: "other-mailbox", Mailbox: "Archive", When: `true`},
		{Name: "either", When: `size > 1000000 || "urgent" in flags`},
		{Name: "single", When: `len(attachments) > 5`},
		// The guard is false, so the guarded clause, which would fail, is never evaluated.
		{Name: "guarded", When: `len(cc) > 3 && cc[3].address == "x@y.z"`},
		{Name: "failing", When: `subject != "" && to[7].address == "x"`},
		{Name: "let", When: `let d = domain(from.address); d == "github.com" && subject contains "nope"`},
	}
	s, err := Compile(specs)
	if err != nil {
		t.Fatal(err)
	}
	ex := s.Explain(testEnv())
	if len(ex) != len(specs) {
		t.Fatalf("%d explanations for %d rules", len(ex), len(specs))
	}
	type want struct {
		skipped        string
		matched, fires bool
		stoppedBy      string
		falseClause    string
		clauses        int
		err            bool
	}
	wants := map[string]want{
		// auth.dmarc is "fail" in the trusted header of testMessage.
		"ci":            {falseClause: `from.address endsWith "@github.com"`, clauses: 1},
		"ci-dmarc":      {falseClause: `auth.dmarc == "pass"`, clauses: 2},
		"ci-dkim":       {matched: true, fires: true, clauses: 3},
		"after-stop":    {matched: true, stoppedBy: "ci-dkim", clauses: 1},
		"other-account": {skipped: "account filter"},
		"other-mailbox": {skipped: "mailbox filter"},
		"either":        {falseClause: `size > 1000000 || "urgent" in flags`, clauses: 2},
		"single":        {falseClause: `len(attachments) > 5`, clauses: 1},
		"guarded":       {falseClause: `len(cc) > 3`, clauses: 1},
		"failing":       {err: true, clauses: 2},
		"let":           {falseClause: specs[10].When, clauses: 1},
	}
	for _, e := range ex {
		w := wants[e.Rule.Name]
		got := want{e.Skipped, e.Matched, e.Fires, e.StoppedBy, e.FalseClause, len(e.Clauses), e.Err != nil}
		if got != w {
			t.Errorf("%s: got %+v, want %+v (clauses %+v)", e.Rule.Name, got, w, e.Clauses)
		}
	}
	// The clause that fails carries an error naming the rule; the rule's own error too.
	f := ex[9]
	if f.Clauses[1].Err == nil || !strings.Contains(f.Clauses[1].Err.Error(), `"failing"`) ||
		!strings.Contains(f.Err.Error(), `"failing"`) {
		t.Errorf("failing: %+v", f)
	}

	// Explain agrees with Match on which rules fire.
	matched, _ := s.Match(testEnv())
	var fired []*Rule
	for _, e := range ex {
		if e.Fires {
			fired = append(fired, e.Rule)
		}
	}
	if names(fired) != names(matched) {
		t.Errorf("Explain fires %s, Match returns %s", names(fired), names(matched))
	}
	// A second call reuses the compiled clauses and says the same.
	again := s.Explain(testEnv())
	if again[0].FalseClause != ex[0].FalseClause {
		t.Errorf("second Explain differs: %q", again[0].FalseClause)
	}
	if s.Explain(nil) == nil {
		t.Error("Explain(nil) returned nothing")
	}
}

// The clauses of a rule are compiled only when Explain first needs them: Compile and Match
// never pay for them.
func TestExplainLazy(t *testing.T) {
	s, err := Compile([]Spec{{Name: "ci", When: `subject contains "x" && size > 1`}})
	if err != nil {
		t.Fatal(err)
	}
	s.Match(testEnv())
	if s.rules[0].explain.clauses != nil {
		t.Fatal("clauses compiled before Explain")
	}
	s.Explain(testEnv())
	if len(s.rules[0].explain.clauses) != 2 {
		t.Fatalf("clauses %+v", s.rules[0].explain.clauses)
	}
}
