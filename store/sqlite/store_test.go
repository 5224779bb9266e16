package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailhook/mailhook/store"
	"github.com/mailhook/mailhook/store/storetest"
)

// TestConformance runs the store contract's suite on this backend, each test in its own
// state directory.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t testing.TB) storetest.Opener {
		dir := filepath.Join(t.TempDir(), "state")
		return func(opts store.Options) (store.Backend, error) { return Open(dir, opts) }
	})
}

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// clock is a settable time source for Options.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: t0} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// open opens a store in dir with clk and closes it when the test ends.
func open(t testing.TB, dir string, clk *clock) *Store {
	t.Helper()
	s, err := Open(dir, store.Options{Now: clk.Now})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func webhook(id, target string, deps ...string) store.Job {
	return store.Job{ID: id, Kind: store.KindWebhook, Target: target, Account: "acct", Mailbox: "INBOX",
		UIDValidity: 7, UID: 1, Rule: "r", DependsOn: deps, Body: []byte(`{"id":"` + id + `"}`)}
}

func ids(jobs []store.Job) []string {
	out := make([]string, len(jobs))
	for i, j := range jobs {
		out[i] = j.ID
	}
	return out
}

// commitOne commits one message of acct/INBOX through its writer.
func commitOne(s *Store, cp store.Checkpoint, key string, jobs []store.Job) error {
	ctx := context.Background()
	w, err := s.Mailbox(ctx, "acct", "INBOX")
	if err != nil {
		return err
	}
	return w.Commit(ctx, []store.Commit{{Checkpoint: cp, Key: key, Jobs: jobs}})
}

func mustCommit(t testing.TB, s *Store, uid uint32, key string, jobs ...store.Job) {
	t.Helper()
	cp := store.Checkpoint{UIDValidity: 7, LastUID: uid, LastInternalDate: t0.Add(time.Duration(uid) * time.Minute)}
	if err := commitOne(s, cp, key, jobs); err != nil {
		t.Fatalf("commit uid %d: %v", uid, err)
	}
}

func mustCheckpoint(t *testing.T, s *Store) store.Checkpoint {
	t.Helper()
	cp, ok, err := s.Checkpoint(context.Background(), "acct", "INBOX")
	if err != nil || !ok {
		t.Fatalf("checkpoint: ok=%v err=%v", ok, err)
	}
	return cp
}

func mustJob(t *testing.T, s *Store, id string) (store.Job, []store.Attempt) {
	t.Helper()
	j, as, err := s.Job(context.Background(), id)
	if err != nil {
		t.Fatalf("job %s: %v", id, err)
	}
	return j, as
}

// claimAll commits webhook jobs with ids to target "ci" and claims them all.
func claimAll(t *testing.T, s *Store, clk *clock, ids ...string) {
	t.Helper()
	var jobs []store.Job
	for _, id := range ids {
		jobs = append(jobs, webhook(id, "ci"))
	}
	mustCommit(t, s, 1, "", jobs...)
	got, err := s.Claim(context.Background(), store.Selector{Kind: store.KindWebhook, Target: "ci"}, clk.Now(), len(ids))
	if err != nil || len(got) != len(ids) {
		t.Fatalf("claim: %d jobs, err %v", len(got), err)
	}
}

func TestOpenLock(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	s, err := Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = Open(dir, store.Options{})
	if !errors.Is(err, store.ErrLocked) {
		t.Fatalf("second Open: err = %v, want ErrLocked", err)
	}
	if !strings.Contains(err.Error(), dir) {
		t.Errorf("error %q does not name the directory", err)
	}
	if !strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) {
		t.Errorf("error %q does not name the holder's pid", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	s2, err := Open(dir, store.Options{})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	s2.Close()
}

// A tool opens the state beside a running daemon without taking its lock and without migrating
// (the contract part of this — data, writes, claims — is the suite's SharedBesideDaemon); closing
// it leaves the daemon's lock in place.
func TestOpenSharedBesideDaemon(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	daemon, err := Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer daemon.Close()
	tool, err := Open(dir, store.Options{Shared: true})
	if err != nil {
		t.Fatalf("shared open beside the daemon: %v", err)
	}
	if tool.exclusive || tool.lock != nil {
		t.Error("a tool beside the daemon holds the lock")
	}
	if err := tool.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, store.Options{}); !errors.Is(err, store.ErrLocked) {
		t.Errorf("closing the tool released the daemon's lock: %v", err)
	}
	// Without a daemon, a shared open is a normal one: it holds the lock.
	daemon.Close()
	tool, err = Open(dir, store.Options{Shared: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tool.Close()
	if !tool.exclusive {
		t.Error("a shared open without a daemon does not hold the lock")
	}
	// A tool beside a daemon of another schema version refuses to open.
	if _, err := tool.db.Exec("PRAGMA user_version = 4"); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, store.Options{Shared: true}); err == nil || !strings.Contains(err.Error(), "schema version 4") {
		t.Errorf("shared open beside an older schema: err = %v", err)
	}
}

func TestOpenPermissions(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "state")
	open(t, dir, newClock())
	for name, want := range map[string]os.FileMode{dir: 0o700 | os.ModeDir, filepath.Join(dir, dbFile): 0o600} {
		fi, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", name, fi.Mode(), want)
		}
	}
}

