package main

import (
	"context"
	"os"
	"os/exec"
	"slices"
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
				strings.HasSuffix(dep, "/internal/testmail") || strings.HasSuffix(dep, "/internal/fixture") {
				t.Errorf("CGO_ENABLED=%s: the binary depends on %s", cgo, dep)
			}
		}
	}
}

// Dependencies point one way (ARCHITECTURE.md, "Packages"): each package below may import only
// the project packages listed for it, so the graph stays a straight line — libraries never import
// config or cmd, the outbox never knows its workers, the watcher never knows the pipeline, and
// nothing but cmd/mailhook (and its tests) names a store backend.
func TestImportsPointOneWay(t *testing.T) {
	allowed := map[string][]string{
		"config":             {"dispatch", "internal/localhost", "oauth", "outbox", "payload", "reply", "rules", "watcher"},
		"dispatch":           {"internal/failpoint", "internal/localhost", "outbox", "payload", "spool", "store"},
		"internal/demo":      nil,
		"internal/fixture":   {"message"},
		"internal/localhost": nil,
		"internal/ops":       {"dispatch", "reply", "store", "watcher"},
		"message":            nil,
		"oauth":              {"internal/localhost"},
		"outbox":             {"store"},
		"payload":            {"message"},
		"pipeline":           {"message", "payload", "reply", "rules", "spool", "store", "watcher"},
		"reply":              {"internal/localhost", "message", "outbox", "store"},
		"rules":              {"message"},
		"spool":              {"store"},
		"store":              nil,
		"store/sqlite":       {"store"},
		"store/postgres":     {"store"},
		"store/storetest":    {"store"},
		"watcher":            {"internal/failpoint", "internal/localhost", "message", "outbox", "spool", "store"},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", "../../...")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	const mod = "github.com/mailhook/mailhook/"
	for line := range strings.Lines(string(out)) {
		fields := strings.Fields(line)
		pkg, ok := strings.CutPrefix(fields[0], mod)
		if !ok || pkg == "cmd/mailhook" || strings.HasPrefix(pkg, "internal/testmail") || pkg == "internal/failpoint" {
			continue
		}
		may, known := allowed[pkg]
		if !known {
			t.Errorf("package %s is not in this test's table: add it, with what it may import", pkg)
			continue
		}
		for _, imp := range fields[1:] {
			dep, ours := strings.CutPrefix(imp, mod)
			if ours && !slices.Contains(may, dep) {
				t.Errorf("%s imports %s, which it must not (allowed: %v)", pkg, dep, may)
			}
		}
	}
}
