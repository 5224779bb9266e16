package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestExtractNamesKeepTheirCase: extract names are map keys, which viper lower-cases; they are
// what a receiver reads in the payload's `fields`, so parse gives them back as written, and two
// names differing only in case are refused naming the rule.
func TestExtractNamesKeepTheirCase(t *testing.T) {
	write := func(t *testing.T, extract string) string {
		p := filepath.Join(t.TempDir(), "c.yaml")
		text := "rules:\n  - name: plain\n    when: 'true'\n  - name: invoices\n    when: 'true'\n    extract:\n" + extract
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cfg, err := parse(write(t, "      invoiceNumber: 'find(\"INV-[0-9]+\", subject)'\n      amount: 'text'\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"invoiceNumber": `find("INV-[0-9]+", subject)`, "amount": "text"}
	if got := cfg.Rules[1].Extract; !reflect.DeepEqual(got, want) {
		t.Errorf("extract %#v, want %#v", got, want)
	}
	if cfg.Rules[0].Extract != nil {
		t.Errorf("a rule without extract got %#v", cfg.Rules[0].Extract)
	}
	_, err = parse(write(t, "      Total: 'text'\n      total: 'subject'\n"))
	if err == nil || !strings.Contains(err.Error(), `rules[1] "invoices".extract: names "Total" and "total" differ only in case`) {
		t.Errorf("names differing in case: %v", err)
	}
}
