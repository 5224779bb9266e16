package rules

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/expr-lang/expr/file"
	"github.com/mailhook/mailhook/message"
)

func names(rs []*Rule) string {
	var n []string
	for _, r := range rs {
		n = append(n, r.Name)
	}
	return strings.Join(n, ",")
}

func TestMatchFiltersAndStop(t *testing.T) {
	s, err := Compile([]Spec{
		{Name: "any-github", When: `domain(from.address) == "github.com"`},
		{Name: "never", When: `false`},
		{Name: "work-only", Account: "work", When: `true`},
		{Name: "archive-only", Mailbox: "Archive", When: `true`},
		{Name: "personal-inbox", Account: "personal", Mailbox: "INBOX", When: `true`},
		{Name: "stop-if-ci", When: `subject contains "CI"`, Stop: true},
		{Name: "after-stop", When: `true`},
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		account, mailbox, subject string
		want                      string
	}{
		{"personal", "INBOX", "CI failed", "any-github,personal-inbox,stop-if-ci"},
		{"personal", "INBOX", "hello", "any-github,personal-inbox,after-stop"},
		{"personal", "inbox", "hello", "any-github,personal-inbox,after-stop"},
		{"work", "INBOX", "CI failed", "any-github,work-only,stop-if-ci"},
		{"work", "Archive", "hello", "any-github,work-only,archive-only,after-stop"},
		{"personal", "archive", "hello", "any-github,after-stop"},
	}
	for _, tc := range tests {
		m := testMessage()
		m.Subject = tc.subject
		got, errs := s.Match(NewEnv(tc.account, tc.mailbox, 1, m, trusted))
		if len(errs) > 0 {
			t.Errorf("%s/%s: errors %v", tc.account, tc.mailbox, errs)
		}
		if names(got) != tc.want {
			t.Errorf("%s/%s %q matched %q; want %q", tc.account, tc.mailbox, tc.subject, names(got), tc.want)
		}
	}
}

func TestMatchStopOnlyWhenMatched(t *testing.T) {
	s, err := Compile([]Spec{
		{Name: "stop-unmatched", When: `false`, Stop: true},
		{Name: "stop-elsewhere", Account: "other", When: `true`, Stop: true},
		{Name: "reached", When: `true`},
	})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := s.Match(testEnv())
	if names(got) != "reached" {
		t.Errorf("matched %q; want %q", names(got), "reached")
	}
}

func TestMatchRuntimeError(t *testing.T) {
	s, err := Compile([]Spec{
		{Name: "before", When: `true`},
		{Name: "index", When: `to[5].name == ""`, Stop: true},
		{Name: "budget", When: `len(map(1..2000000, #)) > 0`, Stop: true},
		{Name: "bad-dynamic-re", When: `re("(" + subject, "x")`, Stop: true},
		{Name: "after", When: `true`},
	})
	if err != nil {
		t.Fatal(err)
	}
	got, errs := s.Match(testEnv())
	if names(got) != "before,after" {
		t.Errorf("matched %q; want %q", names(got), "before,after")
	}
	want := []string{
		`rules[1] "index": when: index out of range`,
		`rules[2] "budget": when: memory budget exceeded`,
		`rules[3] "bad-dynamic-re": when: re: error parsing regexp`,
	}
	if len(errs) != len(want) {
		t.Fatalf("errors %v; want %d", errs, len(want))
	}
	for i, w := range want {
		if !strings.HasPrefix(errs[i].Error(), w) {
			t.Errorf("error %d = %q; want prefix %q", i, errs[i], w)
		}
		var fe *file.Error
		if !errors.As(errs[i], &fe) || fe.Snippet == "" {
			t.Errorf("error %d carries no position: %v", i, errs[i])
		}
	}
	// The pooled VM that failed must evaluate the next message normally; "index" now matches
	// and stops before the failing rules.
	got, errs = s.Match(NewEnv("a", "INBOX", 2, &message.Message{Subject: "x", To: make([]message.Address, 6)}, ""))
	if len(errs) != 0 || names(got) != "before,index" {
		t.Errorf("second message: matched %q, errors %v; want before,index and no errors", names(got), errs)
	}
}

func TestMatchNilEnv(t *testing.T) {
	s, err := Compile([]Spec{{Name: "a", When: "true"}})
	if err != nil {
		t.Fatal(err)
	}
	if got, errs := s.Match(nil); got != nil || errs != nil {
		t.Errorf("Match(nil) = %v, %v", got, errs)
	}
}

// TestMatchConcurrent runs one Set from many goroutines over different messages; run with -race.
func TestMatchConcurrent(t *testing.T) {
	s, err := Compile([]Spec{
		{Name: "even", When: `uid % 2 == 0 && re("^msg-" + string(uid % 7) + "$", subject)`},
		{Name: "closure", When: `any(to, domain(.address) == "example.com") && subject matches ("msg-" + string(uid % 7))`},
		{Name: "error", When: `uid % 3 == 0 && to[9].name == ""`},
	})
	if err != nil {
		t.Fatal(err)
	}
	const workers, perWorker = 8, 200
	var wg sync.WaitGroup
	failures := make(chan string, workers*perWorker)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWorker {
				uid := uint32(w*perWorker + i)
				m := &message.Message{
					Subject: fmt.Sprintf("msg-%d", uid%7),
					To:      []message.Address{{Address: "x@example.com"}},
				}
				got, errs := s.Match(NewEnv("a", "INBOX", uid, m, ""))
				want := "closure"
				if uid%2 == 0 {
					want = "even,closure"
				}
				wantErrs := 0
				if uid%3 == 0 {
					wantErrs = 1
				}
				if names(got) != want || len(errs) != wantErrs {
					failures <- fmt.Sprintf("uid %d: matched %q, errors %v; want %q, %d errors", uid, names(got), errs, want, wantErrs)
				}
			}
		}()
	}
	wg.Wait()
	close(failures)
	for f := range failures {
		t.Error(f)
	}
	if n := s.re.len(); n != 14 {
		t.Errorf("re cache holds %d patterns; want the 14 distinct ones", n)
	}
}

func TestRules(t *testing.T) {
	specs := []Spec{
		{Name: "a", When: "true", Actions: []Action{{Webhook: "ci"}, {MarkSeen: true}}},
		{Name: "b", Account: "x", Mailbox: "Y", When: "text != ''", Stop: true},
	}
	s, err := Compile(specs)
	if err != nil {
		t.Fatal(err)
	}
	rs := s.Rules()
	if len(rs) != 2 || rs[0].Name != "a" || rs[1].Index != 1 || !rs[1].Reads.Text || len(rs[0].Actions) != 2 {
		t.Fatalf("Rules() = %+v", rs)
	}
	rs[0] = nil // a copy: the Set is unchanged
	if s.Rules()[0] == nil {
		t.Error("Rules() returned the Set's own slice")
	}
	if r, ok := s.Rule("b"); !ok || r.Index != 1 || !r.Stop {
		t.Errorf(`Rule("b") = %+v, %v`, r, ok)
	}
	if _, ok := s.Rule("c"); ok {
		t.Error(`Rule("c") found`)
	}
}
