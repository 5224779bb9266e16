package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestStoreConfig(t *testing.T) {
	secretDSN := "postgres://mh:s3cret-pw@db.example.com/mailhook?sslmode=verify-full"
	dsnFile := filepath.Join(t.TempDir(), "dsn")
	if err := os.WriteFile(dsnFile, []byte(secretDSN+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, yaml string
		vars       map[string]string
		want       StoreConfig
		errs       []string
	}{
		{name: "default sqlite", want: StoreConfig{Driver: "sqlite"}},
		{name: "postgres from env", yaml: "store:\n  driver: postgres\n  dsn: ${MAILHOOK_DSN}\n",
			vars: map[string]string{"MAILHOOK_DSN": secretDSN},
			want: StoreConfig{Driver: "postgres", DSN: secretDSN, LeaseTTL: 15 * time.Second}},
		{name: "postgres from file", yaml: "store:\n  driver: postgres\n  dsn_file: " + dsnFile + "\n  lease_ttl: 30s\n",
			want: StoreConfig{Driver: "postgres", DSN: secretDSN, DSNFile: dsnFile, LeaseTTL: 30 * time.Second}},
		{name: "unknown driver", yaml: "store:\n  driver: mysql\n", errs: []string{"store.driver"}},
		{name: "postgres without dsn", yaml: "store:\n  driver: postgres\n", errs: []string{"store.dsn: required"}},
		{name: "ttl out of range", yaml: "store:\n  driver: postgres\n  dsn: postgres://db/x\n  lease_ttl: 2s\n",
			errs: []string{"store.lease_ttl: 2s is outside 5s–5m0s"}},
		{name: "dsn with sqlite", yaml: "store:\n  dsn: postgres://db/x\n  lease_ttl: 10s\n",
			errs: []string{"store.dsn: only for driver: postgres", "store.lease_ttl: only for driver: postgres"}},
		{name: "dsn and dsn_file", yaml: "store:\n  driver: postgres\n  dsn: " + secretDSN + "\n  dsn_file: " + dsnFile + "\n",
			errs: []string{"store.dsn_file: set both dsn and dsn_file; use one"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, _, err := cfgLoad(t, cfgMinimalYAML+tc.yaml, tc.vars)
			if len(tc.errs) > 0 {
				if err == nil {
					t.Fatalf("loaded; want errors %q", tc.errs)
				}
				for _, e := range tc.errs {
					if !strings.Contains(err.Error(), e) {
						t.Errorf("error %q lacks %q", err, e)
					}
				}
				if strings.Contains(err.Error(), "s3cret-pw") {
					t.Errorf("error %q shows the dsn's password", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Store != tc.want {
				t.Errorf("store = %+v; want %+v", cfg.Store, tc.want)
			}
		})
	}
}
