package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

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
	s, err := OpenWith(dir, Options{Now: clk.Now})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func webhook(id, target string, deps ...string) Job {
	return Job{ID: id, Kind: KindWebhook, Target: target, Account: "acct", Mailbox: "INBOX",
		UIDValidity: 7, UID: 1, Rule: "r", DependsOn: deps, Body: []byte(`{"id":"` + id + `"}`)}
}

func ids(jobs []Job) []string {
	out := make([]string, len(jobs))
	for i, j := range jobs {
		out[i] = j.ID
	}
	return out
}

func mustCommit(t testing.TB, s *Store, uid uint32, key string, jobs ...Job) {
	t.Helper()
	cp := Checkpoint{UIDValidity: 7, LastUID: uid, LastInternalDate: t0.Add(time.Duration(uid) * time.Minute)}
	if err := s.Commit(context.Background(), "acct", "INBOX", cp, key, jobs); err != nil {
		t.Fatalf("commit uid %d: %v", uid, err)
	}
}

func mustCheckpoint(t *testing.T, s *Store) Checkpoint {
	t.Helper()
	cp, ok, err := s.Checkpoint(context.Background(), "acct", "INBOX")
	if err != nil || !ok {
		t.Fatalf("checkpoint: ok=%v err=%v", ok, err)
	}
	return cp
}

func mustJob(t *testing.T, s *Store, id string) (Job, []Attempt) {
	t.Helper()
	j, as, err := s.Job(context.Background(), id)
	if err != nil {
		t.Fatalf("job %s: %v", id, err)
	}
	return j, as
}

func TestJobIDGolden(t *testing.T) {
	// Pinned forever: this id is the webhook-id receivers deduplicate on.
	const want = "msg_ewedoud2bwryb2wwy4aphjr6ne"
	if got := JobID("personal", "INBOX", 1795689278, 4711, "ci-failures", 0); got != want {
		t.Fatalf("JobID = %q, want %q", got, want)
	}

	base := JobID("a", "b", 1, 2, "r", 0)
	if len(base) != len("msg_")+26 || strings.ToLower(base) != base || strings.Contains(base, "=") {
		t.Errorf("JobID %q: want msg_ + 26 lower-case base32 characters", base)
	}
	variants := map[string]string{
		"account":     JobID("x", "b", 1, 2, "r", 0),
		"mailbox":     JobID("a", "x", 1, 2, "r", 0),
		"uidvalidity": JobID("a", "b", 3, 2, "r", 0),
		"uid":         JobID("a", "b", 1, 3, "r", 0),
		"rule":        JobID("a", "b", 1, 2, "x", 0),
		"action":      JobID("a", "b", 1, 2, "r", 1),
		"boundary":    JobID("ab", "", 1, 2, "r", 0),
	}
	for field, id := range variants {
		if id == base {
			t.Errorf("changing %s does not change the id", field)
		}
	}
	if JobID("ab", "c", 1, 2, "r", 0) == JobID("a", "bc", 1, 2, "r", 0) {
		t.Error(`("ab","c") and ("a","bc") collide: fields are not length-prefixed`)
	}
}