func TestOpenPragmas(t *testing.T) {
	s := open(t, t.TempDir(), newClock())
	for pragma, want := range map[string]string{
		"journal_mode": "wal", "synchronous": "2", "foreign_keys": "1", "busy_timeout": "5000",
		"user_version": fmt.Sprint(len(migrations())),
	} {
		var got string
		if err := s.db.QueryRow("PRAGMA " + pragma).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("PRAGMA %s = %s, want %s", pragma, got, want)
		}
	}
}

func TestSchemaTooNew(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.Exec("PRAGMA user_version = 99"); err != nil {
		t.Fatal(err)
	}
	s.Close()

	_, err = Open(dir, store.Options{})
	if !errors.Is(err, store.ErrSchemaTooNew) {
		t.Fatalf("Open: err = %v, want ErrSchemaTooNew", err)
	}
	if !strings.Contains(err.Error(), "99") {
		t.Errorf("error %q does not say the version found", err)
	}
	// The refusal released the lock: the directory is not left locked.
	f, err := lockDir(dir)
	if err != nil {
		t.Fatalf("directory still locked after a refused Open: %v", err)
	}
	unlockDir(f)
}

func TestReopenKeepsSchema(t *testing.T) {
	dir := t.TempDir()
	for range 2 {
		s, err := Open(dir, store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		var v int
		if err := s.db.QueryRow("PRAGMA user_version").Scan(&v); err != nil {
			t.Fatal(err)
		}
		if v != len(migrations()) {
			t.Errorf("user_version = %d, want %d", v, len(migrations()))
		}
		s.Close()
	}
}

// A job the database itself rejects (an injected trigger), after the checkpoint, the seen key and a
// first job were written in the same transaction, leaves nothing of the commit. The suite's
// CommitAtomic covers the failures the store itself detects.
func TestCommitAtomic(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir(), newClock())
	if _, err := s.db.Exec(`CREATE TRIGGER inject BEFORE INSERT ON jobs WHEN NEW.id = 'boom'
BEGIN SELECT RAISE(ABORT, 'injected failure'); END`); err != nil {
		t.Fatal(err)
	}
	mustCommit(t, s, 10, "")
	cp := store.Checkpoint{UIDValidity: 7, LastUID: 11}
	if err := commitOne(s, cp, "key11", []store.Job{webhook("ok", "ci"), webhook("boom", "ci")}); err == nil {
		t.Fatal("Commit succeeded, want an error")
	}
	if got := mustCheckpoint(t, s).LastUID; got != 10 {
		t.Errorf("checkpoint advanced to %d by a failed commit", got)
	}
	if seen, _ := s.seen(ctx, "acct", "INBOX", "key11"); seen {
		t.Error("seen key recorded by a failed commit")
	}
	if jobs, _ := s.Jobs(ctx, store.Filter{}); len(jobs) != 0 {
		t.Errorf("jobs left by a failed commit: %v", ids(jobs))
	}
}

