package sqlite

import (
	"context"
	"testing"

	"github.com/mailhook/mailhook/store"
)

func TestCopyRows(t *testing.T) {
	s, err := Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if _, err := s.DisableEndpoint(ctx, "ci", "http 410", t0); err != nil {
		t.Fatal(err)
	}
	var got [][]any
	if err := s.CopyRows(ctx, "endpoints", []string{"name", "reason", "disabled_at"}, func(v []any) error {
		got = append(got, v)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0][0] != "ci" || got[0][1] != "http 410" || got[0][2] != t0.UnixNano() {
		t.Fatalf("rows = %#v", got)
	}
	for _, bad := range []struct {
		table string
		cols  []string
	}{{"sqlite_master", []string{"name"}}, {"jobs", []string{"id; DROP TABLE jobs"}}} {
		if err := s.CopyRows(ctx, bad.table, bad.cols, func([]any) error { return nil }); err == nil {
			t.Errorf("CopyRows(%s, %v) read", bad.table, bad.cols)
		}
	}
}
