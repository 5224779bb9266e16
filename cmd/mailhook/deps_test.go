package main

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// The shipped binary links no test scaffolding: `mailhook demo` serves internal/demo, which must
// not pull in package testing, net/http/httptest or the test harness. Checked for both builds:
// the default one and the container's static one (CGO_ENABLED=0).
func TestBinaryLinksNoTestScaffolding(t *testing.T) {
	for _, cgo := range []string{"1", "0"} {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		cmd := exec.CommandContext(ctx, "go", "list", "-deps", ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED="+cgo)
		out, err := cmd.Output()
		cancel()
		if err != nil {
			t.Fatalf("CGO_ENABLED=%s go list -deps: %v", cgo, err)
		}
		for dep := range strings.FieldsSeq(string(out)) {
			if dep == "testing" || strings.HasPrefix(dep, "testing/") || dep == "net/http/httptest" ||
				strings.HasSuffix(dep, "/internal/testmail") {
				t.Errorf("CGO_ENABLED=%s: the binary depends on %s", cgo, dep)
			}
		}
	}
}
