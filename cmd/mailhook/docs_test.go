package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/mailhook/mailhook/config"
)

// The README and the docs/ pages are what people copy from, so their examples are tested: every
// YAML block loads as a configuration (a fragment completed with stub accounts, webhooks and rules
// for the names it refers to but does not define), and every mailhook command line they show
// names a verb mailhook has. The rule expressions are compiled by rules/docs_test.go; the Gmail
// quick start passes `check` as printed (cli_test.go).

// docPages returns the README and every docs/ page, by path.
func docPages(t *testing.T) map[string]string {
	t.Helper()
	paths, err := filepath.Glob("../../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) < 8 {
		t.Fatalf("only %d docs pages", len(paths))
	}
	pages := map[string]string{}
	for _, p := range append(paths, "../../README.md") {
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		pages[strings.TrimPrefix(p, "../../")] = string(raw)
	}
	return pages
}

// fencedBlocks returns the bodies of the page's code blocks in the given language ("" for blocks
// with none), unindented by their fence's indentation.
func fencedBlocks(page, lang string) []string {
	var blocks []string
	var b strings.Builder
	inBlock, keep, indent := false, false, ""
	for line := range strings.Lines(page) {
		trimmed := strings.TrimLeft(line, " ")
		switch {
		case !strings.HasPrefix(trimmed, "```"):
			if inBlock && keep {
				b.WriteString(strings.TrimPrefix(line, indent))
			}
		case inBlock: // the closing fence
			if keep {
				blocks = append(blocks, b.String())
			}
			inBlock = false
		default: // an opening fence
			inBlock, keep = true, strings.TrimSpace(strings.TrimPrefix(trimmed, "```")) == lang
			indent = line[:len(line)-len(trimmed)]
			b.Reset()
		}
	}
	return blocks
}

func TestDocsYAMLExamplesLoad(t *testing.T) {
	var n int
	for path, page := range docPages(t) {
		for i, block := range fencedBlocks(page, "yaml") {
			n++
			t.Run(fmt.Sprintf("%s#%d", path, i), func(t *testing.T) {
				cfg := completeExample(t, block)
				if _, _, err := config.Load(cfg, config.Options{Getenv: docsEnv}); err != nil {
					raw, _ := os.ReadFile(cfg)
					t.Errorf("does not load:\n%v\nexample:\n%s\ncompleted:\n%s", err, block, raw)
				}
			})
		}
	}
	if n < 7 {
		t.Errorf("only %d yaml examples in the docs", n)
	}
}

// docsEnv gives every ${NAME} of the examples a value of the right shape.
func docsEnv(name string) (string, bool) {
	switch {
	case strings.HasSuffix(name, "_URL"):
		return "https://hooks.example.com/" + strings.ToLower(name), true
	case strings.Contains(name, "WEBHOOK_SECRET"):
		return testSecret, true
	}
	return "value-of-" + name, true
}

// completeExample writes the example, completed into a whole configuration, and returns its path.
func completeExample(t *testing.T, block string) string {
	t.Helper()
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(block), &doc); err != nil {
		t.Fatalf("not YAML: %v\n%s", err, block)
	}
	dir := t.TempDir()
	doc["state_dir"] = filepath.Join(dir, "state")
	list := func(key string) []any { l, _ := doc[key].([]any); return l }
	names := func(key string) []string {
		var out []string
		for _, e := range list(key) {
			if m, ok := e.(map[string]any); ok {
				out = append(out, fmt.Sprint(m["name"]))
			}
		}
		return out
	}
	// The names the rules refer to.
	var accounts, webhooks, replies []string
	for _, r := range list("rules") {
		rule := r.(map[string]any)
		if a, ok := rule["account"].(string); ok {
			accounts = append(accounts, a)
		}
		actions, _ := rule["actions"].([]any)
		for _, a := range actions {
			action := a.(map[string]any)
			if w, ok := action["webhook"].(string); ok {
				webhooks = append(webhooks, w)
			}
			if r, ok := action["reply"].(string); ok {
				replies = append(replies, r)
			}
		}
	}
	if len(list("accounts")) == 0 {
		accounts = append(accounts, "personal")
	}
	for _, a := range accounts {
		if !slices.Contains(names("accounts"), a) {
			doc["accounts"] = append(list("accounts"), map[string]any{"name": a,
				"imap": map[string]any{"host": "imap.gmail.com", "username": a + "@gmail.com", "password": "${IMAP_PASSWORD}"},
				"smtp": map[string]any{"host": "smtp.gmail.com", "username": a + "@gmail.com", "password": "${IMAP_PASSWORD}", "from": a + "@gmail.com"},
			})
		}
	}
	for _, w := range webhooks {
		if !slices.Contains(names("webhooks"), w) {
			doc["webhooks"] = append(list("webhooks"), map[string]any{"name": w,
				"url": "https://hooks.example.com/" + w, "secrets": []any{"${MAILHOOK_WEBHOOK_SECRET}"}})
		}
	}
	for _, r := range replies {
		if !slices.Contains(names("replies"), r) {
			doc["replies"] = append(list("replies"), map[string]any{"name": r, "subject": "Re: {{ .Subject }}", "body": "Thanks."})
		}
	}
	if len(list("rules")) == 0 {
		var actions []any
		for _, w := range names("webhooks") {
			actions = append(actions, map[string]any{"webhook": w})
		}
		if len(actions) == 0 {
			doc["webhooks"] = []any{map[string]any{"name": "stub", "url": "https://hooks.example.com/stub",
				"secrets": []any{"${MAILHOOK_WEBHOOK_SECRET}"}}}
			actions = []any{map[string]any{"webhook": "stub"}}
		}
		doc["rules"] = []any{map[string]any{"name": "stub", "when": "true", "actions": actions}}
	}
	// Files the example names (a refresh token in /run/secrets, …) exist with stand-in contents.
	var files int
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				if _, ok := e.(string); ok && strings.HasSuffix(k, "_file") {
					files++
					p := filepath.Join(dir, fmt.Sprintf("file%d", files))
					if err := os.WriteFile(p, []byte("stand-in-"+k), 0o600); err != nil {
						t.Fatal(err)
					}
					v[k] = p
					continue
				}
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	walk(doc)
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Every `mailhook VERB` the docs show in a shell block is a verb mailhook knows.
func TestDocsCommandsNameRealVerbs(t *testing.T) {
	verbs := []string{"run", "check", "healthcheck", "test", "replay", "demo", "status", "outbox",
		"webhooks", "auth", "version", "help"}
	re := regexp.MustCompile(`(?:^|/|-- )mailhook ([a-z-]+)`)
	var n int
	for path, page := range docPages(t) {
		for _, block := range append(fencedBlocks(page, "sh"), fencedBlocks(page, "")...) {
			for line := range strings.Lines(block) {
				line = strings.TrimPrefix(strings.TrimSpace(line), "$ ")
				if strings.HasPrefix(line, "go ") || strings.HasPrefix(line, "install ") || strings.HasPrefix(line, "#") {
					continue
				}
				for _, m := range re.FindAllStringSubmatch(line, -1) {
					n++
					if !slices.Contains(verbs, m[1]) {
						t.Errorf("%s: %q: no verb %q", path, line, m[1])
					}
				}
			}
		}
	}
	if n < 20 {
		t.Errorf("only %d mailhook command lines in the docs", n)
	}
}

