package rules

import (
	"fmt"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/expr-lang/expr/vm"
)

func benchmarkMatch(b *testing.B, when string, env func(i int) *Env) {
	s, err := Compile([]Spec{{Name: "bench", When: when}})
	if err != nil {
		b.Fatal(err)
	}
	envs := make([]*Env, 64)
	for i := range envs {
		envs[i] = env(i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if m, errs := s.Match(envs[i%len(envs)]); len(m) != 1 || len(errs) != 0 {
			b.Fatalf("matched %v, errors %v", m, errs)
		}
	}
}

func sameEnv(int) *Env { return testEnv() }

func BenchmarkMatchSimple(b *testing.B) {
	benchmarkMatch(b, `subject contains "failed"`, sameEnv)
}

func BenchmarkMatchFiveClauses(b *testing.B) {
	benchmarkMatch(b, `from.address endsWith "@GitHub.com" && auth.dkim == "pass" && subject contains "failed" `+
		`&& any(attachments, .content_type == "application/pdf") && header("X-GitHub-Reason") == "ci_activity"`, sameEnv)
}

// BenchmarkMatchDynamicRe builds its pattern from the message: 16 distinct patterns, all cached.
func BenchmarkMatchDynamicRe(b *testing.B) {
	benchmarkMatch(b, `re("^\\[" + mailbox + "\\] ", subject)`, func(i int) *Env {
		env := testEnv()
		env.Mailbox = fmt.Sprintf("box%d", i%16)
		env.Subject = "[" + env.Mailbox + "] run failed"
		return env
	})
}

// BenchmarkMatchDynamicMatches is the same rule written with the `matches` operator, which
// Compile rewrites to the cached re().
func BenchmarkMatchDynamicMatches(b *testing.B) {
	benchmarkMatch(b, `subject matches ("^\\[" + mailbox + "\\] ")`, func(i int) *Env {
		env := testEnv()
		env.Mailbox = fmt.Sprintf("box%d", i%16)
		env.Subject = "[" + env.Mailbox + "] run failed"
		return env
	})
}

// BenchmarkVM compares the two ways to give each evaluation its own vm.VM: a sync.Pool (what
// Match does) and a new VM per call.
func BenchmarkVM(b *testing.B) {
	s, err := Compile([]Spec{{Name: "bench", When: `subject contains "failed" && any(to, .address endsWith ".org")`}})
	if err != nil {
		b.Fatal(err)
	}
	r, env := s.rules[0], testEnv()
	b.Run("pool", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				m := s.vms.Get().(*vm.VM)
				if ok, err := r.eval(m, env); !ok || err != nil {
					b.Fatal(ok, err)
				}
				s.vms.Put(m)
			}
		})
	})
	b.Run("per-call", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if ok, err := r.eval(&vm.VM{MemoryBudget: memoryBudget}, env); !ok || err != nil {
					b.Fatal(ok, err)
				}
			}
		})
	})
}

func BenchmarkNewEnv(b *testing.B) {
	m := testMessage()
	b.ReportAllocs()
	for b.Loop() {
		NewEnv("personal", "INBOX", 4711, m, trusted)
	}
}

func BenchmarkCompile(b *testing.B) {
	specs := []Spec{{Name: "ci", When: `from.address endsWith "@github.com" && auth.dmarc == "pass" && subject contains "failed"`}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Compile(specs); err != nil {
			b.Fatal(err)
		}
	}
}

// typicalRules are 20 rules of the kinds users write: subject, from and header tests, one
// `matches` and one any(attachments, …). Most do not match testMessage, as most rules do not
// match most mail.
var typicalRules = []string{
	`from.address endsWith "@github.com" && auth.dmarc == "pass" && subject contains "failed"`,
	`subject matches "(?i)\\b(invoice|rechnung|facture)\\b"`,
	`any(attachments, .content_type == "application/pdf")`,
	`domain(from.address) == "github.com" && header("X-GitHub-Reason") == "ci_activity"`,
	`subject startsWith "[acme/app]"`,
	`from.address == "alerts@pagerduty.com"`,
	`list_id contains "announce"`,
	`header("X-Priority") == "1"`,
	`subject contains "password reset"`,
	`from.name == "Jenkins" && subject contains "FAILURE"`,
	`domain(from.address) in ["stripe.com", "paypal.com"]`,
	`any(to, .address == "billing@example.com")`,
	`automated && subject contains "Out of office"`,
	`header("Precedence") == "bulk"`,
	`subject endsWith "(abc123)"`,
	`size > 10000000`,
	`auth.spf == "fail"`,
	`"\\Flagged" in flags`,
	`mailbox == "INBOX" && account == "work"`,
	`len(defects) > 0 && subject contains "urgent"`,
}

// BenchmarkMatchTypical20 evaluates 20 typical rules on one message: the figure the issue bounds
// (≤ 20 µs per message, no allocation per rule beyond expr's own).
func BenchmarkMatchTypical20(b *testing.B) {
	specs := make([]Spec, len(typicalRules))
	for i, w := range typicalRules {
		specs[i] = Spec{Name: fmt.Sprintf("r%d", i), When: w}
	}
	s, err := Compile(specs)
	if err != nil {
		b.Fatal(err)
	}
	env := testEnv()
	if m, errs := s.Match(env); len(m) == 0 || len(errs) != 0 {
		b.Fatalf("matched %v, errors %v", names(m), errs)
	}
	b.ReportAllocs()
	for b.Loop() {
		s.Match(env)
	}
}

