package message

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/emersion/go-message/charset"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// TestParseGolden parses every fixture and compares the Message, as JSON, with
// testdata/<name>.golden.json (go test -run TestParseGolden -update rewrites them).
func TestParseGolden(t *testing.T) {
	names, data := fixtures(t)
	for i, name := range names {
		t.Run(name, func(t *testing.T) {
			m, err := Parse(bytes.NewReader(data[i]), Limits{})
			if err != nil {
				t.Fatal(err)
			}
			got, err := json.MarshalIndent(m, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			golden := filepath.Join("testdata", strings.TrimSuffix(name, ".eml")+".golden.json")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("Parse(%s) differs from %s:\n%s", name, golden, got)
			}
		})
	}
}
