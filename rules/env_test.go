package rules

import (
	"strings"
	"testing"
	"time"

	"github.com/mailhook/mailhook/message"
)

const trusted = "mx.google.com"

// testMessage is a CI failure notice as the message package would build it.
func testMessage() *message.Message {
	return &message.Message{
		MessageID: "<run-4711@github.com>",
		Subject:   "[acme/app] Run failed: CI - main (abc123)",
		From:      message.Address{Name: "GitHub", Address: "noreply@GitHub.com"},
		Sender:    message.Address{Name: "", Address: "bounces@github.com"},
		To:        []message.Address{{Name: "Dev", Address: "dev@example.com"}, {Address: "ops@example.org"}},
		Cc:        []message.Address{{Name: "Lead", Address: "lead@example.com"}},
		ReplyTo:   []message.Address{{Address: "reply+abc@reply.github.com"}},
		Date:      time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC),
		Size:      48213,
		Flags:     []string{`\Recent`, "$Label1"},
		Headers: []message.Header{
			{Name: "Authentication-Results", Value: "attacker.example; spf=pass smtp.mailfrom=x@evil.example; dkim=pass header.i=@evil.example; dmarc=pass header.from=github.com"},
			{Name: "Authentication-Results", Value: "mx.google.com; dkim=pass header.i=@github.com; spf=softfail smtp.mailfrom=noreply@github.com; dmarc=fail (p=REJECT) header.from=github.com"},
			{Name: "From", Value: "GitHub <noreply@GitHub.com>"},
			{Name: "X-GitHub-Reason", Value: "ci_activity"},
			{Name: "Received", Value: "from a by b"},
			{Name: "Received", Value: "from c by d"},
			{Name: "List-Id", Value: "acme/app <app.acme.github.com>"},
		},
		Text:        "The workflow CI failed on main.\nSee https://github.com/acme/app/actions/runs/4711",
		HTML:        "<p>The workflow <b>CI</b> failed.</p>",
		TextFetched: true, HTMLFetched: true,
		Attachments: []message.Attachment{
			{Filename: "log.txt", ContentType: "text/plain", Size: 1234, Section: "2"},
			{Filename: "report.PDF", ContentType: "application/pdf", Size: 91234, Section: "3"},
		},
		Automated: true,
		ListID:    "acme/app <app.acme.github.com>",
		Defects:   []string{"bad_encoding"},
	}
}

func testEnv() *Env {
	return NewEnv("personal", "INBOX", 4711, testMessage(), trusted)
}

// eval compiles when as the only rule and evaluates it on env.
func eval(t *testing.T, when string, env *Env) (bool, error) {
	t.Helper()
	s, err := Compile([]Spec{{Name: "t", When: when}})
	if err != nil {
		t.Fatalf("Compile(%q): %v", when, err)
	}
	matched, errs := s.Match(env)
	if len(errs) > 0 {
		if len(matched) != 0 {
			t.Fatalf("%q: matched despite error %v", when, errs[0])
		}
		return false, errs[0]
	}
	return len(matched) == 1, nil
}