func TestOpenLock(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Open(dir)
	if !errors.Is(err, ErrLocked) {
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
	s2, err := Open(dir)
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	s2.Close()
}

// A tool opens the state beside a running daemon without taking its lock, sees its data, and its
// writes are visible to the daemon; it neither migrates nor recovers in-flight jobs.
func TestOpenSharedBesideDaemon(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "state")
	daemon, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer daemon.Close()
	now := time.Now()
	job := Job{ID: "msg_a", Kind: KindWebhook, Target: "ci", Account: "a", Mailbox: "INBOX", UIDValidity: 1, UID: 1}
	if err := daemon.Commit(ctx, "a", "INBOX", Checkpoint{UIDValidity: 1, LastUID: 1}, "k", []Job{job}); err != nil {
		t.Fatal(err)
	}
	if claimed, err := daemon.Claim(ctx, KindWebhook, "ci", now.Add(time.Minute), 1); err != nil || len(claimed) != 1 {
		t.Fatalf("claim: %d jobs, %v", len(claimed), err)
	}

	tool, err := OpenWith(dir, Options{Shared: true})
	if err != nil {
		t.Fatalf("shared open beside the daemon: %v", err)
	}
	got, _, err := tool.Job(ctx, "msg_a")
	if err != nil {
		t.Fatal(err)
	}
	if got.State != StateInFlight {
		t.Errorf("tool recovered the daemon's in-flight job: state %s", got.State)
	}
	if err := tool.Finish(ctx, "msg_a", StateDead, time.Time{}, Attempt{At: now, Status: "http 400"}); err != nil {
		t.Fatal(err)
	}
	if err := tool.Requeue(ctx, "msg_a", now); err != nil {
		t.Fatal(err)
	}
	if err := tool.Close(); err != nil {
		t.Fatal(err)
	}
	got, _, err = daemon.Job(ctx, "msg_a")
	if err != nil || got.State != StatePending {
		t.Errorf("daemon sees %v, %v; want the tool's requeue", got.State, err)
	}
	if _, err := Open(dir); !errors.Is(err, ErrLocked) {
		t.Errorf("closing the tool released the daemon's lock: %v", err)
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
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.Exec("PRAGMA user_version = 99"); err != nil {
		t.Fatal(err)
	}
	s.Close()

	_, err = Open(dir)
	if !errors.Is(err, ErrSchemaTooNew) {
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
		s, err := Open(dir)
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

func TestDurability(t *testing.T) {
	dir := t.TempDir()
	clk := newClock()
	ctx := context.Background()
	s, err := OpenWith(dir, Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	mustCommit(t, s, 42, "<m@x>/100", webhook("w1", "ci"),
		Job{ID: "p1", Kind: KindPostAction, Target: "mark_seen", Account: "acct", Mailbox: "INBOX",
			UIDValidity: 7, UID: 42, Rule: "r", DependsOn: []string{"w1"}})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(t, dir, clk)
	cp := mustCheckpoint(t, s)
	want := Checkpoint{UIDValidity: 7, LastUID: 42, LastInternalDate: t0.Add(42 * time.Minute)}
	if cp != want {
		t.Errorf("checkpoint = %+v, want %+v", cp, want)
	}
	if seen, err := s.Seen(ctx, "acct", "INBOX", "<m@x>/100"); err != nil || !seen {
		t.Errorf("Seen = %v, %v; want true", seen, err)
	}
	j, _ := mustJob(t, s, "w1")
	if string(j.Body) != `{"id":"w1"}` || j.State != StatePending || j.Target != "ci" || j.UID != 1 ||
		!j.NextAt.Equal(t0) || !j.CreatedAt.Equal(t0) {
		t.Errorf("w1 = %+v", j)
	}
	p, _ := mustJob(t, s, "p1")
	if !slices.Equal(p.DependsOn, []string{"w1"}) || p.Body != nil {
		t.Errorf("p1 = %+v", p)
	}
}

func TestCommitAtomic(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		jobs []Job
	}{
		// A job the database itself rejects, after the checkpoint, the seen key and a first job
		// were written in the same transaction.
		{"constraint", []Job{webhook("ok", "ci"), webhook("boom", "ci")}},
		{"unknown dependency", []Job{webhook("ok", "ci"), webhook("dep", "ci", "nowhere")}},
		{"dependency on a later job", []Job{webhook("ok", "ci", "later"), webhook("later", "ci")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t, t.TempDir(), newClock())
			if _, err := s.db.Exec(`CREATE TRIGGER inject BEFORE INSERT ON jobs WHEN NEW.id = 'boom'
BEGIN SELECT RAISE(ABORT, 'injected failure'); END`); err != nil {
				t.Fatal(err)
			}
			mustCommit(t, s, 10, "")
			cp := Checkpoint{UIDValidity: 7, LastUID: 11}
			if err := s.Commit(ctx, "acct", "INBOX", cp, "key11", tt.jobs); err == nil {
				t.Fatal("Commit succeeded, want an error")
			}
			if got := mustCheckpoint(t, s).LastUID; got != 10 {
				t.Errorf("checkpoint advanced to %d by a failed commit", got)
			}
			if seen, _ := s.Seen(ctx, "acct", "INBOX", "key11"); seen {
				t.Error("seen key recorded by a failed commit")
			}
			if jobs, _ := s.Jobs(ctx, Filter{}); len(jobs) != 0 {
				t.Errorf("jobs left by a failed commit: %v", ids(jobs))
			}
		})
	}
}

func TestCommitRejectsBadJobs(t *testing.T) {
	s := open(t, t.TempDir(), newClock())
	for name, j := range map[string]Job{
		"empty id":     {Kind: KindWebhook},
		"unknown kind": {ID: "x", Kind: "fax"},
		"in flight":    {ID: "x", Kind: KindWebhook, State: StateInFlight},
		"self dep":     {ID: "x", Kind: KindWebhook, DependsOn: []string{"x"}},
		"repeated dep": {ID: "x", Kind: KindWebhook, DependsOn: []string{"a", "a"}},
	} {
		if err := s.Commit(context.Background(), "acct", "INBOX", Checkpoint{UIDValidity: 7, LastUID: 1}, "", []Job{j}); err == nil {
			t.Errorf("%s: Commit accepted %+v", name, j)
		}
	}
	if _, ok, _ := s.Checkpoint(context.Background(), "acct", "INBOX"); ok {
		t.Error("a rejected commit stored a checkpoint")
	}
}

func TestCheckpointNeverDecreases(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir(), newClock())
	mustCommit(t, s, 10, "")
	mustCommit(t, s, 5, "k5", webhook("late", "ci"))
	if got := mustCheckpoint(t, s); got.LastUID != 10 || !got.LastInternalDate.Equal(t0.Add(10*time.Minute)) {
		t.Errorf("checkpoint = %+v after committing uid 5 over 10; want uid 10 kept", got)
	}
	// The rest of the commit still happened.
	if _, _, err := s.Job(ctx, "late"); err != nil {
		t.Errorf("job of the older message: %v", err)
	}
	mustCommit(t, s, 10, "")
	mustCommit(t, s, 11, "")
	if got := mustCheckpoint(t, s).LastUID; got != 11 {
		t.Errorf("checkpoint = %d, want 11", got)
	}

	err := s.Commit(ctx, "acct", "INBOX", Checkpoint{UIDValidity: 8, LastUID: 12}, "", nil)
	if !errors.Is(err, ErrUIDValidity) {
		t.Errorf("Commit with another uidvalidity: err = %v, want ErrUIDValidity", err)
	}
	if got := mustCheckpoint(t, s); got.UIDValidity != 7 || got.LastUID != 11 {
		t.Errorf("checkpoint = %+v after a refused commit", got)
	}
}

func TestResetCheckpoint(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir(), newClock())
	if _, ok, err := s.Checkpoint(ctx, "acct", "INBOX"); ok || err != nil {
		t.Fatalf("fresh store: ok=%v err=%v", ok, err)
	}
	first := Checkpoint{UIDValidity: 7, LastUID: 99, LastInternalDate: t0}
	if err := s.ResetCheckpoint(ctx, "acct", "INBOX", first); err != nil {
		t.Fatal(err)
	}
	if got := mustCheckpoint(t, s); got != first {
		t.Errorf("checkpoint = %+v, want %+v", got, first)
	}
	mustCommit(t, s, 120, "key120")

	// UIDVALIDITY changed: the reset lowers last_uid, keeps the seen keys, and commits follow it.
	changed := Checkpoint{UIDValidity: 8, LastUID: 3, LastInternalDate: t0.Add(time.Hour)}
	if err := s.ResetCheckpoint(ctx, "acct", "INBOX", changed); err != nil {
		t.Fatal(err)
	}
	if got := mustCheckpoint(t, s); got != changed {
		t.Errorf("checkpoint = %+v, want %+v", got, changed)
	}
	if seen, _ := s.Seen(ctx, "acct", "INBOX", "key120"); !seen {
		t.Error("reset dropped the seen keys that bridge the change")
	}
	if err := s.Commit(ctx, "acct", "INBOX", Checkpoint{UIDValidity: 8, LastUID: 4}, "", nil); err != nil {
		t.Fatalf("commit after reset: %v", err)
	}
	if err := s.Commit(ctx, "acct", "INBOX", Checkpoint{UIDValidity: 7, LastUID: 121}, "", nil); !errors.Is(err, ErrUIDValidity) {
		t.Errorf("commit with the old uidvalidity: err = %v, want ErrUIDValidity", err)
	}
	// Other mailboxes are independent.
	if _, ok, _ := s.Checkpoint(ctx, "acct", "Other"); ok {
		t.Error("checkpoint leaked to another mailbox")
	}
}