// Pruning deletes the rows of expired seen keys (the suite checks what Seen answers).
func TestSeenExpires(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	s := open(t, t.TempDir(), clk)
	commitNow := func(uid uint32, key string) { // a message arriving as it is processed
		t.Helper()
		if err := commitOne(s, store.Checkpoint{UIDValidity: 7, LastUID: uid, LastInternalDate: clk.Now()}, key, nil); err != nil {
			t.Fatal(err)
		}
	}
	commitNow(1, "old")
	clk.Add(20 * 24 * time.Hour)
	commitNow(2, "new")
	clk.Add(10*24*time.Hour + time.Second) // old is now 30 days + 1 s old, new 10 days
	if err := s.Prune(ctx, clk.Now()); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := s.db.QueryRow(`SELECT COUNT(*) FROM seen_keys`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("%d seen keys after prune, want 1", n)
	}
}

// Drop deletes the job's attempts and dependency edges with it (the suite's
// RequeueReleaseDropCounts checks the states and errors).
func TestDropDeletesRows(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	s := open(t, t.TempDir(), clk)
	mustCommit(t, s, 1, "", webhook("a", "ci"),
		store.Job{ID: "post", Kind: store.KindPostAction, Target: "mark_seen", DependsOn: []string{"a"}})
	if _, err := s.Claim(ctx, store.Selector{Kind: store.KindWebhook, Target: "ci"}, clk.Now(), 1); err != nil {
		t.Fatal(err)
	}
	if err := s.Finish(ctx, "a", store.StateDead, time.Time{}, store.Attempt{Status: "http 400"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Drop(ctx, "post"); err != nil {
		t.Fatal(err)
	}
	if err := s.Drop(ctx, "a"); err != nil {
		t.Fatalf("Drop after its dependent went: %v", err)
	}
	var n2 int
	if err := s.db.QueryRow(`SELECT (SELECT COUNT(*) FROM attempts WHERE job_id = 'a') + (SELECT COUNT(*) FROM job_deps)`).Scan(&n2); err != nil || n2 != 0 {
		t.Errorf("rows left after drop: %d %v", n2, err)
	}
}

func TestCommitPrunesHourly(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	s := open(t, t.TempDir(), clk)
	stored := func(key string) bool {
		t.Helper()
		var n int
		if err := s.db.QueryRow(`SELECT COUNT(*) FROM seen_keys WHERE key = ?`, key).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	}
	at := func(d time.Duration, uid uint32, key string) { // a message arriving as it is processed
		t.Helper()
		clk.Add(t0.Add(d).Sub(clk.Now()))
		if err := commitOne(s, store.Checkpoint{UIDValidity: 7, LastUID: uid, LastInternalDate: clk.Now()}, key, nil); err != nil {
			t.Fatal(err)
		}
	}
	const month = store.DefaultSeenTTL
	at(0, 1, "k1")                    // prunes (nothing), arms the hour
	at(30*time.Minute, 2, "k2")       // within the hour: no prune
	at(month+10*time.Minute, 3, "k3") // prunes: k1 expired, k2 not yet
	if stored("k1") || !stored("k2") {
		t.Errorf("after the first hourly prune: k1 stored %v, k2 stored %v; want false, true", stored("k1"), stored("k2"))
	}
	at(month+40*time.Minute, 4, "k4") // k2 expired, but the last prune was 30 minutes ago
	if !stored("k2") {
		t.Error("Commit pruned twice within an hour")
	}
	if seen, _ := s.seen(ctx, "acct", "INBOX", "k2"); seen {
		t.Error("an expired key not yet pruned is still seen")
	}
	at(month+80*time.Minute, 5, "k5") // an hour after the last prune
	if stored("k2") || !stored("k3") {
		t.Errorf("after the second hourly prune: k2 stored %v, k3 stored %v; want false, true", stored("k2"), stored("k3"))
	}
}

// The directory lock proves that the process that claimed jobs before is gone: Recover on the
// next daemon's handle settles its claims at once, expired or not (so a restart redelivers without
// waiting out the claim TTL), while a tool beside a live daemon recovers only expired claims.
func TestReopenRecoversInFlight(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	clk := newClock()
	s, err := Open(dir, store.Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	mustCommit(t, s, 1, "", webhook("w", "ci"), store.Job{ID: "r", Kind: store.KindReply, Target: "ack"},
		webhook("idle", "other"))
	for _, kind := range []string{store.KindWebhook, store.KindReply} {
		if _, err := s.Claim(ctx, store.Selector{Kind: kind}, clk.Now(), 1); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.Recover(ctx, clk.Now()); err != nil || n != 0 {
		t.Errorf("Recover of the handle's own live claims = %d, %v; want 0", n, err)
	}
	s.Close() // as if killed: nothing settled the claimed jobs

	clk.Add(time.Second)
	s = open(t, dir, clk)
	tool, err := Open(dir, store.Options{Now: clk.Now, Shared: true})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := tool.Recover(ctx, clk.Now()); err != nil || n != 0 {
		t.Errorf("tool's Recover of unexpired claims = %d, %v; want 0", n, err)
	}
	tool.Close()
	if n, err := s.Recover(ctx, clk.Now()); err != nil || n != 2 {
		t.Errorf("Recover after restart = %d, %v; want 2", n, err)
	}
	tests := []struct {
		id, state string
		attempts  int
		recorded  bool
	}{
		{"w", store.StatePending, 1, true}, // at least once: goes again, attempt counted
		{"r", store.StateUnknown, 1, true}, // at most once: never resent
		{"idle", store.StatePending, 0, false},
	}
	for _, tt := range tests {
		j, as := mustJob(t, s, tt.id)
		if j.State != tt.state || j.Attempts != tt.attempts {
			t.Errorf("%s: state %s attempts %d, want %s %d", tt.id, j.State, j.Attempts, tt.state, tt.attempts)
		}
		if tt.recorded != (len(as) == 1 && as[0].Status == "interrupted" && as[0].At.Equal(clk.Now())) {
			t.Errorf("%s: attempts %+v", tt.id, as)
		}
	}
	if got, _ := s.Claim(ctx, store.Selector{Kind: store.KindWebhook, Target: "ci"}, clk.Now(), 10); len(got) != 1 || got[0].ID != "w" {
		t.Errorf("claim after recovery = %v, want [w]", ids(got))
	}
}

// An existing state directory of schema version 5 (before claim owners, fetch records and budget
// reservations) keeps working: the migrations append, its data stays, and the jobs an older
// binary left in flight (no claim expiry) are recovered.
func TestMigrateFromVersion5(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	version5(t, dir)

	clk := newClock()
	s := open(t, dir, clk)
	var v int
	if err := s.db.QueryRow("PRAGMA user_version").Scan(&v); err != nil || v != len(migrations()) {
		t.Errorf("user_version = %d, %v; want %d", v, err, len(migrations()))
	}
	if cp := mustCheckpoint(t, s); cp.LastUID != 42 {
		t.Errorf("checkpoint after migration = %+v", cp)
	}
	if n, err := s.Recover(ctx, clk.Now()); err != nil || n != 1 {
		t.Errorf("Recover = %d, %v; want the old binary's in-flight job", n, err)
	}
	if j, _ := mustJob(t, s, "old"); j.State != store.StatePending || j.Attempts != 1 {
		t.Errorf("old job after recovery: %s, %d attempts", j.State, j.Attempts)
	}
}

// version5 writes the state of dir at schema version 5, with a checkpoint and a job in flight.
func version5(t *testing.T, dir string) {
	t.Helper()
	db, err := sql.Open("sqlite", dsn(filepath.Join(dir, dbFile)))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for v, m := range migrations()[:5] {
		if err := migrateOne(context.Background(), db, m, v+1); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Exec(`INSERT INTO checkpoints VALUES ('acct', 'INBOX', 7, 42, 0, 1);
INSERT INTO jobs (id, kind, target, account, mailbox, uidvalidity, uid, rule, state, next_at, attempts, created_at, updated_at)
VALUES ('old', 'webhook', 'ci', 'acct', 'INBOX', 7, 42, 'r', 'in_flight', 1, 1, 1, 1)`); err != nil {
		t.Fatal(err)
	}
}

// An operator tool (Shared) with no daemon running does not migrate an older schema: it refuses
// with ErrSchemaTooOld, naming both versions and what to do, and leaves the database as it was;
// the daemon's open then migrates it, and the tool opens it.
func TestToolRefusesOlderSchema(t *testing.T) {
	dir := t.TempDir()
	version5(t, dir)
	_, err := Open(dir, store.Options{Shared: true})
	want := fmt.Sprintf("schema version 5, this mailhook uses %d", len(migrations()))
	if !errors.Is(err, store.ErrSchemaTooOld) || !strings.Contains(fmt.Sprint(err), want) ||
		!strings.Contains(fmt.Sprint(err), "run the daemon (mailhook run) of this version once") {
		t.Fatalf("tool open of a version 5 state: %v; want ErrSchemaTooOld with %q", err, want)
	}
	db, err := sql.Open("sqlite", dsn(filepath.Join(dir, dbFile)))
	if err != nil {
		t.Fatal(err)
	}
	var v int
	if err := db.QueryRow("PRAGMA user_version").Scan(&v); err != nil || v != 5 {
		t.Errorf("user_version after the tool = %d, %v; want 5 (untouched)", v, err)
	}
	db.Close()
	s, err := Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open(dir, store.Options{Shared: true})
	if err != nil {
		t.Fatalf("tool open after the daemon migrated: %v", err)
	}
	s.Close()
}

// BenchmarkCommit measures one message's commit on disk (synchronous=FULL, so one fsync of the
// WAL): checkpoint advance, seen key and two jobs with a 4 KiB body each. It reports the median
// and 99th percentile per commit besides the mean.
func BenchmarkCommit(b *testing.B) {
	ctx := context.Background()
	s, err := Open(b.TempDir(), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	w, err := s.Mailbox(ctx, "acct", "INBOX")
	if err != nil {
		b.Fatal(err)
	}
	body := []byte(strings.Repeat("x", 4096))
	durs := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		uid := uint32(i + 1)
		jobs := []store.Job{
			{ID: store.JobID("acct", "INBOX", 7, uid, "r", 0), Kind: store.KindWebhook, Target: "ci", Account: "acct",
				Mailbox: "INBOX", UIDValidity: 7, UID: uid, Rule: "r", Body: body},
			{ID: store.JobID("acct", "INBOX", 7, uid, "r", 1), Kind: store.KindWebhook, Target: "chat", Account: "acct",
				Mailbox: "INBOX", UIDValidity: 7, UID: uid, Rule: "r", Body: body},
		}
		start := time.Now()
		if err := w.Commit(ctx, []store.Commit{{Checkpoint: store.Checkpoint{UIDValidity: 7, LastUID: uid}, Key: fmt.Sprintf("<%d@x>/4096", i), Jobs: jobs}}); err != nil {
			b.Fatal(err)
		}
		durs = append(durs, time.Since(start))
	}
	b.StopTimer()
	sort.Slice(durs, func(i, j int) bool { return durs[i] < durs[j] })
	if len(durs) > 0 {
		b.ReportMetric(float64(durs[len(durs)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(durs[len(durs)*99/100].Microseconds())/1000, "p99-ms")
	}
}