// The docker run lines of the README and docs/operations.md pass every secret the Gmail quick
// start's config names, and the systemd instructions write each into credentials.env.
func TestDocsDeployPassEverySecret(t *testing.T) {
	pages := docPages(t)
	_, rest, _ := strings.Cut(pages["README.md"], "## Gmail quick start")
	blocks := fencedBlocks(rest, "yaml")
	if len(blocks) == 0 {
		t.Fatal("no yaml block under the Gmail quick start")
	}
	names := regexp.MustCompile(`\$\{([A-Z0-9_]+)\}`).FindAllStringSubmatch(blocks[0], -1)
	if len(names) < 2 {
		t.Fatalf("the quick start names %d secrets", len(names))
	}
	var runs int
	for path, page := range pages {
		for _, block := range fencedBlocks(page, "sh") {
			command := strings.ReplaceAll(block, "\\\n", " ")
			for line := range strings.Lines(command) {
				var want func(name string) string
				switch {
				case strings.HasPrefix(line, "docker run "):
					want = func(name string) string { return " -e " + name + " " }
				case strings.HasPrefix(line, "printf ") && strings.Contains(block, "credentials.env"):
					want = func(name string) string { return name + "=%s" }
				default:
					continue
				}
				runs++
				for _, n := range names {
					if !strings.Contains(line, want(n[1])) {
						t.Errorf("%s: %q does not pass %s", path, strings.TrimSpace(line), n[1])
					}
				}
			}
		}
	}
	if runs < 3 {
		t.Errorf("found %d docker run / credentials lines, want the README's, operations.md's and the systemd one", runs)
	}
}

// The README keeps its two commands, and every relative link of the README and docs/ pages names
// a file that exists and, for a page#anchor, a heading of that page.
func TestDocsLinks(t *testing.T) {
	pages := docPages(t)
	for _, want := range []string{"go run ./cmd/mailhook demo", "go test -race ./..."} {
		if !strings.Contains(pages["README.md"], "\n"+want+" ") {
			t.Errorf("the README lost %q", want)
		}
	}
	anchors := func(page string) []string {
		var out []string
		for line := range strings.Lines(page) {
			if h, ok := strings.CutPrefix(line, "#"); ok && !strings.HasPrefix(strings.TrimLeft(line, "#"), "!") {
				h = strings.ToLower(strings.TrimSpace(strings.TrimLeft(h, "#")))
				h = regexp.MustCompile(`[^\p{L}\p{N} _-]`).ReplaceAllString(h, "")
				out = append(out, strings.ReplaceAll(h, " ", "-"))
			}
		}
		return out
	}
	link := regexp.MustCompile(`\]\(([^)\s]+)\)`)
	var n int
	for path, page := range pages {
		for _, m := range link.FindAllStringSubmatch(page, -1) {
			target := m[1]
			if strings.Contains(target, "://") {
				continue
			}
			n++
			file, anchor, _ := strings.Cut(target, "#")
			resolved := path
			if file != "" {
				resolved = filepath.Clean(filepath.Join(filepath.Dir(path), file))
				if _, err := os.Stat(filepath.Join("../..", resolved)); err != nil {
					t.Errorf("%s: link %s: %v", path, target, err)
					continue
				}
			}
			if anchor != "" && !slices.Contains(anchors(pages[resolved]), anchor) {
				t.Errorf("%s: link %s: no heading with that anchor in %s", path, target, resolved)
			}
		}
	}
	if n < 20 {
		t.Errorf("only %d relative links", n)
	}
}