func TestCommitIdempotent(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	s := open(t, t.TempDir(), clk)
	w := webhook("w1", "ci")
	p := Job{ID: "p1", Kind: KindPostAction, Target: "move:Archive", DependsOn: []string{"w1"}}
	mustCommit(t, s, 1, "k1", w, p)

	got, err := s.Claim(ctx, KindWebhook, "ci", clk.Now(), 10)
	if err != nil || len(got) != 1 {
		t.Fatalf("claim: %v %v", ids(got), err)
	}
	if err := s.Finish(ctx, "w1", StateDone, time.Time{}, Attempt{Status: "http 200"}); err != nil {
		t.Fatal(err)
	}

	// Replaying the message (crash before the watcher learned of the commit) changes nothing.
	clk.Add(time.Minute)
	w.Body = []byte("different")
	p.DependsOn = nil
	mustCommit(t, s, 1, "k1", w, p)
	jobs, err := s.Jobs(ctx, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids(jobs), []string{"w1", "p1"}) {
		t.Fatalf("jobs = %v, want one of each", ids(jobs))
	}
	j, as := mustJob(t, s, "w1")
	if j.State != StateDone || string(j.Body) != `{"id":"w1"}` || j.Attempts != 1 || len(as) != 1 {
		t.Errorf("replayed w1 = %+v (%d attempts); want it untouched", j, len(as))
	}
	if !slices.Equal(jobs[1].DependsOn, []string{"w1"}) {
		t.Errorf("replayed p1 depends on %v, want [w1]", jobs[1].DependsOn)
	}
}

