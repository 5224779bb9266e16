package message

import (
	"strings"
	"testing"
)

// addressInputs are address headers with a long comment and a long display name of n bytes.
func addressInputs(n int) []string {
	return []string{
		"(" + strings.Repeat("c", n) + ") a@example.com",
		strings.Repeat("w ", n/2) + "<a@example.com>",
		"\"" + strings.Repeat("q", n) + "\" <a@example.com>, b@example.com",
		strings.Repeat("(", n/2) + "x" + strings.Repeat(")", n/2) + " a@example.com",
		strings.Repeat("a@b.c, ", n/7),
	}
}

// TestAddressScalesLinearly checks that parsing a 100 KB comment or phrase costs at most 25× a
// 4 KB one. The cost measured is the bytes allocated (deterministic, unlike time): a parser that
// re-scans or re-copies its input per token shows up here as a superlinear ratio. The timing
// figures are BenchmarkAddressLong.
func TestAddressScalesLinearly(t *testing.T) {
	small, large := addressInputs(4000), addressInputs(100_000)
	for i := range small {
		cost := func(s string) uint64 {
			return allocated(func() {
				var d defects
				newDecoder(&d).addresses(s)
			})
		}
		cs, cl := cost(small[i]), cost(large[i])
		if ratio := float64(cl) / float64(max(cs, 1)); ratio > 25 {
			t.Errorf("input %d: 4 KB allocates %d bytes, 100 KB %d: %.1f×, want ≤ 25×", i, cs, cl, ratio)
		} else {
			t.Logf("input %d: 4 KB %d B, 100 KB %d B (%.1f×)", i, cs, cl, ratio)
		}
	}
}

func BenchmarkAddressLong(b *testing.B) {
	for _, n := range []int{4000, 100_000} {
		for i, s := range addressInputs(n) {
			b.Run(strings.Join([]string{"size", itoa(n), "input", itoa(i)}, "-"), func(b *testing.B) {
				b.SetBytes(int64(len(s)))
				for b.Loop() {
					var d defects
					newDecoder(&d).addresses(s)
				}
			})
		}
	}
}

func itoa(n int) string {
	var buf [20]byte
	i := len(buf)
	for {
		i--
		buf[i] = byte('0' + n%10)
		if n /= 10; n == 0 {
			return string(buf[i:])
		}
	}
}
