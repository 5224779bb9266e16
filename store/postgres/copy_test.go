package postgres

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/mailhook/mailhook/internal/testmail"
	"github.com/mailhook/mailhook/store"
	"github.com/mailhook/mailhook/store/sqlite"
)

// sqliteSource reads the tables of an SQLite state through its export.
func sqliteSource(t *testing.T, dir string) CopySource {
	src, err := sqlite.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	return func(ctx context.Context, tb CopyTable, row func([]any) error) error {
		return src.CopyRows(ctx, tb.Name, tb.Columns, row)
	}
}

func TestCopyFromSQLite(t *testing.T) {
	pg := testmail.StartPostgres(t, testmail.PostgresOptions{})
	ctx := context.Background()
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	dir := t.TempDir()
	src, err := sqlite.Open(dir, store.Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	w, err := src.Mailbox(ctx, "acct", "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	hook := webhookJob("acct", "INBOX", 1, "hook")
	move := store.Job{ID: "move-1", Kind: store.KindPostAction, Target: "move:Archive", Account: "acct", Mailbox: "INBOX",
		UIDValidity: 7, UID: 1, Rule: "r", DependsOn: []string{hook.ID}}
	if err := w.Commit(ctx, []store.Commit{
		{Checkpoint: store.Checkpoint{UIDValidity: 7, LastUID: 1, LastInternalDate: now}, Key: "k1", Jobs: []store.Job{hook, move}},
		{Checkpoint: store.Checkpoint{UIDValidity: 7, LastUID: 2, LastInternalDate: now}, Key: "k2", Jobs: []store.Job{webhookJob("acct", "INBOX", 2, "hook")}},
	}); err != nil {
		t.Fatal(err)
	}
	if jobs, err := src.Claim(ctx, store.Selector{Kind: store.KindWebhook}, now, 1); err != nil || len(jobs) != 1 {
		t.Fatal(jobs, err)
	}
	if err := src.Finish(ctx, hook.ID, store.StateDone, time.Time{}, store.Attempt{At: now, Status: "http 204"}); err != nil {
		t.Fatal(err)
	}
	if _, err := src.ReserveReply(ctx, store.ReplyKey{Account: "acct", Sender: "a@example.org", Reply: "ack"}, "<r1@mh>", time.Hour, 10, now); err != nil {
		t.Fatal(err)
	}
	if err := src.ChargeBudget(ctx, "acct", []store.BudgetBucket{{Start: now.Truncate(time.Minute), Bytes: 1234}}, store.BudgetThrottle{}, now.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := src.DisableEndpoint(ctx, "old", "http 410", now); err != nil {
		t.Fatal(err)
	}
	wantJobs, _ := src.Jobs(ctx, store.Filter{})
	wantCps, _ := src.Checkpoints(ctx)
	src.Close()

	dsn := pg.NewDatabase(t)
	dst := openStore(t, dsn, testOpts{replica: "a"})
	if ok, err := dst.Empty(ctx); err != nil || !ok {
		t.Fatalf("fresh store empty = %v, %v", ok, err)
	}
	source := sqliteSource(t, dir)
	counts, err := dst.CopyFrom(ctx, source)
	if err != nil {
		t.Fatal(err)
	}
	if counts["jobs"] != 3 || counts["attempts"] != 1 || counts["seen_keys"] != 2 || counts["job_deps"] != 1 {
		t.Errorf("copied %v", counts)
	}
	gotJobs, _ := dst.Jobs(ctx, store.Filter{})
	if !reflect.DeepEqual(gotJobs, wantJobs) {
		t.Errorf("jobs after copy:\n%+v\nwant\n%+v", gotJobs, wantJobs)
	}
	gotCps, _ := dst.Checkpoints(ctx)
	if !reflect.DeepEqual(gotCps, wantCps) {
		t.Errorf("checkpoints after copy: %+v, want %+v", gotCps, wantCps)
	}
	if j, as, err := dst.Job(ctx, hook.ID); err != nil || string(j.Body) != string(hook.Body) || len(as) != 1 || as[0].Status != "http 204" {
		t.Errorf("job %s after copy: %+v %+v %v", hook.ID, j, as, err)
	}
	if ok, _ := dst.Replied(ctx, store.ReplyKey{Account: "acct", Sender: "A@example.org", Reply: "ack"}, now); !ok {
		t.Error("reply ledger entry not copied")
	}
	if bs, _ := dst.BudgetBuckets(ctx, "acct", now.Add(-time.Hour)); len(bs) != 1 || bs[0].Bytes != 1234 {
		t.Errorf("budget after copy: %+v", bs)
	}
	if e, _ := dst.Endpoint(ctx, "old"); !e.Disabled() {
		t.Errorf("endpoint after copy: %+v", e)
	}
	// New jobs go after the copied ones, and the copied post-action waits for its dependency no more.
	wd := writerFor(t, dst, "acct", "INBOX")
	if err := commitOne(ctx, wd, "acct", "INBOX", 3, "hook"); err != nil {
		t.Fatal(err)
	}
	jobs, _ := dst.Jobs(ctx, store.Filter{})
	if len(jobs) != 4 || jobs[3].UID != 3 {
		t.Errorf("order after a new commit: %+v", jobs)
	}
	if _, err := dst.CopyFrom(ctx, source); !errors.Is(err, ErrNotEmpty) {
		t.Errorf("second copy = %v; want ErrNotEmpty", err)
	}
}