// BenchmarkREBound shows what the bounds on run-time patterns cost and save, with the README's
// re("^\\[" + header("X-Project") + "\\]", subject):
//   - honest: a short project name, a short subject;
//   - hostile-refused: 400 bytes of `x*` in X-Project against a 64 KiB subject, refused by the
//     cost bound before any matching;
//   - hostile-unbounded: the same pattern run by regexp directly, what one Match cost before;
//   - worst-admitted: the slowest use the bound admits, a pattern whose every instruction is
//     alive on every byte, with the input as long as maxMatchCost allows.
func BenchmarkREBound(b *testing.B) {
	s, err := Compile([]Spec{readmeProjectRule})
	if err != nil {
		b.Fatal(err)
	}
	hostile := strings.Repeat("x*", 200)
	subject := "[" + strings.Repeat("x", 64<<10) + "]"
	b.Run("honest", func(b *testing.B) {
		env := projectEnv("acme/app", "[acme/app] Run failed: CI - main")
		b.ReportAllocs()
		for b.Loop() {
			if m, errs := s.Match(env); len(m) != 1 || len(errs) != 0 {
				b.Fatal(m, errs)
			}
		}
	})
	b.Run("hostile-refused", func(b *testing.B) {
		env := projectEnv(hostile, subject)
		b.ReportAllocs()
		for b.Loop() {
			if m, errs := s.Match(env); len(m) != 0 || len(errs) != 1 {
				b.Fatal(m, errs)
			}
		}
	})
	b.Run("hostile-unbounded", func(b *testing.B) {
		re := regexp.MustCompile(`^\[` + hostile + `\]`)
		for b.Loop() {
			if !re.MatchString(subject) {
				b.Fatal("no match")
			}
		}
	})
	b.Run("worst-admitted", func(b *testing.B) {
		pattern := `^\[` + hostile + `\]`
		p, err := compilePattern(pattern)
		if err != nil {
			b.Fatal(err)
		}
		input := "[" + strings.Repeat("x", int(maxMatchCost/p.insts)-3) + "]"
		if err := p.check(input, 1); err != nil {
			b.Fatal(err)
		}
		env := projectEnv(hostile, input)
		for b.Loop() {
			if m, errs := s.Match(env); len(m) != 1 || len(errs) != 0 {
				b.Fatal(m, errs)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(p.insts*int64(len(input)+1)), "ns/unit")
	})
}

// BenchmarkRECacheMemory measures the heap cached patterns keep after one use each (program and
// one matcher's state), per estimated instruction and as a fraction of the estimate the cache's
// byte bound counts (heap/estimate below 1: the estimate is pessimistic).
func BenchmarkRECacheMemory(b *testing.B) {
	for _, shape := range []struct {
		name, unit string
		n          int
	}{{"stars", "x*", 1000}, {"classes", `\pL`, 250}, {"literal", "abcd", 1000}, {"folded", "(?i)k", 500}} {
		b.Run(shape.name, func(b *testing.B) {
			var perInst, ratio float64
			for i := 0; b.Loop(); i++ {
				c := newRECache(reCacheSize, reCacheBytes)
				var insts int64
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				for j := range 8 {
					p, err := c.get(fmt.Sprintf("%d%s", j, strings.Repeat(shape.unit, shape.n)))
					if err != nil {
						b.Fatal(err)
					}
					p.re.MatchString(strings.Repeat("x", 100))
					insts += p.insts
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				perInst = float64(after.HeapAlloc-before.HeapAlloc) / float64(insts)
				ratio = float64(after.HeapAlloc-before.HeapAlloc) / float64(c.size())
				runtime.KeepAlive(c)
			}
			b.ReportMetric(perInst, "heap-bytes/inst")
			b.ReportMetric(ratio, "heap/estimate")
		})
	}
}

// BenchmarkExtract: the README's invoices rule on a typical invoice message (a few KB of text),
// matched alone (match) and matched with its two extract fields evaluated (match+extract); the
// issue's bound is 10 µs for the two fields.
func BenchmarkExtract(b *testing.B) {
	env := invoiceEnv()
	env.Text = strings.Repeat("Line of an ordinary invoice mail, nothing to see here.\n", 60) + env.Text
	s, err := Compile([]Spec{invoiceRule})
	if err != nil {
		b.Fatal(err)
	}
	r, _ := s.Rule("invoices")
	b.Run("match", func(b *testing.B) {
		for b.Loop() {
			if m, _ := s.Match(env); len(m) != 1 {
				b.Fatal("no match")
			}
		}
	})
	b.Run("match+extract", func(b *testing.B) {
		for b.Loop() {
			if m, _ := s.Match(env); len(m) != 1 {
				b.Fatal("no match")
			}
			if f, errs := s.Extract(r, env); len(errs) != 0 || f["amount"] != "120.50" {
				b.Fatalf("fields %v, errors %v", f, errs)
			}
		}
	})
}
