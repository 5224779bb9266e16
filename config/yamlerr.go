package config

// The YAML parser names a line that is often not the one to edit (a bad indentation is reported
// where its block starts; a ${…} in a flow sequence at the sequence). yamlError looks at the
// file for the usual causes and points at the line the user must edit.

import (
	"fmt"
	"os"
	"regexp"
	"strings"
)

// flowVarRE finds an unquoted ${…} inside a flow sequence or mapping: [${X}] or {a: ${X}}.
var flowVarRE = regexp.MustCompile(`[\[{,]\s*(?:[A-Za-z_]+:\s*)?\$\{`)

// yamlError explains a YAML syntax error in the file at path.
func yamlError(path string, parseErr error) error {
	msg := strings.TrimPrefix(parseErr.Error(), "While parsing config: ")
	raw, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read config: %s", msg)
	}
	line, n, hint := yamlCause(string(raw))
	if hint == "" && strings.Contains(msg, "unmarshal errors") {
		return fmt.Errorf("read config: %s", msg)
	}
	if hint == "" {
		return fmt.Errorf("read config: %s (check that line and the one before it: a tab, a missing space after a colon, or a key indented differently from its siblings)", msg)
	}
	return fmt.Errorf("read config: %s\nline %d: %s\n  %d | %s", msg, n, hint, n, strings.ReplaceAll(line, "\t", "→"))
}

// yamlCause returns the first line showing a usual cause of a YAML syntax error, its number and
// what is wrong, or "" for the hint when it finds none.
func yamlCause(text string) (line string, n int, hint string) {
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		indent := l[:len(l)-len(strings.TrimLeft(l, " \t"))]
		if strings.Contains(indent, "\t") {
			return l, i + 1, "indented with a tab (shown as →): YAML indents with spaces only"
		}
	}
	for i, l := range lines {
		if flowVarRE.MatchString(stripComment(l)) {
			return l, i + 1, `a ${…} inside [ ] or { } must be quoted: write ["${NAME}"]`
		}
	}
	stack := []int{0}
	for i, l := range lines {
		content := strings.TrimLeft(l, " ")
		if content == "" || strings.HasPrefix(content, "#") {
			continue
		}
		indent := len(l) - len(content)
		top := stack[len(stack)-1]
		switch {
		case indent > top:
			stack = append(stack, indent)
		case indent < top:
			for len(stack) > 1 && stack[len(stack)-1] > indent {
				stack = stack[:len(stack)-1]
			}
			if stack[len(stack)-1] != indent {
				return l, i + 1, fmt.Sprintf("indented by %d spaces, which matches no enclosing block: line it up with the key it belongs beside", indent)
			}
		}
		// A "- " item's own keys are indented past the dash.
		if strings.HasPrefix(content, "- ") {
			stack = append(stack, indent+2)
		}
	}
	return "", 0, ""
}

// stripComment drops a trailing # comment (outside quotes, roughly: after a space).
func stripComment(l string) string {
	if i := strings.Index(l, " #"); i >= 0 {
		return l[:i]
	}
	return l
}
