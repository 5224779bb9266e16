package rules

import (
	"errors"
	"strings"
	"testing"

	"github.com/expr-lang/expr/file"
)

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name string
		spec Spec
		// want are substrings of the error, in order.
		want []string
		// position says the error must carry expr's *file.Error with a caret excerpt.
		position bool
	}{
		{
			name:     "type error",
			spec:     Spec{Name: "ci-failures", When: `subject + 1 == "x"`},
			want:     []string{`rules[0] "ci-failures": when: `, "mismatched types string and int", "(1:9)", "\n | subject + 1 == \"x\"\n | ........^"},
			position: true,
		},
		{
			name:     "unknown identifier on line 2",
			spec:     Spec{Name: "typo", When: "from.address == \"x\" &&\n  sujbect contains \"y\""},
			want:     []string{`rules[0] "typo": when: unknown name sujbect (2:3)`, "\n |   sujbect contains \"y\"\n | ..^"},
			position: true,
		},
		{
			name: "not boolean",
			spec: Spec{Name: "size-only", When: `size`},
			want: []string{`rules[0] "size-only": when: expected bool, but got int64`},
		},
		{
			name:     "bad constant regexp",
			spec:     Spec{Name: "re", When: `subject matches "("`},
			want:     []string{`rules[0] "re": when: error parsing regexp`, "(1:9)", "^"},
			position: true,
		},
		{
			name:     "syntax error",
			spec:     Spec{Name: "syntax", When: `subject == `},
			want:     []string{`rules[0] "syntax": when: unexpected token EOF`, "(1:11)"},
			position: true,
		},
		{
			name:     "wrong helper argument",
			spec:     Spec{Name: "helper", When: `domain(size) == "x"`},
			want:     []string{`rules[0] "helper": when: `, "int64", "(1:"},
			position: true,
		},
		{
			name:     "too many nodes",
			spec:     Spec{Name: "huge", When: strings.Repeat("size > 0 && ", maxNodes) + "true"},
			want:     []string{`rules[0] "huge": when: `, "exceeds maximum allowed nodes"},
			position: true,
		},
		{
			name: "empty when",
			spec: Spec{Name: "nothing", When: " \n "},
			want: []string{`rules[0] "nothing": when is empty`},
		},
		{
			name: "empty name",
			spec: Spec{When: "true"},
			want: []string{`rules[0]: name is empty`},
		},
		{
			name: "action with no field",
			spec: Spec{Name: "a", When: "true", Actions: []Action{{Webhook: "ci"}, {}}},
			want: []string{`rules[0] "a": actions[1]: 0 fields set, want exactly one`},
		},
		{
			name: "action with two fields",
			spec: Spec{Name: "a", When: "true", Actions: []Action{{Webhook: "ci", Move: "Done"}}},
			want: []string{`rules[0] "a": actions[0]: 2 fields set, want exactly one`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Compile([]Spec{tc.spec})
			if err == nil {
				t.Fatalf("Compile succeeded; want an error")
			}
			if s != nil {
				t.Errorf("Compile returned a Set with its error")
			}
			msg := err.Error()
			rest := msg
			for _, w := range tc.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("error\n%s\nlacks (in order) %q", msg, w)
				}
				rest = rest[i+len(w):]
			}
			var fe *file.Error
			if got := errors.As(err, &fe); got != tc.position {
				t.Errorf("errors.As(*file.Error) = %v; want %v", got, tc.position)
			} else if got && fe.Snippet == "" {
				t.Errorf("file.Error without a caret excerpt: %v", fe)
			}
		})
	}
}

func TestCompileReportsAllErrors(t *testing.T) {
	specs := []Spec{
		{Name: "ok", When: `true`},
		{Name: "bad-type", When: `subject > 1`},
		{Name: "ok2", When: `automated`},
		{Name: "not-bool", When: `subject`},
		{Name: "ok", When: `false`},
		{Name: "unknown", When: `nope == 1`},
		{Name: "empty", When: ``},
	}
	_, err := Compile(specs)
	if err == nil {
		t.Fatal("Compile succeeded; want errors")
	}
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("error %T does not unwrap to a list", err)
	}
	var got []string
	for _, e := range joined.Unwrap() {
		first, _, _ := strings.Cut(e.Error(), ":")
		got = append(got, first)
	}
	want := []string{`rules[1] "bad-type"`, `rules[3] "not-bool"`, `rules[4] "ok"`, `rules[5] "unknown"`, `rules[6] "empty"`}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("errors name %q; want %q\nfull error:\n%v", got, want, err)
	}
	if !strings.Contains(err.Error(), `rules[4] "ok": name already used by rules[0]`) {
		t.Errorf("duplicate name not reported as such:\n%v", err)
	}
}