func TestClaim(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	s := open(t, t.TempDir(), clk)
	now := clk.Now()
	later := webhook("later", "ci")
	later.NextAt = now.Add(time.Minute)
	held := webhook("held", "ci")
	held.State, held.LastError = StateHeld, "endpoint disabled"
	mustCommit(t, s, 1, "",
		webhook("a", "ci"),
		webhook("b", "other"),
		later,
		held,
		Job{ID: "reply", Kind: KindReply, Target: "ack"},
		Job{ID: "post", Kind: KindPostAction, Target: "mark_seen", Account: "acct", Mailbox: "INBOX",
			DependsOn: []string{"a", "reply"}},
		webhook("c", "ci"),
	)

	claim := func(kind, target string, at time.Time, max int) []string {
		t.Helper()
		jobs, err := s.Claim(ctx, kind, target, at, max)
		if err != nil {
			t.Fatalf("claim %s/%s: %v", kind, target, err)
		}
		for _, j := range jobs {
			if j.State != StateInFlight || j.Attempts != 1 {
				t.Errorf("claimed %s: state %s attempts %d", j.ID, j.State, j.Attempts)
			}
		}
		return ids(jobs)
	}
	check := func(name string, got, want []string) {
		t.Helper()
		if !slices.Equal(got, want) {
			t.Errorf("%s: claimed %v, want %v", name, got, want)
		}
	}

	if next, ok, err := s.NextDue(ctx, KindPostAction, ""); ok || err != nil {
		t.Errorf("NextDue of a blocked post-action = %v, %v; want none", next, ok)
	}
	if h, _ := mustJob(t, s, "held"); h.State != StateHeld || h.LastError != "endpoint disabled" {
		t.Errorf("held job stored as %s %q", h.State, h.LastError)
	}
	check("max 1, oldest first", claim(KindWebhook, "ci", now, 1), []string{"a"})
	check("not due, held, claimed skipped", claim(KindWebhook, "ci", now, 10), []string{"c"})
	check("nothing left due", claim(KindWebhook, "ci", now, 10), nil)
	if next, ok, _ := s.NextDue(ctx, KindWebhook, "ci"); !ok || !next.Equal(now.Add(time.Minute)) {
		t.Errorf("NextDue = %v, %v; want %v", next, ok, now.Add(time.Minute))
	}
	check("due at next_at", claim(KindWebhook, "", now.Add(time.Minute), 10), []string{"b", "later"})
	check("max 0", claim(KindReply, "", now, 0), nil)

	check("dependencies pending", claim(KindPostAction, "", now, 10), nil)
	if err := s.Finish(ctx, "a", StateDone, time.Time{}, Attempt{Status: "http 200"}); err != nil {
		t.Fatal(err)
	}
	check("one dependency done", claim(KindPostAction, "", now, 10), nil)
	check("reply by kind", claim(KindReply, "ack", now, 10), []string{"reply"})
	if err := s.Finish(ctx, "reply", StateUnknown, time.Time{}, Attempt{Status: "smtp", Error: "connection lost after DATA"}); err != nil {
		t.Fatal(err)
	}
	check("unknown dependency holds", claim(KindPostAction, "", now, 10), nil)
	if err := s.Requeue(ctx, "reply", now); err != nil {
		t.Fatal(err)
	}
	check("requeued reply", claim(KindReply, "", now, 10), []string{"reply"})
	if err := s.Finish(ctx, "reply", StateDone, time.Time{}, Attempt{Status: "smtp 250"}); err != nil {
		t.Fatal(err)
	}
	if next, ok, _ := s.NextDue(ctx, KindPostAction, ""); !ok || !next.Equal(now) {
		t.Errorf("NextDue of an unblocked post-action = %v, %v; want %v", next, ok, now)
	}
	post, err := s.ClaimSelected(ctx, Selector{Kind: KindPostAction, Account: "acct", Mailbox: "Other"}, now, 10)
	if err != nil {
		t.Fatal(err)
	}
	check("another mailbox's post-actions", ids(post), nil)
	post, err = s.ClaimSelected(ctx, Selector{Kind: KindPostAction, Account: "acct", Mailbox: "INBOX"}, now, 10)
	if err != nil {
		t.Fatal(err)
	}
	check("own post-actions, all dependencies done", ids(post), []string{"post"})
}

