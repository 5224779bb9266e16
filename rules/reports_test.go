package rules

import (
	"strings"
	"testing"

	"github.com/mailhook/mailhook/internal/fixture"
	"github.com/mailhook/mailhook/message"
)

// Rules read bounce, complaint and calendar by the names of the payload, nil-safe with ?.; what
// they read is in Reads, so the watcher fetches those parts for them only.
func TestReportsEnv(t *testing.T) {
	set, err := Compile([]Spec{
		{Name: "hard", When: `bounce?.kind == "hard" && any(bounce.recipients, .status startsWith "5.1")`, Actions: []Action{{MarkSeen: true}}},
		{Name: "spam", When: `complaint?.feedback_type == "abuse" && complaint.reported_domain == "shop.example.com"`, Actions: []Action{{MarkSeen: true}}},
		{Name: "invite", When: `calendar?.method == "REQUEST" && calendar.start startsWith "2026-12-10"`, Actions: []Action{{MarkSeen: true}}},
		{Name: "plain", When: `subject != ""`, Actions: []Action{{MarkSeen: true}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]string{
		"bounce-postfix.eml": "hard", "arf-complaint.eml": "spam", "invite-google.eml": "invite", "plain.eml": "plain",
	} {
		m := fixture.Message(t, file)
		matched, errs := set.Match(NewEnv("a", "INBOX", 1, m, ""))
		if len(matched) == 0 || matched[0].Spec.Name != want || len(errs) > 0 {
			var names []string
			for _, r := range matched {
				names = append(names, r.Spec.Name)
			}
			t.Errorf("%s: matched %v (errors %v), want %s first", file, names, errs, want)
		}
	}
	reads := map[string]Reads{}
	for _, r := range set.Rules() {
		reads[r.Spec.Name] = r.Reads
	}
	if !reads["hard"].Reports || reads["hard"].Calendar || reads["hard"].Text ||
		!reads["spam"].Reports || !reads["invite"].Calendar || reads["invite"].Reports ||
		reads["plain"] != (Reads{}) {
		t.Errorf("reads %+v", reads)
	}
	if u := set.Reads("a", "INBOX"); !u.Reports || !u.Calendar || u.Text || u.HTML {
		t.Errorf("union %+v", u)
	}
	// extract expressions count too.
	set, err = Compile([]Spec{{Name: "x", When: "true", Actions: []Action{{MarkSeen: true}},
		Extract: map[string]string{"who": `bounce?.recipients?.[0]?.address ?? ""`}}})
	if err != nil {
		t.Fatal(err)
	}
	if !set.Rules()[0].Reads.Reports {
		t.Error("an extract reading bounce does not count")
	}
}

func TestReportsTypeChecked(t *testing.T) {
	_, err := Compile([]Spec{{Name: "x", When: `bounce.kindd == "hard"`, Actions: []Action{{MarkSeen: true}}}})
	if err == nil || !strings.Contains(err.Error(), "kindd") {
		t.Errorf("a misspelt bounce field: %v", err)
	}
}

// bounce, complaint and calendar are nil for most messages: reading their fields is false, 0 or
// empty then, never a failed rule.
func TestReportsNilSafe(t *testing.T) {
	b := fixture.Message(t, "bounce-postfix.eml")
	c := fixture.Message(t, "invite-google.eml")
	for _, tc := range []struct {
		when               string
		none, bounce, call bool
	}{
		{`bounce != nil && bounce.kind == "hard"`, false, true, false},
		{`bounce.kind == "hard"`, false, true, false},
		{`bounce?.kind == "hard"`, false, true, false},
		{`bounce == nil`, true, false, true},
		{`len(bounce.recipients) == 0`, true, false, true},
		{`any(bounce.recipients, .status startsWith "5")`, false, true, false},
		{`bounce.recipients[0].address endsWith "example.org"`, false, true, false},
		{`complaint.feedback_type == ""`, true, true, true},
		{`calendar.start > "2026"`, false, false, true},
		{`calendar.organizer.address endsWith "@example.com"`, false, false, true},
		{`calendar?.organizer?.name == "Anna Schmidt"`, false, false, true},
		{`not calendar.all_day`, true, true, true},
	} {
		set, err := Compile([]Spec{{Name: "r", When: tc.when, Actions: []Action{{MarkSeen: true}}}})
		if err != nil {
			t.Fatalf("%s: %v", tc.when, err)
		}
		for i, m := range []*message.Message{nil, b, c} {
			matched, errs := set.Match(NewEnv("a", "INBOX", 1, m, ""))
			if want := []bool{tc.none, tc.bounce, tc.call}[i]; len(matched) == 1 != want || len(errs) > 0 {
				t.Errorf("%s on message %d: matched %v errors %v, want %v", tc.when, i, len(matched) == 1, errs, want)
			}
		}
	}
}
