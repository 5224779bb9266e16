package rules

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/mailhook/mailhook/message"
)

// fuzzRules are realistic rules, plus re() with patterns taken from the message itself, so the
// fuzzer steers both the data and the patterns.
var fuzzRules = []Spec{
	{Name: "ci", When: `from.address endsWith "@github.com" && auth.dmarc == "pass" && subject contains "failed"`},
	{Name: "invoice", When: `subject matches "(?i)invoice|rechnung" && any(attachments, .content_type == "application/pdf" || lower(.filename) endsWith ".pdf")`},
	{Name: "domain", When: `domain(from.address) in ["example.com", "github.com"] || any(to, domain(.address) == "example.org")`},
	{Name: "text", When: `text contains "error" || html contains "<b>" || len(split(text, "\n")) > 3`},
	{Name: "headers", When: `header("X-Priority") == "1" || len(headers("Received")) > 5 || list_id != ""`},
	{Name: "automated", When: `automated && !("fetch_failed" in defects) && size > 0`},
	{Name: "re-subject", When: `re(header("X-Pattern"), subject)`},
	{Name: "re-built", When: `re("^\\[" + header("X-Project") + "\\]", subject)`},
	{Name: "dynamic-matches", When: `text matches subject`},
	{Name: "date", When: `date.Year() > 2000 && date.Before(now())`},
	{Name: "auth", When: `auth.spf == "pass" || auth.dkim == "fail" || sender.address == from.address`},
	{Name: "filter", When: `len(filter(attachments, .size > 1000)) >= 1 && all(cc, .name != "")`},
	{Name: "stop", When: `message_id == "" || uid == 0`, Stop: true},
}

func FuzzMatch(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("..", "message", "testdata", "*.eml"))
	for _, file := range files {
		if b, err := os.ReadFile(file); err == nil {
			f.Add(b, "personal")
		}
	}
	f.Add([]byte("From: a@github.com\r\nSubject: [x] failed\r\nX-Pattern: (a+)+$\r\nX-Project: x\r\n\r\nerror\n"), "work")
	f.Add([]byte("Subject: ((((\r\nX-Pattern: [\r\n\r\n\\"), "")
	f.Add([]byte("Subject: "+strings.Repeat("a", 5000)+"\r\nX-Pattern: "+strings.Repeat("a*", 3000)+"\r\n\r\n"), "personal")
	s, err := Compile(fuzzRules)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw []byte, account string) {
		m, err := message.Parse(bytes.NewReader(raw), message.Limits{TextBytes: 4096})
		if err != nil {
			t.Fatal(err)
		}
		env := NewEnv(account, "INBOX", 7, m, "mx.google.com")
		matched, errs := s.Match(env)
		for _, err := range errs {
			if err == nil || !strings.HasPrefix(err.Error(), "rules[") || !utf8.ValidString(err.Error()) {
				t.Fatalf("error %v does not name its rule", err)
			}
		}
		ex := s.Explain(env)
		if len(ex) != len(fuzzRules) {
			t.Fatalf("%d explanations", len(ex))
		}
		var fired []*Rule
		for i, e := range ex {
			if e.Rule != s.rules[i] || (e.Fires && !e.Matched) || (e.Matched && e.Err != nil) {
				t.Fatalf("inconsistent explanation %+v", e)
			}
			if e.Fires {
				fired = append(fired, e.Rule)
			}
			if !e.Matched && e.Skipped == "" && e.Err == nil && e.FalseClause == "" {
				t.Fatalf("%s: no false clause for a non-match", e.Rule.Name)
			}
		}
		if names(fired) != names(matched) {
			t.Fatalf("Explain fires %s, Match returns %s", names(fired), names(matched))
		}
		for i, r := range matched {
			if r.Stop && i != len(matched)-1 {
				t.Fatalf("matched after stop: %s", names(matched))
			}
		}
	})
}