func TestClaimConcurrent(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	s := open(t, t.TempDir(), clk)
	const n = 120
	var jobs []Job
	for i := range n {
		jobs = append(jobs, webhook(fmt.Sprintf("j%03d", i), "ci"))
	}
	mustCommit(t, s, 1, "", jobs...)

	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		got = map[string]int{}
	)
	errc := make(chan error, 2)
	for range 2 {
		wg.Go(func() {
			for {
				js, err := s.Claim(ctx, KindWebhook, "ci", clk.Now(), 3)
				if err != nil {
					errc <- err
					return
				}
				if len(js) == 0 {
					return
				}
				mu.Lock()
				for _, j := range js {
					got[j.ID]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Errorf("claimed %d distinct jobs, want %d", len(got), n)
	}
	for id, c := range got {
		if c != 1 {
			t.Errorf("job %s claimed %d times", id, c)
		}
	}
}

func TestReopenRecoversInFlight(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	clk := newClock()
	s, err := OpenWith(dir, Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	mustCommit(t, s, 1, "", webhook("w", "ci"), Job{ID: "r", Kind: KindReply, Target: "ack"},
		webhook("idle", "other"))
	for _, kind := range []string{KindWebhook, KindReply} {
		if _, err := s.Claim(ctx, kind, "", clk.Now(), 1); err != nil {
			t.Fatal(err)
		}
	}
	s.Close() // as if killed: nothing settled the claimed jobs

	clk.Add(time.Second)
	s = open(t, dir, clk)
	tests := []struct {
		id, state string
		attempts  int
		recorded  bool
	}{
		{"w", StatePending, 1, true}, // at least once: goes again, attempt counted
		{"r", StateUnknown, 1, true}, // at most once: never resent
		{"idle", StatePending, 0, false},
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
	if got, _ := s.Claim(ctx, KindWebhook, "ci", clk.Now(), 10); !slices.Equal(ids(got), []string{"w"}) {
		t.Errorf("claim after recovery = %v, want [w]", ids(got))
	}
}

func TestWakeBroadcast(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir(), newClock())
	w1, w2 := s.Wake(), s.Wake()
	select {
	case <-w1:
		t.Fatal("Wake fired before any change")
	default:
	}

	woken := make(chan int, 2)
	for i, w := range []<-chan struct{}{w1, w2} {
		go func() {
			select {
			case <-w:
				woken <- i
			case <-time.After(10 * time.Second):
				woken <- -1
			}
		}()
	}
	mustCommit(t, s, 1, "", webhook("a", "ci"))
	for range 2 {
		if i := <-woken; i < 0 {
			t.Fatal("a waiter was not woken by Commit")
		}
	}

	// The next channel is a fresh one, fired by the next change (here a Finish to done).
	w3 := s.Wake()
	select {
	case <-w3:
		t.Fatal("new Wake channel already fired")
	default:
	}
	if _, err := s.Claim(ctx, KindWebhook, "", t0, 1); err != nil {
		t.Fatal(err)
	}
	if err := s.Finish(ctx, "a", StateDone, time.Time{}, Attempt{Status: "ok"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-w3:
	case <-time.After(10 * time.Second):
		t.Fatal("Finish(done) did not wake")
	}
}

func TestSeenExpires(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	s := open(t, t.TempDir(), clk)
	mustCommit(t, s, 1, "old")
	clk.Add(20 * 24 * time.Hour)
	mustCommit(t, s, 2, "new")

	seen := func(key string) bool {
		t.Helper()
		ok, err := s.Seen(ctx, "acct", "INBOX", key)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !seen("old") || !seen("new") {
		t.Fatal("keys not seen within 30 days")
	}
	if ok, _ := s.Seen(ctx, "acct", "Other", "old"); ok {
		t.Error("a key of INBOX is seen in another mailbox")
	}
	clk.Add(10*24*time.Hour + time.Second) // old is now 30 days + 1 s old, new 10 days
	if seen("old") || !seen("new") {
		t.Errorf("after 30 days: old %v new %v; want false true", seen("old"), seen("new"))
	}
	// Pruning removes the row itself.
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

func TestFinish(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	s := open(t, t.TempDir(), clk)
	mustCommit(t, s, 1, "", webhook("a", "ci"))
	if err := s.Finish(ctx, "a", StateDone, time.Time{}, Attempt{}); !errors.Is(err, ErrState) {
		t.Errorf("Finish of a pending job: err = %v, want ErrState", err)
	}
	if err := s.Finish(ctx, "nope", StateDone, time.Time{}, Attempt{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("Finish of a missing job: err = %v, want ErrNotFound", err)
	}
	if err := s.Finish(ctx, "a", StateInFlight, time.Time{}, Attempt{}); err == nil {
		t.Error("Finish to in_flight accepted")
	}

	retryAt := clk.Now().Add(30 * time.Second)
	if _, err := s.Claim(ctx, KindWebhook, "ci", clk.Now(), 1); err != nil {
		t.Fatal(err)
	}
	if err := s.Finish(ctx, "a", StatePending, retryAt, Attempt{Status: "http 503", Error: "service unavailable"}); err != nil {
		t.Fatal(err)
	}
	j, as := mustJob(t, s, "a")
	if j.State != StatePending || !j.NextAt.Equal(retryAt) || j.LastError != "service unavailable" || j.Attempts != 1 {
		t.Errorf("after retry: %+v", j)
	}
	if len(as) != 1 || as[0] != (Attempt{JobID: "a", At: clk.Now(), Status: "http 503", Error: "service unavailable"}) {
		t.Errorf("attempts = %+v", as)
	}
	if got, _ := s.Claim(ctx, KindWebhook, "ci", retryAt.Add(-time.Nanosecond), 1); len(got) != 0 {
		t.Error("claimed before next_at")
	}
	got, _ := s.Claim(ctx, KindWebhook, "ci", retryAt, 1)
	if len(got) != 1 || got[0].Attempts != 2 {
		t.Fatalf("second claim = %+v", got)
	}
	at := clk.Now().Add(time.Minute)
	if err := s.Finish(ctx, "a", StateDead, time.Time{}, Attempt{At: at, Status: "http 404", Error: "not found"}); err != nil {
		t.Fatal(err)
	}
	j, as = mustJob(t, s, "a")
	if j.State != StateDead || !j.NextAt.Equal(retryAt) || len(as) != 2 || !as[1].At.Equal(at) {
		t.Errorf("after dead: %+v %+v", j, as)
	}
}

func TestRequeueReleaseDropCounts(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	s := open(t, t.TempDir(), clk)
	h1, h2 := webhook("h1", "off"), webhook("h2", "off")
	h1.State, h2.State = StateHeld, StateHeld
	mustCommit(t, s, 1, "", webhook("a", "ci"), webhook("b", "ci"), h1, h2,
		Job{ID: "post", Kind: KindPostAction, Target: "mark_seen", DependsOn: []string{"a"}})
	if _, err := s.Claim(ctx, KindWebhook, "ci", clk.Now(), 2); err != nil {
		t.Fatal(err)
	}
	if err := s.Finish(ctx, "a", StateDead, time.Time{}, Attempt{Status: "http 400"}); err != nil {
		t.Fatal(err)
	}

	counts, err := s.Counts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{StatePending: 1, StateInFlight: 1, StateDone: 0, StateDead: 1, StateUnknown: 0, StateHeld: 2}
	if fmt.Sprint(counts) != fmt.Sprint(want) {
		t.Errorf("Counts = %v, want %v", counts, want)
	}
	dead, err := s.Jobs(ctx, Filter{State: StateDead})
	if err != nil || !slices.Equal(ids(dead), []string{"a"}) || dead[0].Body != nil {
		t.Errorf("Jobs(dead) = %+v, %v", dead, err)
	}
	if page, _ := s.Jobs(ctx, Filter{Limit: 2}); !slices.Equal(ids(page), []string{"a", "b"}) {
		t.Errorf("Jobs(limit 2) = %v", ids(page))
	}
	if tgt, _ := s.Jobs(ctx, Filter{Selector: Selector{Target: "off"}}); !slices.Equal(ids(tgt), []string{"h1", "h2"}) {
		t.Errorf("Jobs(target off) = %v", ids(tgt))
	}

	if err := s.Requeue(ctx, "b", clk.Now()); !errors.Is(err, ErrState) {
		t.Errorf("Requeue of an in-flight job: err = %v, want ErrState", err)
	}
	if err := s.Drop(ctx, "b"); !errors.Is(err, ErrState) {
		t.Errorf("Drop of an in-flight job: err = %v, want ErrState", err)
	}
	err = s.Drop(ctx, "a")
	if !errors.Is(err, ErrDependents) || !strings.Contains(err.Error(), "post") {
		t.Errorf("Drop of a job with a pending dependent: err = %v, want ErrDependents naming post", err)
	}
	if err := s.Drop(ctx, "missing"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Drop of a missing job: err = %v, want ErrNotFound", err)
	}

	clk.Add(time.Hour)
	if err := s.Requeue(ctx, "a", clk.Now()); err != nil {
		t.Fatal(err)
	}
	j, as := mustJob(t, s, "a")
	if j.State != StatePending || j.Attempts != 0 || !j.NextAt.Equal(clk.Now()) || len(as) != 1 {
		t.Errorf("requeued: %+v, %d attempts recorded", j, len(as))
	}

	n, err := s.Release(ctx, Selector{Kind: KindWebhook, Target: "off"}, clk.Now())
	if err != nil || n != 2 {
		t.Errorf("Release = %d, %v; want 2", n, err)
	}
	if got, _ := s.Claim(ctx, KindWebhook, "off", clk.Now(), 10); !slices.Equal(ids(got), []string{"h1", "h2"}) {
		t.Errorf("claim after release = %v", ids(got))
	}

	if err := s.Drop(ctx, "post"); err != nil {
		t.Fatal(err)
	}
	if err := s.Drop(ctx, "a"); err != nil {
		t.Fatalf("Drop after its dependent went: %v", err)
	}
	if _, _, err := s.Job(ctx, "a"); !errors.Is(err, ErrNotFound) {
		t.Errorf("dropped job: err = %v, want ErrNotFound", err)
	}
	var n2 int
	if err := s.db.QueryRow(`SELECT (SELECT COUNT(*) FROM attempts WHERE job_id = 'a') + (SELECT COUNT(*) FROM job_deps)`).Scan(&n2); err != nil || n2 != 0 {
		t.Errorf("rows left after drop: %d %v", n2, err)
	}
}

func TestPrune(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	s, err := OpenWith(t.TempDir(), Options{Now: clk.Now, DoneRetention: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mustCommit(t, s, 1, "",
		webhook("done", "ci"), webhook("needed", "ci"), webhook("dead", "ci"),
		Job{ID: "post", Kind: KindPostAction, Target: "mark_seen", DependsOn: []string{"needed", "dead"}})
	if _, err := s.Claim(ctx, KindWebhook, "ci", clk.Now(), 3); err != nil {
		t.Fatal(err)
	}
	for id, st := range map[string]string{"done": StateDone, "needed": StateDone, "dead": StateDead} {
		if err := s.Finish(ctx, id, st, time.Time{}, Attempt{Status: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Prune(ctx, clk.Now().Add(23*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if jobs, _ := s.Jobs(ctx, Filter{}); len(jobs) != 4 {
		t.Errorf("pruned before the retention: %v", ids(jobs))
	}
	if err := s.Prune(ctx, clk.Now().Add(25*time.Hour)); err != nil {
		t.Fatal(err)
	}
	jobs, _ := s.Jobs(ctx, Filter{})
	if !slices.Equal(ids(jobs), []string{"needed", "dead", "post"}) {
		t.Errorf("after prune: %v; want the done job needed by post kept", ids(jobs))
	}

	// Commit prunes by itself, at most once an hour.
	clk.Add(48 * time.Hour)
	mustCommit(t, s, 2, "")
	if jobs, _ := s.Jobs(ctx, Filter{}); len(jobs) != 3 {
		t.Errorf("Commit pruned jobs still needed: %v", ids(jobs))
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
	at := func(d time.Duration, uid uint32, key string) {
		t.Helper()
		clk.Add(t0.Add(d).Sub(clk.Now()))
		mustCommit(t, s, uid, key)
	}
	const month = DefaultSeenTTL
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
	if seen, _ := s.Seen(ctx, "acct", "INBOX", "k2"); seen {
		t.Error("an expired key not yet pruned is still seen")
	}
	at(month+80*time.Minute, 5, "k5") // an hour after the last prune
	if stored("k2") || !stored("k3") {
		t.Errorf("after the second hourly prune: k2 stored %v, k3 stored %v; want false, true", stored("k2"), stored("k3"))
	}
}

// BenchmarkCommit measures one message's commit on disk (synchronous=FULL, so one fsync of the
// WAL): checkpoint advance, seen key and two jobs with a 4 KiB body each. It reports the median
// and 99th percentile per commit besides the mean.
func BenchmarkCommit(b *testing.B) {
	ctx := context.Background()
	s, err := Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	body := []byte(strings.Repeat("x", 4096))
	durs := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		uid := uint32(i + 1)
		jobs := []Job{
			{ID: JobID("acct", "INBOX", 7, uid, "r", 0), Kind: KindWebhook, Target: "ci", Account: "acct",
				Mailbox: "INBOX", UIDValidity: 7, UID: uid, Rule: "r", Body: body},
			{ID: JobID("acct", "INBOX", 7, uid, "r", 1), Kind: KindWebhook, Target: "chat", Account: "acct",
				Mailbox: "INBOX", UIDValidity: 7, UID: uid, Rule: "r", Body: body},
		}
		start := time.Now()
		if err := s.Commit(ctx, "acct", "INBOX", Checkpoint{UIDValidity: 7, LastUID: uid}, fmt.Sprintf("<%d@x>/4096", i), jobs); err != nil {
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