// TestEnvFields evaluates one expression per field of the environment, each true on testEnv; a
// twin evaluated on an empty message must be false, so no case can pass by accident.
func TestEnvFields(t *testing.T) {
	tests := []struct {
		field, when string
	}{
		{"account", `account == "personal"`},
		{"mailbox", `mailbox == "INBOX"`},
		{"uid", `uid == 4711 && uid > 4000`},
		{"message_id", `message_id == "<run-4711@github.com>"`},
		{"subject", `subject contains "Run failed" && subject startsWith "[acme/app]"`},
		{"from.name", `from.name == "GitHub"`},
		{"from.address", `from.address endsWith "@GitHub.com"`},
		{"sender", `sender.address == "bounces@github.com" && sender.name == ""`},
		{"to", `len(to) == 2 && to[0].name == "Dev" && to[1].address == "ops@example.org"`},
		{"to any", `any(to, .address endsWith "@example.org")`},
		{"cc", `cc[0].address == "lead@example.com"`},
		{"reply_to", `reply_to[0].address startsWith "reply+"`},
		// The field `date` shadows expr's date() builtin: expressions use methods, now() and duration().
		{"date", `date.Year() == 2026 && date.Format("2006-01-02 15:04") == "2026-11-26 10:00"`},
		{"date duration", `!date.IsZero() && date.Add(duration("90m")).Hour() == 11 && now() - date > duration("-87600h")`},
		{"size", `size == 48213 && size > 1000`},
		{"flags", `"$Label1" in flags && "\\Recent" in flags`},
		{"text", `text contains "workflow CI failed"`},
		{"html", `html contains "<b>CI</b>"`},
		{"attachments", `len(attachments) == 2 && attachments[0].filename == "log.txt" && attachments[0].size == 1234`},
		{"attachments closure", `any(attachments, {lower(.filename) endsWith ".pdf" && .content_type == "application/pdf" && .size > 90000})`},
		{"automated", `automated`},
		{"list_id", `list_id contains "<app.acme.github.com>"`},
		{"defects", `"bad_encoding" in defects`},
		{"auth trusted only", `auth.dkim == "pass" && auth.spf == "softfail" && auth.dmarc == "fail"`},
		{"header", `header("x-github-reason") == "ci_activity" && header("X-GITHUB-REASON") == "ci_activity"`},
		{"header first value", `header("Received") == "from a by b"`},
		{"headers", `headers("received") == ["from a by b", "from c by d"]`},
		{"headers count", `len(headers("Authentication-Results")) == 2`},
		{"domain", `domain(from.address) == "github.com"`},
		{"domain in closure", `len(to) > 0 && all(to, domain(.address) in ["example.com", "example.org"])`},
		{"re", `re("^\\[acme/[a-z]+\\]", subject)`},
		{"re dynamic", `re("^" + account + "$", "personal")`},
		{"matches constant", `subject matches "(?i)run FAILED"`},
		{"matches dynamic", `subject matches ("^\\[" + "acme")`},
		{"matches dynamic from field", `"personal@x" matches ("^" + account + "@")`},
		{"builtins", `filter(to, .address contains "example") | len() == 2`},
		{"let", `let d = domain(from.address); d == "github.com" && d != ""`},
	}
	empty := NewEnv("", "", 0, &message.Message{}, trusted)
	for _, tc := range tests {
		t.Run(tc.field, func(t *testing.T) {
			got, err := eval(t, tc.when, testEnv())
			if err != nil || !got {
				t.Errorf("%s on the test message = %v, %v; want true", tc.when, got, err)
			}
			got, _ = eval(t, tc.when, empty)
			if got {
				t.Errorf("%s on an empty message = true; want false", tc.when)
			}
		})
	}
}

func TestNewEnvAuthUntrusted(t *testing.T) {
	for _, id := range []string{"", "other.example"} {
		env := NewEnv("a", "INBOX", 1, testMessage(), id)
		if env.Auth != (message.Auth{}) {
			t.Errorf("trusted id %q: auth = %+v; want all empty", id, env.Auth)
		}
	}
}

func TestNewEnvNilMessage(t *testing.T) {
	env := NewEnv("a", "INBOX", 7, nil, trusted)
	got, err := eval(t, `uid == 7 && header("Subject") == "" && len(headers("x")) == 0 && subject == ""`, env)
	if err != nil || !got {
		t.Fatalf("nil message env: %v, %v; want true", got, err)
	}
}

func TestDomainOf(t *testing.T) {
	tests := []struct{ in, want string }{
		{"a@Example.COM", "example.com"},
		{"  a@example.com  ", "example.com"},
		{"<a@example.com>", "example.com"},
		{"a@example.com.", "example.com"},
		{`"odd@local"@Sub.Example.org`, "sub.example.org"},
		{"no-at-sign", ""},
		{"trailing@", ""},
		{"", ""},
	}
	for _, tc := range tests {
		if got := domainOf(tc.in); got != tc.want {
			t.Errorf("domainOf(%q) = %q; want %q", tc.in, got, tc.want)
		}
	}
}

func TestHelperErrors(t *testing.T) {
	tests := []struct{ when, wantErr string }{
		// A pattern built at run time that does not compile.
		{`re("(" + subject, "x")`, "re: error parsing regexp"},
		{`subject matches ("(" + account)`, "error parsing regexp"},
		{`re(repeat("a", 5000), "a")`, "more than the limit"},
	}
	for _, tc := range tests {
		got, err := eval(t, tc.when, testEnv())
		if got || err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s = %v, %v; want no match and an error containing %q", tc.when, got, err, tc.wantErr)
		}
	}
}
