package rules

import (
	"fmt"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
)

// maxFindAll is the most matches find_all returns.
const maxFindAll = 100

// The pattern helpers find, find_all and groups take their pattern at run time, like re(): from
// the rule's text (a constant, compiled once when the rules load, where a bad one is reported)
// or built from mail. Either way they run through the Set's pattern cache and within its
// deterministic bounds (recache.go); over a bound the helper fails and so does the rule, with
// the defect rule_failed:NAME.

// find returns the first match of pattern in s, "" when there is none.
func (s *Set) find(pattern, str string) (string, error) {
	re, err := s.re.compiled(pattern, str, 1)
	if err != nil {
		return "", err
	}
	return re.FindString(str), nil
}

// findAll returns up to maxFindAll matches of pattern in s, in order; an empty list when none.
func (s *Set) findAll(pattern, str string) ([]string, error) {
	re, err := s.re.compiled(pattern, str, 2*maxFindAll+1)
	if err != nil {
		return nil, err
	}
	out := re.FindAllString(str, maxFindAll)
	if out == nil {
		out = []string{}
	}
	return out, nil
}

// groups returns the named groups of the first match of pattern in s: name → the text it
// captured ("" for a group that took no part in the match). No match, or a pattern without named
// groups, gives an empty map, so `groups(p, s).amount` is nil then rather than an error.
func (s *Set) groups(pattern, str string) (map[string]any, error) {
	re, err := s.re.compiled(pattern, str, 1)
	if err != nil {
		return nil, err
	}
	out := map[string]any{}
	m := re.FindStringSubmatch(str)
	if m == nil {
		return out, nil
	}
	for i, name := range re.SubexpNames() {
		if name != "" && i < len(m) {
			out[name] = m[i]
		}
	}
	return out, nil
}

// patternHelpers are the helpers whose first argument is a pattern.
var patternHelpers = map[string]bool{"re": true, "find": true, "find_all": true, "groups": true}

// patternFunctions registers find, find_all and groups.
func (s *Set) patternFunctions() []expr.Option {
	return []expr.Option{
		patternFunction("find", func(p, str string) (any, error) { return s.find(p, str) }, new(func(pattern, s string) string)),
		patternFunction("find_all", func(p, str string) (any, error) { return s.findAll(p, str) }, new(func(pattern, s string) []string)),
		patternFunction("groups", func(p, str string) (any, error) { return s.groups(p, str) }, new(func(pattern, s string) map[string]any)),
	}
}

// patternFunction registers helper name(pattern, s) of the given signature, running fn and naming
// the helper in its errors.
func patternFunction(name string, fn func(pattern, s string) (any, error), signature any) expr.Option {
	return expr.Function(name, func(params ...any) (any, error) {
		pattern, err := stringArg(name, params, 0)
		if err != nil {
			return nil, err
		}
		str, err := stringArg(name, params, 1)
		if err != nil {
			return nil, err
		}
		out, err := fn(pattern, str)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		return out, nil
	}, signature)
}

// constantPatterns compiles, through the Set's cache, every constant pattern given to re, find,
// find_all or groups in the expression tree, so a bad one is a load error naming the rule and
// the first use of a good one costs nothing.
func (s *Set) constantPatterns(root ast.Node) error {
	v := &patternVisitor{}
	ast.Walk(&root, v)
	for _, c := range v.calls {
		if _, err := s.re.get(c.pattern); err != nil {
			return fmt.Errorf("%s(%q): %w", c.fn, c.pattern, err)
		}
	}
	return nil
}

type patternCall struct{ fn, pattern string }

type patternVisitor struct{ calls []patternCall }

func (v *patternVisitor) Visit(node *ast.Node) {
	call, ok := (*node).(*ast.CallNode)
	if !ok || len(call.Arguments) == 0 {
		return
	}
	id, ok := call.Callee.(*ast.IdentifierNode)
	if !ok || !patternHelpers[id.Value] {
		return
	}
	if p, ok := call.Arguments[0].(*ast.StringNode); ok {
		v.calls = append(v.calls, patternCall{fn: id.Value, pattern: p.Value})
	}
}
