package config

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// FieldError is one problem with one configuration field.
type FieldError struct {
	Field   string // path such as `accounts[0] "personal".imap.port` or `http.listen`
	Problem string // what is wrong; never contains a secret
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Problem }

// problems collects FieldErrors.
type problems []error

func (p *problems) add(field, format string, args ...any) {
	*p = append(*p, &FieldError{Field: field, Problem: fmt.Sprintf(format, args...)})
}

func (p problems) err() error { return errors.Join(p...) }

// ItemPath names the i-th item of a list, with its name when it has one: `webhooks[1] "ci"`.
// Errors about a list item found after loading (compiling a rule, a template) name it the same way.
func ItemPath(list string, i int, name string) string {
	if name == "" {
		return fmt.Sprintf("%s[%d]", list, i)
	}
	return fmt.Sprintf("%s[%d] %q", list, i, name)
}

// oneOf checks that value is one of allowed.
func oneOf(p *problems, field, value string, allowed ...string) bool {
	for _, a := range allowed {
		if value == a {
			return true
		}
	}
	p.add(field, "%q is not one of %s", value, strings.Join(allowed, ", "))
	return false
}

func positive(p *problems, field string, d time.Duration) {
	if d <= 0 {
		p.add(field, "must be positive")
	}
}

func isSpaceOrControl(r rune) bool { return r <= ' ' || r == 0x7f }

// uniqueNames checks that every item of a list has a valid, unique name, and returns the set of
// names.
func uniqueNames(p *problems, list string, n int, name func(int) string) map[string]bool {
	seen := make(map[string]bool, n)
	for i := range n {
		s := name(i)
		switch {
		case s == "":
			p.add(ItemPath(list, i, "")+".name", "required")
		case !validName(s):
			p.add(ItemPath(list, i, s)+".name", "use 1–64 letters, digits and . _ - @ +")
		case seen[s]:
			p.add(ItemPath(list, i, s)+".name", "duplicate name")
		}
		seen[s] = true
	}
	return seen
}

// validName reports whether s is a usable name: names appear in logs, metric labels, job ids and
// CLI arguments.
func validName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("._-@+", c) >= 0) {
			return false
		}
	}
	return true
}