func TestCompileEmpty(t *testing.T) {
	s, err := Compile(nil)
	if err != nil {
		t.Fatal(err)
	}
	if m, errs := s.Match(testEnv()); len(m) != 0 || len(errs) != 0 {
		t.Errorf("empty set matched %v, %v", m, errs)
	}
	if r := s.Reads("a", "INBOX"); r != (Reads{}) {
		t.Errorf("empty set reads %+v", r)
	}
}

func TestRuleReads(t *testing.T) {
	tests := []struct {
		when string
		want Reads
	}{
		{`subject == "a"`, Reads{}},
		{`text contains "x"`, Reads{Text: true}},
		{`len(html) > 0`, Reads{HTML: true}},
		{`text contains "x" || html contains "x"`, Reads{Text: true, HTML: true}},
		{`any(attachments, {.filename endsWith ".pdf"}) || text contains "x"`, Reads{Text: true, AttachmentList: true}},
		{`any(attachments, {.filename endsWith ".pdf" && text contains .filename})`, Reads{Text: true, AttachmentList: true}},
		{`any(attachments, .size > 1000 && .content_type == "application/pdf")`, Reads{AttachmentList: true}},
		{`$env.attachments == nil`, Reads{AttachmentList: true}},
		{`bounce.kind == "hard" && $env.complaint == nil`, Reads{Reports: true}},
		{`calendar?.method == "CANCEL"`, Reads{Calendar: true}},
		{`$env.reply_text startsWith "ok" || text == ""`, Reads{Text: true, ReplyText: true}},
		{`let body = html; body != ""`, Reads{HTML: true}},
		{`subject != "" ? false : text == ""`, Reads{Text: true}},
		{`re(text, "x")`, Reads{Text: true}},
		{`subject matches text`, Reads{Text: true}},
		{`header("text") == "html"`, Reads{}},
		{`$env.text == ""`, Reads{Text: true}},
		{`$env["html"] == ""`, Reads{HTML: true}},
		{`$env.subject == ""`, Reads{}},
		// $env used whole could read anything.
		{`toJSON($env) contains "x"`, Reads{Text: true, HTML: true, AttachmentList: true, Reports: true, Calendar: true}},
		{`$env[subject] == ""`, Reads{Text: true, HTML: true, AttachmentList: true, Reports: true, Calendar: true}},
	}
	for _, tc := range tests {
		s, err := Compile([]Spec{{Name: "r", When: tc.when}})
		if err != nil {
			t.Errorf("Compile(%q): %v", tc.when, err)
			continue
		}
		if got := s.Rules()[0].Reads; got != tc.want {
			t.Errorf("Reads of %s = %+v; want %+v", tc.when, got, tc.want)
		}
	}
}

func TestSetReadsFilters(t *testing.T) {
	s, err := Compile([]Spec{
		{Name: "all", When: `subject == "a"`},
		{Name: "work-text", Account: "work", When: `text contains "x"`},
		{Name: "archive-html", Mailbox: "Archive", When: `html contains "x"`},
		{Name: "work-inbox-html", Account: "work", Mailbox: "INBOX", When: `html contains "y"`},
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		account, mailbox string
		want             Reads
	}{
		{"personal", "INBOX", Reads{}},
		{"work", "Sent", Reads{Text: true}},
		{"personal", "Archive", Reads{HTML: true}},
		{"work", "INBOX", Reads{Text: true, HTML: true}},
		{"work", "inbox", Reads{Text: true, HTML: true}}, // INBOX is case-insensitive
		{"personal", "archive", Reads{}},                 // other names are not
	}
	for _, tc := range tests {
		if got := s.Reads(tc.account, tc.mailbox); got != tc.want {
			t.Errorf("Reads(%q, %q) = %+v; want %+v", tc.account, tc.mailbox, got, tc.want)
		}
	}
}

// TestDynamicMatchesRewrite checks that `matches` with a pattern computed at run time goes
// through the Set's cache, and that a constant pattern does not.
func TestDynamicMatchesRewrite(t *testing.T) {
	tests := []struct {
		when      string
		want      bool
		wantCache int
	}{
		{`subject matches "^\\[acme"`, true, 0},
		{`subject matches ("^\\[" + "acme")`, true, 1}, // folded to a constant only after the rewrite
		{`subject matches ("^\\[" + account)`, false, 1},
		{`not (subject matches ("(?i)^\\[ACME/" + "app"))`, false, 1},
		{`"personal" matches account && subject not matches account`, true, 1},
	}
	for _, tc := range tests {
		s, err := Compile([]Spec{{Name: "m", When: tc.when}})
		if err != nil {
			t.Fatalf("Compile(%q): %v", tc.when, err)
		}
		got, errs := s.Match(testEnv())
		if (len(got) == 1) != tc.want || len(errs) != 0 {
			t.Errorf("%s: matched %v, errors %v; want %v", tc.when, got, errs, tc.want)
		}
		if n := s.re.len(); n != tc.wantCache {
			t.Errorf("%s: %d cached patterns; want %d", tc.when, n, tc.wantCache)
		}
	}
}
