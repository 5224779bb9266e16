package rules

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"
)

// maxFieldBytes bounds the JSON encoding of one extracted field.
const maxFieldBytes = 64 << 10

// fieldName is what an extract name must look like: a name templates can write as .Fields.name
// and receivers as a plain JSON key.
var fieldName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// extractField is one compiled `extract:` entry of a rule.
type extractField struct {
	name    string
	program *vm.Program
}

// compileExtract compiles the rule's extract expressions into r, sorted by name, and adds what
// they read to r.Reads: an extract reading text makes the rule fetch text. It returns one error
// per bad entry, each naming the rule and the field.
func (s *Set) compileExtract(r *Rule, label string, opts []expr.Option) []error {
	var errs []error
	names := make([]string, 0, len(r.Spec.Extract))
	for name := range r.Spec.Extract {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		src := r.Spec.Extract[name]
		switch p, err := expr.Compile(src, opts...); {
		case !fieldName.MatchString(name):
			errs = append(errs, fmt.Errorf("%s: extract.%s: a field name is letters, digits and _, not starting with a digit", label, name))
		case strings.TrimSpace(src) == "":
			errs = append(errs, fmt.Errorf("%s: extract.%s: expression is empty", label, name))
		case err != nil:
			errs = append(errs, fmt.Errorf("%s: extract.%s: %w", label, name, err))
		default:
			if err := s.constantPatterns(p.Node()); err != nil {
				errs = append(errs, fmt.Errorf("%s: extract.%s: %w", label, name, err))
				continue
			}
			r.extract = append(r.extract, extractField{name: name, program: p})
			reads, derived := readsOf(p.Node())
			r.derived = r.derived || derived
			r.Reads = r.Reads.union(reads)
		}
	}
	return errs
}

// ExtractError is the failure of one extract field of one rule on one message: a run-time
// error, a result that is not JSON (a function, say) or larger than 64 KiB of JSON. The field is
// null then and the delivery still goes out.
type ExtractError struct {
	Rule  string
	Field string
	Err   error
}

func (e *ExtractError) Error() string {
	return fmt.Sprintf("rule %q: extract.%s: %v", e.Rule, e.Field, e.Err)
}

func (e *ExtractError) Unwrap() error { return e.Err }

// Defect is the defect the message gets: "extract_failed:" and the field's name.
func (e *ExtractError) Defect() string { return "extract_failed:" + e.Field }

// Extract evaluates the extract fields of r, a rule that matched env, and returns them by name:
// strings, json.Number, booleans, nil, []any and map[string]any, as the JSON of the payload's
// `fields` carries them (strings valid UTF-8). A field that fails is nil and has its error in
// errs. A rule without extract gives a nil map. Extract is safe for concurrent use.
func (s *Set) Extract(r *Rule, env *Env) (fields map[string]any, errs []*ExtractError) {
	if len(r.extract) == 0 || env == nil {
		return nil, nil
	}
	if r.derived {
		env.Understand()
	}
	m := s.vms.Get().(*vm.VM)
	defer s.vms.Put(m)
	fields = make(map[string]any, len(r.extract))
	for _, f := range r.extract {
		v, err := extractValue(m, f.program, env)
		if err != nil {
			errs = append(errs, &ExtractError{Rule: r.Name, Field: f.name, Err: err})
		}
		fields[f.name] = v
	}
	return fields, errs
}

// extractValue runs program on env and returns its result as it reads back from JSON.
func extractValue(m *vm.VM, program *vm.Program, env *Env) (any, error) {
	out, err := m.Run(program, env)
	if err != nil {
		return nil, err
	}
	switch v := out.(type) {
	case nil, bool, int:
		return v, nil // already what JSON carries
	case string:
		// A string of n bytes is at most 6n+2 bytes of JSON.
		if len(v) <= (maxFieldBytes-2)/6 && utf8.ValidString(v) && strings.IndexByte(v, 0) < 0 {
			return v, nil
		}
	}
	raw, err := json.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("result of type %T is not JSON: %w", out, err)
	}
	if len(raw) > maxFieldBytes {
		return nil, fmt.Errorf("result is %d bytes of JSON, more than the limit of %d", len(raw), maxFieldBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("result does not read back from JSON: %w", err)
	}
	return v, nil
}
