package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A header value from value_file and a template from template_file are read as they are (one
// trailing newline dropped from the value, ${…} never expanded), and disable_after defaults to 5
// days.
func TestLoadConfigFormatFiles(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("Bearer tok-${NOT_EXPANDED}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tplFile := filepath.Join(dir, "body.tmpl")
	tpl := `{"text": {{ json .Subject }}, "raw": "${NOT_EXPANDED}"}`
	if err := os.WriteFile(tplFile, []byte(tpl), 0o600); err != nil {
		t.Fatal(err)
	}
	yaml := strings.Replace(cfgMinimalYAML, "    secret: "+cfgSecret, "    secret: "+cfgSecret+`
    format: template
    template_file: `+tplFile+`
    headers: [{name: Authorization, value_file: `+tokenFile+`}]`, 1)
	cfg, _, err := cfgLoad(t, yaml, map[string]string{"NOT_EXPANDED": "boom"})
	if err != nil {
		t.Fatal(err)
	}
	w := cfg.Webhooks[0]
	if w.Headers[0].Value != "Bearer tok-${NOT_EXPANDED}" {
		t.Errorf("header value %q", w.Headers[0].Value)
	}
	if w.Template != tpl {
		t.Errorf("template %q", w.Template)
	}
	if w.DisableAfter != 120*time.Hour {
		t.Errorf("disable_after %v, want 120h", w.DisableAfter)
	}
}

func TestLoadConfigFormatErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.tmpl")
	if err := os.WriteFile(bad, []byte(`subject: {{ .Subject }}`), 0o600); err != nil {
		t.Fatal(err)
	}
	absent := filepath.Join(dir, "absent")
	for _, tc := range []struct{ name, extra, want string }{
		{"template file not JSON", "format: template\n    template_file: " + bad, `webhooks[0] "hook".template_file: on a sample message`},
		{"template and file", "format: template\n    template: '{}'\n    template_file: " + bad, `template_file: set both template and template_file`},
		{"missing value file", "headers: [{name: X-Token, value_file: " + absent + "}]", `webhooks[0] "hook".headers[0].value_file: open`},
		{"value and value file", "headers: [{name: X-Token, value: a, value_file: " + bad + "}]", `headers[0].value_file: set both value and value_file`},
		{"slack with content_type", "format: slack\n    content_type: text/plain", `webhooks[0] "hook".content_type: applies only to format: template`},
		{"disable_after without unit", "disable_after: 5", `disable_after`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			yaml := strings.Replace(cfgMinimalYAML, "    secret: "+cfgSecret, "    secret: "+cfgSecret+"\n    "+tc.extra, 1)
			_, _, err := cfgLoad(t, yaml, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}
