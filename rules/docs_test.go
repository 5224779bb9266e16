package rules

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDocsExamples compiles every rule expression the README and the docs/ pages show: the
// `when:` lines of their YAML examples and the example column of the table of names and helpers
// (docs/rules.md).
func TestDocsExamples(t *testing.T) {
	pages, err := filepath.Glob("../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	var raw []byte
	for _, p := range append([]string{"../README.md"}, pages...) {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		raw = append(append(raw, b...), '\n')
	}
	var exprs []string
	whenLine := regexp.MustCompile(`^\s*(?:- )?when: '(.*)'`)
	inTable := false
	for _, line := range strings.Split(string(raw), "\n") {
		if m := whenLine.FindStringSubmatch(line); m != nil {
			exprs = append(exprs, strings.ReplaceAll(m[1], "''", "'"))
		}
		if strings.HasPrefix(line, "| name | example `when` |") {
			inTable = true
			continue
		}
		if inTable && !strings.HasPrefix(line, "|") {
			inTable = false
		}
		if !inTable || strings.HasPrefix(line, "|---") {
			continue
		}
		cells := strings.Split(strings.ReplaceAll(line, `\|`, "\x00"), "|")
		if len(cells) < 3 {
			t.Fatalf("table row %q", line)
		}
		_, code, ok := strings.Cut(cells[2], "`")
		if ok {
			code, _, ok = strings.Cut(code, "`")
		}
		if !ok {
			t.Fatalf("no example in row %q", line)
		}
		exprs = append(exprs, strings.ReplaceAll(code, "\x00", "|"))
	}
	// The date caveat's alternatives.
	exprs = append(exprs, `date.After(now().Add(-duration("72h")))`, `date.Weekday().String() == "Saturday"`,
		`date.Year() == 2026 && date.Month().String() == "November"`, `date.Unix() > 1767225600`)
	if len(exprs) < 20 {
		t.Fatalf("found only %d examples in the docs", len(exprs))
	}
	for _, e := range exprs {
		if _, err := Compile([]Spec{{Name: "example", When: e}}); err != nil {
			t.Errorf("docs example %s: %v", e, err)
		}
	}
	// The caveat itself: date() is not callable.
	if _, err := Compile([]Spec{{Name: "shadowed", When: `date("2026-01-01") < now()`}}); err == nil {
		t.Error(`date("…") compiled; docs/rules.md says the date field shadows the builtin`)
	}
}
