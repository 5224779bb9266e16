package rules

import (
	"fmt"
	"strings"

	"github.com/expr-lang/expr/vm"
)

// Match evaluates the rules that apply to env's account and mailbox, in file order, and returns
// those whose `when` is true, up to and including the first matched rule with Stop set.
//
// A rule whose evaluation fails (a run-time error such as an index out of range, a helper's
// error, the memory budget exceeded, or a pattern built at run time over its bounds) counts as
// not matched; its error, a *RuleError naming the rule, is returned in errs for the caller to
// log once and to record as the message's defect (RuleError.Defect), and evaluation goes on with
// the next rule. Match is safe for concurrent use.
func (s *Set) Match(env *Env) (matched []*Rule, errs []error) {
	if env == nil {
		return nil, nil
	}
	if s.derived {
		env.Understand()
	}
	m := s.vms.Get().(*vm.VM)
	defer s.vms.Put(m)
	for _, r := range s.rules {
		if !r.AppliesTo(env.Account, env.Mailbox) {
			continue
		}
		ok, err := r.eval(m, env)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !ok {
			continue
		}
		if matched == nil {
			matched = make([]*Rule, 0, min(len(s.rules), 8)) // one allocation for the usual few matches
		}
		matched = append(matched, r)
		if r.Stop {
			break
		}
	}
	return matched, errs
}

// RuleError is the error of one rule's evaluation on one message, as Match and Explain return
// it: a run-time error such as an index out of range, a helper's error, the memory budget or a
// bound on a pattern built at run time (a *BoundError, found with errors.As). Such a rule counts
// as not matched.
type RuleError struct {
	Index int    // the rule's position in file order
	Rule  string // the rule's name
	Err   error
}

func (e *RuleError) Error() string {
	return fmt.Sprintf("rules[%d] %q: when: %v", e.Index, e.Rule, e.Err)
}

func (e *RuleError) Unwrap() error { return e.Err }

// Defect is the defect the message gets when this rule failed on it: "rule_failed:" and the
// rule's name. The message is still committed, with the rule treated as not matched.
func (e *RuleError) Defect() string { return "rule_failed:" + e.Rule }

// eval runs the rule's program on env with m.
func (r *Rule) eval(m *vm.VM, env *Env) (bool, error) {
	out, err := m.Run(r.program, env)
	if err != nil {
		return false, &RuleError{Index: r.Index, Rule: r.Name, Err: err}
	}
	ok, isBool := out.(bool)
	if !isBool {
		// Unreachable: Compile used expr.AsBool. Kept so a library change cannot turn into a panic.
		return false, &RuleError{Index: r.Index, Rule: r.Name, Err: fmt.Errorf("result is %T, not bool", out)}
	}
	return ok, nil
}

// AppliesTo reports whether the rule's account and mailbox filters admit (account, mailbox); an
// empty filter admits any. Mailbox names compare exactly, except INBOX, which is
// case-insensitive (RFC 3501 §5.1).
func (r *Rule) AppliesTo(account, mailbox string) bool {
	if r.Account != "" && r.Account != account {
		return false
	}
	return r.Mailbox == "" || r.Mailbox == mailbox ||
		(strings.EqualFold(r.Mailbox, "INBOX") && strings.EqualFold(mailbox, "INBOX"))
}

// Reads returns the union of what the rules that apply to this account and mailbox read: the
// watcher's fetch plan fetches the text or HTML body only when it is true.
func (s *Set) Reads(account, mailbox string) Reads {
	var u Reads
	for _, r := range s.rules {
		if r.AppliesTo(account, mailbox) {
			u = u.union(r.Reads)
		}
	}
	return u
}

// Rules returns the compiled rules in file order. The slice is a copy; the rules are shared and
// must not be modified.
func (s *Set) Rules() []*Rule {
	return append([]*Rule(nil), s.rules...)
}

// Rule returns the rule with the given name.
func (s *Set) Rule(name string) (*Rule, bool) {
	r, ok := s.byName[name]
	return r, ok
}
