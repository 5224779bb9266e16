package rules

import (
	"errors"
	"fmt"
	"regexp/syntax"
	"strings"
	"testing"
)

// readmeProjectRule is the README's example of a pattern built per message.
var readmeProjectRule = Spec{Name: "project", When: `re("^\\[" + header("X-Project") + "\\]", subject)`}

// projectEnv is a message whose X-Project header and subject an attacker chose.
func projectEnv(project, subject string) *Env {
	env := testEnv()
	env.Subject = subject
	env.Header = func(name string) string {
		if strings.EqualFold(name, "X-Project") {
			return project
		}
		return ""
	}
	return env
}

// TestREBoundREADMEExample runs the README's re() example with a hostile X-Project against a
// 64 KiB subject: without bounds one Match takes seconds (minutes with a 4 KiB pattern) on the
// watcher's goroutine. With them it is a rule error, not a match, and an honest project still
// matches.
func TestREBoundREADMEExample(t *testing.T) {
	s, err := Compile([]Spec{readmeProjectRule})
	if err != nil {
		t.Fatal(err)
	}
	if m, errs := s.Match(projectEnv("acme/app", "[acme/app] Run failed")); len(m) != 1 || len(errs) != 0 {
		t.Fatalf("honest project: matched %v, errors %v", m, errs)
	}
	// 400 bytes whose 400 instructions are all alive on every byte of the subject: half a
	// second per Match on a laptop, 5 s at 4 KiB.
	hostile := strings.Repeat("x*", 200)
	subject := "[" + strings.Repeat("x", 64<<10) + "]"
	m, errs := s.Match(projectEnv(hostile, subject))
	if len(m) != 0 || len(errs) != 1 {
		t.Fatalf("hostile project: matched %v, errors %v; want no match and one error", m, errs)
	}
	var re *RuleError
	var be *BoundError
	if !errors.As(errs[0], &re) || !errors.As(errs[0], &be) || be.What != "match cost" {
		t.Fatalf("error %v (%T): want a *RuleError wrapping a match-cost *BoundError", errs[0], errs[0])
	}
	if d := re.Defect(); d != "rule_failed:project" {
		t.Errorf("defect %q; want rule_failed:project", d)
	}
	if msg := errs[0].Error(); !strings.HasPrefix(msg, `rules[0] "project": when: `) || !strings.Contains(msg, "match cost") {
		t.Errorf("error text %q does not name the rule and the bound", msg)
	}
	// Explain, for `mailhook test`, reports the same error: the bound does not depend on load.
	if ex := s.Explain(projectEnv(hostile, subject)); ex[0].Matched || !errors.As(ex[0].Err, &be) {
		t.Errorf("Explain: matched %v, error %v; want the bound's error", ex[0].Matched, ex[0].Err)
	}
	// The same pattern against a short subject is within the cost bound.
	if m, errs := s.Match(projectEnv(hostile, "[xxx]")); len(m) != 1 || len(errs) != 0 {
		t.Errorf("hostile project, short subject: matched %v, errors %v; want a match", m, errs)
	}
}

