package testmail

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestPostgresDatabaseStopStart(t *testing.T) {
	pg := StartPostgres(t, PostgresOptions{})
	dsn := pg.NewDatabase(t)
	query := func() (int, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return 0, err
		}
		defer conn.Close(context.Background())
		var n int
		err = conn.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&n)
		return n, err
	}
	if err := pg.Exec(dsnDatabase(t, dsn), "CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2)"); err != nil {
		t.Fatal(err)
	}
	if n, err := query(); err != nil || n != 2 {
		t.Fatalf("count = %d, %v; want 2", n, err)
	}
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := query(); err == nil {
		t.Fatal("query succeeded while the server was stopped")
	}
	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	if n, err := query(); err != nil || n != 2 {
		t.Fatalf("after restart: count = %d, %v; want 2 (data kept)", n, err)
	}
	other := pg.NewDatabase(t)
	if other == dsn {
		t.Fatalf("NewDatabase returned the same database twice: %s", dsn)
	}
}

func dsnDatabase(t *testing.T, dsn string) string {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Database
}
