package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A YAML syntax error points at the line to edit and names the usual cause; unknown keys and bad
// durations say what was probably meant.
func TestErrorsSayWhatToWrite(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"tab", "state_dir: /tmp/x\naccounts:\n  - name: a\n    imap:\n\thost: x\n",
			[]string{"line 5: indented with a tab", "5 | →host: x"}},
		{"flow", "state_dir: /tmp/x\nwebhooks:\n  - name: a\n    secrets: [${X}]\n",
			[]string{`line 4: a ${…} inside [ ] or { } must be quoted: write ["${NAME}"]`}},
		{"indent", "state_dir: /tmp/x\naccounts:\n  - name: a\n    imap:\n      host: x\n     username: y\n",
			[]string{"line 6: indented by 5 spaces", "6 |      username: y"}},
		{"unknown key", strings.Replace(cfgMinimalYAML, "host:", "idle_refersh: 5m\n      host:", 1),
			[]string{`accounts[0].imap.idle_refersh: unknown key; did you mean "idle_refresh"?`}},
		{"duration", strings.Replace(cfgMinimalYAML, "    url: https://hooks.example.com/mail\n", "    url: https://hooks.example.com/mail\n    timeout: 15 seconds\n", 1),
			[]string{`webhooks[0].timeout: "15 seconds" is not a duration: write 15s`}},
	} {
		path := filepath.Join(t.TempDir(), "c.yaml")
		if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		_, _, err := Load(path, Options{Getenv: func(string) (string, bool) { return "x", true }})
		for _, want := range tc.want {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%s: error %v lacks %q", tc.name, err, want)
			}
		}
	}
}
