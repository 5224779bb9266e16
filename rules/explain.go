package rules

import (
	"fmt"
	"strings"
	"sync"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/parser"
	"github.com/expr-lang/expr/vm"
)

// Explanation says how one rule fared on one message, for `mailhook test`: whether its filters
// admitted the message, whether its `when` was true, whether Match would return it, and, when it
// did not match, which top-level clause was false.
type Explanation struct {
	Rule *Rule
	// Skipped says why `when` was not evaluated: "account filter" or "mailbox filter" when the
	// rule's account: or mailbox: does not admit the message; "" when it was evaluated.
	Skipped string
	// Matched is the value of `when` (false when skipped or when evaluation failed).
	Matched bool
	// Fires is true when Match would return the rule: it matched, and no earlier rule with
	// stop: true matched. StoppedBy names that earlier rule when Matched && !Fires.
	Fires     bool
	StoppedBy string
	// Err is the evaluation error; such a rule counts as not matched.
	Err error
	// Clauses are the top-level clauses of `when`, evaluated left to right the way the operator
	// evaluates them (an && chain stops at the first false clause, an || chain at the first true
	// one), so a clause that only a previous one guards is never run. A `when` that is not an
	// && or || chain at its top level is one clause.
	Clauses []Clause
	// FalseClause, for an evaluated rule that did not match, is the source of the clause that
	// made it false: the first false clause of an && chain; for a single clause or an || chain
	// (where every alternative was false), the whole expression. "" when it matched or a clause
	// failed (see the Err of that clause).
	FalseClause string
}

// Clause is one top-level clause of a rule and its value on the message.
type Clause struct {
	// Source is the clause as expr prints it back (normalised spacing and parentheses).
	Source string
	Value  bool
	Err    error
}

// explainer holds a rule's top-level clauses, compiled on first use: only `mailhook test` needs
// them, so Compile and the Match hot path never pay for them.
type explainer struct {
	once    sync.Once
	op      string // "&&" or "||"; "" for a single clause
	clauses []explainClause
}

type explainClause struct {
	source  string
	program *vm.Program
}

// Explain evaluates every rule on env, in file order, and says for each whether it matched and,
// if not, why. Unlike Match it does not stop at a rule with stop: true (it reports the rules
// after one as matched but not firing), and it compiles each rule's clauses on first use; it is
// meant for the test verb, not for the watcher's hot path. A nil env explains an empty message.
// Explain is safe for concurrent use.
func (s *Set) Explain(env *Env) []Explanation {
	if env == nil {
		env = NewEnv("", "", 0, nil, "")
	}
	env.Understand() // `mailhook test` shows them whether or not a rule reads them
	m := s.vms.Get().(*vm.VM)
	defer s.vms.Put(m)
	out := make([]Explanation, 0, len(s.rules))
	stoppedBy := ""
	for _, r := range s.rules {
		e := Explanation{Rule: r}
		switch {
		case r.Account != "" && r.Account != env.Account:
			e.Skipped = "account filter"
		case !r.AppliesTo(env.Account, env.Mailbox):
			e.Skipped = "mailbox filter"
		}
		if e.Skipped != "" {
			out = append(out, e)
			continue
		}
		e.Matched, e.Err = r.eval(m, env)
		e.Clauses, e.FalseClause = s.clauses(r, m, env, e.Matched)
		if e.Matched {
			e.Fires = stoppedBy == ""
			if !e.Fires {
				e.StoppedBy = stoppedBy
			} else if r.Stop {
				stoppedBy = r.Name
			}
		}
		out = append(out, e)
	}
	return out
}

// clauses evaluates r's top-level clauses on env and picks the false one.
func (s *Set) clauses(r *Rule, m *vm.VM, env *Env, matched bool) ([]Clause, string) {
	x := &r.explain
	x.once.Do(func() { x.op, x.clauses = s.splitClauses(r.When) })
	var out []Clause
	falseClause, failed := "", false
	for _, c := range x.clauses {
		cl := Clause{Source: c.source}
		res, err := m.Run(c.program, env)
		if err != nil {
			cl.Err = fmt.Errorf("rules[%d] %q: clause %s: %w", r.Index, r.Name, c.source, err)
			failed = true
		} else {
			cl.Value, _ = res.(bool)
		}
		out = append(out, cl)
		if cl.Err != nil || (x.op == "&&" && !cl.Value) || (x.op == "||" && cl.Value) {
			if x.op == "&&" && cl.Err == nil && !matched {
				falseClause = c.source
			}
			break
		}
	}
	if !matched && !failed && falseClause == "" {
		falseClause = r.When
		if len(x.clauses) > 1 { // an || chain: every alternative was false
			falseClause = joinSources(x)
		}
	}
	return out, falseClause
}

// joinSources prints the clauses of x back as one chain, consistent with their sources.
func joinSources(x *explainer) string {
	var b strings.Builder
	for i, c := range x.clauses {
		if i > 0 {
			b.WriteString(" " + x.op + " ")
		}
		b.WriteString(c.source)
	}
	return b.String()
}

// splitClauses parses when and flattens its top-level && (or ||) chain into clauses, each
// compiled on its own with the Set's options. Should a clause not compile alone (it always
// should: it type-checked as part of the whole), the whole expression is the only clause.
func (s *Set) splitClauses(when string) (string, []explainClause) {
	whole := func() (string, []explainClause) {
		p, err := expr.Compile(when, s.whenOptions()...)
		if err != nil {
			return "", nil
		}
		return "", []explainClause{{source: when, program: p}}
	}
	tree, err := parser.Parse(when)
	if err != nil {
		return whole()
	}
	op := chainOp(tree.Node)
	if op == "" {
		return whole()
	}
	var nodes []ast.Node
	flatten(tree.Node, op, &nodes)
	opts := s.whenOptions()
	clauses := make([]explainClause, 0, len(nodes))
	for _, n := range nodes {
		src := n.String()
		p, err := expr.Compile(src, opts...)
		if err != nil {
			return whole()
		}
		clauses = append(clauses, explainClause{source: src, program: p})
	}
	return op, clauses
}

// chainOp returns "&&" or "||" when n is a binary node of that operator (in either spelling).
func chainOp(n ast.Node) string {
	b, ok := n.(*ast.BinaryNode)
	if !ok {
		return ""
	}
	switch b.Operator {
	case "&&", "and":
		return "&&"
	case "||", "or":
		return "||"
	}
	return ""
}

// flatten appends the operands of the chain of op rooted at n, left to right.
func flatten(n ast.Node, op string, out *[]ast.Node) {
	if chainOp(n) == op {
		b := n.(*ast.BinaryNode)
		flatten(b.Left, op, out)
		flatten(b.Right, op, out)
		return
	}
	*out = append(*out, n)
}
