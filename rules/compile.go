package rules

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/vm"
)

const (
	// maxNodes bounds the size of one `when` expression (expr's AST node count). Real rules
	// have tens of nodes; the bound stops a pathological config, not a plausible one.
	maxNodes = 10000
	// memoryBudget bounds what one evaluation may allocate, in expr's units (roughly: elements
	// of ranges, arrays, maps and closure scopes it creates). expr cannot be interrupted on a
	// timer, so this and maxNodes, with the text cap of the message package and the bounds on
	// patterns built at run time (recache.go), are what bound an evaluation.
	memoryBudget = 1_000_000
)

// Rule is one compiled rule.
type Rule struct {
	Spec
	// Index is the rule's position in the list given to Compile (its file order).
	Index int
	// Reads says which costly fields the rule's `when` reads. Attachments is always false:
	// attachment metadata comes free with BODYSTRUCTURE, and no expression can read content.
	Reads Reads

	program *vm.Program
	// derived: the rule's when or extract reads reply_text or urls (Env.Understand).
	derived bool
	extract []extractField // sorted by name
	explain explainer      // top-level clauses, compiled on first use by Explain
}

// Set is a compiled rule list. It is safe for concurrent use.
type Set struct {
	rules  []*Rule
	byName map[string]*Rule
	re     *reCache // compiled patterns for re() and dynamic `matches`, shared by the Set's rules
	// derived: some rule reads reply_text or urls, so Match fills them first (Env.Understand).
	derived bool
	vms     sync.Pool // of *vm.VM; a VM is not safe for concurrent use
}

