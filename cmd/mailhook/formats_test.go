package main

import (
	"strings"
	"testing"

	"github.com/mailhook/mailhook/dispatch"
)

// The GitHub format brings its Accept header unless the webhook sets one, and a template's
// content_type becomes the endpoint's Content-Type.
func TestEndpointsFromFormats(t *testing.T) {
	yaml := strings.Replace(cfgMinimalYAML, "    secret: "+cfgSecret, "    secret: "+cfgSecret+`
    format: github
    headers: [{name: Authorization, value: "Bearer x"}]
  - name: gh2
    url: https://api.github.com/repos/o/r/dispatches
    secret: `+cfgSecret+`
    format: github
    headers: [{name: accept, value: application/json}]
  - name: text
    url: https://hooks.example.com/text
    secret: `+cfgSecret+`
    format: template
    content_type: text/plain
    template: "{{ .Subject }}"`, 1)
	cfg, _, err := cfgLoad(t, yaml, nil)
	if err != nil {
		t.Fatal(err)
	}
	eps, err := cfg.Endpoints()
	if err != nil {
		t.Fatal(err)
	}
	headers := func(ep dispatch.Endpoint) string {
		var b strings.Builder
		for _, h := range ep.Headers {
			b.WriteString(h.Name + "=" + h.Value + ";")
		}
		return b.String()
	}
	if got := headers(eps[0]); got != "Authorization=Bearer x;Accept=application/vnd.github+json;" {
		t.Errorf("github headers %q", got)
	}
	if got := headers(eps[1]); got != "accept=application/json;" {
		t.Errorf("github with its own Accept: headers %q", got)
	}
	if eps[0].ContentType != "application/json" || eps[2].ContentType != "text/plain" {
		t.Errorf("content types %q, %q", eps[0].ContentType, eps[2].ContentType)
	}
}