// TestREBounds checks each bound on its own: pattern bytes, program size (refused before the
// program is built), and the cost of one use, for re() and for a rewritten `matches`.
func TestREBounds(t *testing.T) {
	tests := []struct {
		name, when, pattern, subject string
		what                         string // the bound hit; "" for none
	}{
		{"short", `re(header("X-P"), subject)`, "^a+$", strings.Repeat("a", 1000), ""},
		{"pattern bytes", `re(header("X-P"), subject)`, strings.Repeat("a", maxPatternBytes+1), "a", "pattern bytes"},
		{"pattern bytes at the bound", `re(header("X-P"), subject)`, strings.Repeat("a", maxPatternBytes), "a", ""},
		{"program", `re(header("X-P"), subject)`, strings.Repeat("(?:x?){1000}", 5), "x", "program instructions"},
		{"program via matches", `subject matches header("X-P")`, strings.Repeat("(?:x?){1000}", 5), "x", "program instructions"},
		{"class repeat", `re(header("X-P"), subject)`, `\pL{1000}\pL{1000}\pL{1000}\pL{1000}\pL{1000}`, "x", "program instructions"},
		{"cost", `re(header("X-P"), subject)`, "a" + strings.Repeat("b?", 100), strings.Repeat("a", 1<<17), "match cost"},
		{"cost via matches", `subject matches header("X-P")`, "a" + strings.Repeat("b?", 100), strings.Repeat("a", 1<<17), "match cost"},
		{"cost under the bound", `re(header("X-P"), subject)`, "a" + strings.Repeat("b?", 100), strings.Repeat("a", 1<<15), ""},
		{"bad pattern", `re(header("X-P"), subject)`, "(", "x", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Compile([]Spec{{Name: "b", When: tc.when}})
			if err != nil {
				t.Fatal(err)
			}
			env := testEnv()
			env.Subject = tc.subject
			env.Header = func(string) string { return tc.pattern }
			_, errs := s.Match(env)
			var be *BoundError
			switch {
			case tc.what == "" && len(errs) > 0 && errors.As(errs[0], &be):
				t.Errorf("error %v; want no bound hit", errs[0])
			case tc.what != "" && (len(errs) != 1 || !errors.As(errs[0], &be) || be.What != tc.what):
				t.Errorf("errors %v; want the %s bound", errs, tc.what)
			}
			if tc.name == "bad pattern" && (len(errs) != 1 || !strings.Contains(errs[0].Error(), "missing closing )")) {
				t.Errorf("bad pattern: errors %v; want regexp's parse error", errs)
			}
		})
	}
}

// TestProgramSizeEstimate checks that the estimate the program bound uses is never below the
// size of the program regexp builds.
func TestProgramSizeEstimate(t *testing.T) {
	for _, p := range []string{"", "a", "abc", "a|b|c", "(a)(b)", "a*b+c?", `\pL{1000}`, "(?:x?){1000}",
		"(?:ab|cd){3,}", "(?:a{2,5}){3,7}", "(?i)hello|world", "^[a-z]+@[a-z]+$", `(?:\b\w+\b\s*){10}`,
		strings.Repeat("(?:x|x)*", 50), "(?s).{0,100}x", "(?U)a+?b*?", "((((a))))", "[^x]{2}|(?:y{3}){4}"} {
		tree, err := syntax.Parse(p, syntax.Perl)
		if err != nil {
			t.Fatal(err)
		}
		prog, err := syntax.Compile(tree.Simplify())
		if err != nil {
			t.Fatal(err)
		}
		if est := programSize(tree) + 2; est < int64(len(prog.Inst)) {
			t.Errorf("%q: estimate %d below the program's %d instructions", p, est, len(prog.Inst))
		}
	}
}

// TestRECacheBytes checks that the cache evicts by estimated bytes as well as by count.
func TestRECacheBytes(t *testing.T) {
	c := newRECache(1000, 4*reEntryBytes("", &compiledRE{insts: 1000}))
	for i := range 20 {
		p := fmt.Sprintf("%s(?:x?){490}", strings.Repeat("a", i)) // about 1,000 instructions
		if _, err := c.get(p); err != nil {
			t.Fatal(err)
		}
		if n, b := c.len(), c.size(); b > c.maxBytes || n > 4 {
			t.Fatalf("after %d patterns: %d cached, %d bytes; bound %d bytes", i+1, n, b, c.maxBytes)
		}
	}
	// One entry over the whole budget still gets cached alone (the bound on one program keeps
	// that small), so a rule that uses it on every message does not recompile it every time.
	c = newRECache(1000, 10)
	if _, err := c.get("abc"); err != nil {
		t.Fatal(err)
	}
	if n := c.len(); n != 1 {
		t.Errorf("%d cached; want 1", n)
	}
}

// TestMatchCostPasses checks the cost of a search for several matches.
func TestMatchCostPasses(t *testing.T) {
	p, err := compilePattern("a+")
	if err != nil {
		t.Fatal(err)
	}
	in := strings.Repeat("a", int(maxMatchCost/p.insts/201)-1)
	if err := p.check(in, 201); err != nil {
		t.Errorf("at the bound: %v", err)
	}
	if err := p.check(in+"aa", 201); err == nil {
		t.Error("over the bound with 201 passes: no error")
	}
	if err := p.check(in+"aa", 1); err != nil {
		t.Errorf("one pass: %v", err)
	}
}