// Compile type-checks and compiles every rule's `when` against Env, once. It reports every
// problem at once (joined with errors.Join), each naming the rule as `rules[2] "ci-failures": …`;
// expression errors keep expr's message with its line:column and the caret excerpt:
//
//	rules[2] "ci-failures": when: unknown name sujbect (1:1)
//	 | sujbect contains "failed"
//	 | ^
//
// A rule needs a unique, non-empty name, a non-empty boolean `when`, and actions that each set
// exactly one field. Whether the webhooks and replies the actions name exist is the config's
// concern, not checked here.
func Compile(specs []Spec) (*Set, error) {
	s := &Set{
		rules:  make([]*Rule, 0, len(specs)),
		byName: make(map[string]*Rule, len(specs)),
		re:     newRECache(reCacheSize, reCacheBytes),
	}
	s.vms.New = func() any { return &vm.VM{MemoryBudget: memoryBudget} }
	opts := s.options()
	whenOptions := s.whenOptions()

	var errs []error
	for i, sp := range specs {
		if sp.Name == "" {
			errs = append(errs, fmt.Errorf("rules[%d]: name is empty", i))
		} else if prev, ok := s.byName[sp.Name]; ok {
			errs = append(errs, fmt.Errorf("rules[%d] %q: name already used by rules[%d]", i, sp.Name, prev.Index))
		}
		label := fmt.Sprintf("rules[%d] %q", i, sp.Name)
		for j, a := range sp.Actions {
			if n := a.fieldsSet(); n != 1 {
				errs = append(errs, fmt.Errorf("%s: actions[%d]: %d fields set, want exactly one", label, j, n))
			}
		}
		r := &Rule{Spec: sp, Index: i}
		if strings.TrimSpace(sp.When) == "" {
			errs = append(errs, fmt.Errorf("%s: when is empty", label))
		} else if p, err := expr.Compile(sp.When, whenOptions...); err != nil {
			errs = append(errs, fmt.Errorf("%s: when: %w", label, err))
		} else if err := s.constantPatterns(p.Node()); err != nil {
			errs = append(errs, fmt.Errorf("%s: when: %w", label, err))
		} else {
			r.program = p
			r.Reads, r.derived = readsOf(p.Node())
		}
		errs = append(errs, s.compileExtract(r, label, opts)...)
		s.derived = s.derived || r.derived
		if sp.Name != "" {
			if _, ok := s.byName[sp.Name]; !ok {
				s.byName[sp.Name] = r
			}
		}
		s.rules = append(s.rules, r)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return s, nil
}

// whenOptions are the options of a `when` and of its clauses: options, and a boolean result.
func (s *Set) whenOptions() []expr.Option { return append(s.options(), expr.AsBool()) }

// options returns the expr options every expression is compiled with (`when` adds AsBool, see
// whenOptions). The helpers close over s, so the pattern cache belongs to this Set.
func (s *Set) options() []expr.Option {
	return append([]expr.Option{
		expr.Env(Env{}),
		expr.MaxNodes(maxNodes),
		expr.Function("domain", func(params ...any) (any, error) {
			addr, err := stringArg("domain", params, 0)
			if err != nil {
				return nil, err
			}
			return domainOf(addr), nil
		}, new(func(addr string) string)),
		expr.Function("re", func(params ...any) (any, error) {
			pattern, err := stringArg("re", params, 0)
			if err != nil {
				return nil, err
			}
			str, err := stringArg("re", params, 1)
			if err != nil {
				return nil, err
			}
			ok, err := s.re.match(pattern, str)
			if err != nil {
				return nil, fmt.Errorf("re: %w", err)
			}
			return ok, nil
		}, new(func(pattern, s string) bool)),
		expr.Patch(dynamicMatches{}),
		expr.Patch(&nilSafe{}),
	}, s.patternFunctions()...)
}

// stringArg returns params[i] as a string. The checker enforces the helpers' typed signatures,
// but a value of static type any (an element of an untyped list, say) is only known at run time.
func stringArg(fn string, params []any, i int) (string, error) {
	if i >= len(params) {
		return "", fmt.Errorf("%s: missing argument %d", fn, i+1)
	}
	str, ok := params[i].(string)
	if !ok {
		return "", fmt.Errorf("%s: argument %d is %T, not a string", fn, i+1, params[i])
	}
	return str, nil
}

// dynamicMatches rewrites `s matches p`, where p is a string computed at run time, into
// `re(p, s)`, so the pattern is compiled once per distinct value instead of on every
// evaluation. A constant pattern is left alone: expr compiles it once, at Compile time, and
// reports a bad one there.
type dynamicMatches struct{}

func (dynamicMatches) Visit(node *ast.Node) {
	n, ok := (*node).(*ast.BinaryNode)
	if !ok || n.Operator != "matches" {
		return
	}
	if _, constant := n.Right.(*ast.StringNode); constant {
		return
	}
	// Only when both sides are known strings: then re() has exactly the operator's meaning
	// (the operator also takes []byte and nil, which re() would reject).
	if n.Left.Type().Kind() != reflect.String || n.Right.Type().Kind() != reflect.String {
		return
	}
	ast.Patch(node, &ast.CallNode{
		Callee:    &ast.IdentifierNode{Value: "re"},
		Arguments: []ast.Node{n.Right, n.Left},
	})
}

// fieldsSet counts the fields of a that are set.
func (a Action) fieldsSet() int {
	n := 0
	for _, set := range []bool{a.Webhook != "", a.Reply != "", a.MarkSeen, len(a.Flag) > 0, a.Move != "", a.Copy != ""} {
		if set {
			n++
		}
	}
	return n
}

// readsOf reports which costly environment fields the expression tree reads. It looks for the
// identifiers `text`, `html`, `bounce`, `calendar`, … anywhere (closures and let bindings
// included) and for `$env.text` or `$env["html"]`; any other use of `$env` (passed whole to a
// function, indexed by a computed key) could read anything, so it counts as reading them all.
// derived reports whether it reads reply_text or urls, which Env.Understand computes.
func readsOf(root ast.Node) (reads Reads, derived bool) {
	v := &readsVisitor{}
	ast.Walk(&root, v)
	if v.envUses > v.envFieldUses {
		v.reads = Reads{Text: true, HTML: true, AttachmentList: true, Reports: true, Calendar: true}
		v.derived = true
	}
	return v.reads, v.derived
}

type readsVisitor struct {
	reads        Reads
	derived      bool
	envUses      int // identifiers `$env`
	envFieldUses int // of which the base of `$env.<constant>`
}

func (v *readsVisitor) field(name string) {
	switch name {
	case "text":
		v.reads.Text = true
	case "reply_text":
		v.reads.ReplyText, v.derived = true, true
	case "html":
		v.reads.HTML = true
	case "urls": // links are in both bodies, in html mostly as hrefs
		v.reads.Text, v.reads.HTML, v.derived = true, true, true
	case "attachments":
		v.reads.AttachmentList = true
	case "bounce", "complaint":
		v.reads.Reports = true
	case "calendar":
		v.reads.Calendar = true
	}
}

func (v *readsVisitor) Visit(node *ast.Node) {
	switch n := (*node).(type) {
	case *ast.IdentifierNode:
		if n.Value == "$env" {
			v.envUses++
		} else {
			v.field(n.Value)
		}
	case *ast.MemberNode:
		base, ok := n.Node.(*ast.IdentifierNode)
		if !ok || base.Value != "$env" {
			return
		}
		if prop, ok := n.Property.(*ast.StringNode); ok {
			v.envFieldUses++
			v.field(prop.Value)
		}
	}
}
