package spool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailhook/mailhook/store"
)

// fakeJobs is a Jobs over a map of job states.
type fakeJobs struct {
	mu     sync.Mutex
	states map[string]string
}

func (f *fakeJobs) Job(_ context.Context, id string) (store.Job, []store.Attempt, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, ok := f.states[id]
	if !ok {
		return store.Job{}, nil, store.ErrNotFound
	}
	return store.Job{ID: id, State: st}, nil, nil
}

func (f *fakeJobs) set(id, state string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.states[id] = state
}

// TestSpoolSweep: done jobs lose their files; pending, in-flight and dead jobs keep them (a dead
// job must stay retryable); files of jobs not in the outbox and incoming directories (a crash
// between spooling and commit) go once older than the grace period, not before.
func TestSpoolSweep(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	sp, err := Open(dir, Options{Grace: time.Hour, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	jobs := &fakeJobs{states: map[string]string{
		"msg_DONE": store.StateDone, "msg_PENDING": store.StatePending, "msg_FLIGHT": store.StateInFlight,
		"msg_DEAD": store.StateDead, "msg_HELD": store.StateHeld,
	}}
	src := filepath.Join(t.TempDir(), "content")
	if err := os.WriteFile(src, []byte("%PDF"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"msg_DONE", "msg_PENDING", "msg_FLIGHT", "msg_DEAD", "msg_HELD", "msg_ORPHANOLD", "msg_ORPHANNEW"} {
		if err := sp.Attach(context.Background(), id, map[string]string{"2": src}); err != nil {
			t.Fatal(err)
		}
	}
	old := now.Add(-2 * time.Hour)
	age := func(path string) {
		t.Helper()
		filepath.Walk(path, func(p string, _ os.FileInfo, _ error) error { return os.Chtimes(p, old, old) })
	}
	age(filepath.Join(dir, "spool", "jobs", "msg_ORPHANOLD"))
	for _, d := range []string{"daemon/1-5-old", "daemon/1-6-new", "tool-old", "tool-new"} {
		p := filepath.Join(dir, "spool", "incoming", d)
		if err := os.MkdirAll(p, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(p, "2"), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(d, "old") {
			age(p)
		}
	}
	n, err := sp.Sweep(context.Background(), jobs)
	if err != nil {
		t.Fatal(err)
	}
	if n != 4 {
		t.Errorf("Sweep removed %d directories, want 4", n)
	}
	for path, kept := range map[string]bool{
		"jobs/msg_DONE": false, "jobs/msg_PENDING": true, "jobs/msg_FLIGHT": true, "jobs/msg_DEAD": true,
		"jobs/msg_HELD": true, "jobs/msg_ORPHANOLD": false, "jobs/msg_ORPHANNEW": true,
		"incoming/daemon/1-5-old": false, "incoming/daemon/1-6-new": true, "incoming/tool-old": false,
		"incoming/tool-new": true,
	} {
		_, err := os.Stat(filepath.Join(dir, "spool", path))
		if exists := err == nil; exists != kept {
			t.Errorf("%s: exists %v, want %v", path, exists, kept)
		}
	}
	if _, err := Open(dir, Options{}); err != nil { // the daemon's next start
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "spool", "incoming", "daemon")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open left the daemon's incoming directory: %v", err)
	}
}

// TestSpoolRunRemovesDone: Run removes a job's files after Done once the outbox records the job
// done, even when that is recorded a little after Done (the Observe hook runs before Finish).
func TestSpoolRunRemovesDone(t *testing.T) {
	dir := t.TempDir()
	sp, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(t.TempDir(), "content")
	if err := os.WriteFile(src, []byte("%PDF"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := sp.Attach(context.Background(), "msg_A", map[string]string{"2": src}); err != nil {
		t.Fatal(err)
	}
	jobs := &fakeJobs{states: map[string]string{"msg_A": store.StateInFlight}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sp.Run(ctx, jobs) }()
	defer func() { cancel(); <-done }()

	sp.Done("msg_A") // still in flight: kept for now
	jobs.set("msg_A", store.StateDone)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(dir, "spool", "jobs", "msg_A")); errors.Is(err, os.ErrNotExist) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the done job's spool was not removed within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := os.Stat(src); err != nil {
		t.Errorf("the incoming file was removed with the job's link: %v", err)
	}
}

// An incoming Message holds one file per section; Attach links them into a job, whose files
// OpenFile reads after the Message is removed. A discarded section is not among Files, and a
// section that is not an IMAP part number names no file.
// With Options.Blobs (a store shared by replicas) the job's files are the store's blobs instead.
func TestIncomingToJob(t *testing.T) {
	t.Run("files", func(t *testing.T) { testIncomingToJob(t, nil) })
	t.Run("blobs", func(t *testing.T) { testIncomingToJob(t, &memBlobs{m: map[string][]byte{}}) })
}

func testIncomingToJob(t *testing.T, blobs *memBlobs) {
	opts := Options{}
	if blobs != nil {
		opts.Blobs = blobs
	}
	sp, err := Open(t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	m, err := sp.Incoming().Message(7, 42)
	if err != nil {
		t.Fatal(err)
	}
	for sec, content := range map[string]string{"2": "%PDF", "4.2": "contract", "3": "undecodable"} {
		f, err := m.Create(sec)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(f, content); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	m.Discard("3")
	for _, bad := range []string{"../x", "", "0", "2."} {
		if _, err := m.Create(bad); err == nil {
			t.Errorf("Create(%q) succeeded", bad)
		}
	}
	if err := m.Sync(); err != nil {
		t.Fatal(err)
	}
	if files := m.Files(); len(files) != 2 || files["2"] == "" || files["4.2"] == "" {
		t.Fatalf("Files = %v, want sections 2 and 4.2", files)
	}
	if err := sp.Attach(context.Background(), "msg_A", m.Files()); err != nil {
		t.Fatal(err)
	}
	if err := m.Remove(); err != nil {
		t.Fatal(err)
	}
	for sec, want := range map[string]string{"2": "%PDF", "4.2": "contract"} {
		f, err := sp.OpenFile(context.Background(), "msg_A", sec)
		if err != nil {
			t.Fatalf("section %s: %v", sec, err)
		}
		b, err := io.ReadAll(io.NewSectionReader(f, 0, f.Size()))
		f.Close()
		if err != nil || string(b) != want {
			t.Errorf("section %s: %q, %v; want %q", sec, b, err, want)
		}
	}
	if _, err := sp.OpenFile(context.Background(), "msg_A", "3"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("discarded section 3: %v, want not found", err)
	}
	if _, err := sp.OpenFile(context.Background(), "../etc", "2"); err == nil {
		t.Error("a job id with a path in it opened a file")
	}
	var none *Message
	if none.Files() != nil || none.Remove() != nil {
		t.Error("a nil Message has files or fails to remove")
	}
	if blobs == nil {
		return
	}
	if len(blobs.m) != 2 || blobs.m["msg_A/2"] == nil {
		t.Errorf("blobs %v, want msg_A/2 and msg_A/4.2", slices.Collect(maps.Keys(blobs.m)))
	}
	if entries, _ := os.ReadDir(filepath.Join(sp.dir, jobsDir)); len(entries) != 0 {
		t.Errorf("%d job directories beside the blobs", len(entries))
	}
	if err := sp.Remove(context.Background(), "msg_A"); err != nil || len(blobs.m) != 0 {
		t.Errorf("Remove: %v, %d blobs left", err, len(blobs.m))
	}
}

// memBlobs is a store.Blobs in memory.
type memBlobs struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (b *memBlobs) PutBlob(_ context.Context, key string, r io.Reader) (int64, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return 0, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.m[key] = data
	return int64(len(data)), nil
}

func (b *memBlobs) OpenBlob(_ context.Context, key string) (store.Blob, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	data, ok := b.m[key]
	if !ok {
		return nil, fmt.Errorf("open blob %q: %w", key, fs.ErrNotExist)
	}
	return memBlob{bytes.NewReader(data)}, nil
}

func (b *memBlobs) DeleteBlobs(_ context.Context, prefix string) (int64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := int64(0)
	for k := range b.m {
		if strings.HasPrefix(k, prefix) {
			delete(b.m, k)
			n++
		}
	}
	return n, nil
}

func (b *memBlobs) SweepJobBlobs(context.Context, time.Time) (int64, error) { return 0, nil }

type memBlob struct{ *bytes.Reader }

func (memBlob) Close() error { return nil }

// A tool beside the daemon (Shared) streams into an incoming directory of its own, which Close
// removes; the daemon's incoming directory, and what the daemon has in it, stay.
func TestSharedIncoming(t *testing.T) {
	dir := t.TempDir()
	daemon, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	dm, err := daemon.Incoming().Message(1, 1)
	if err != nil {
		t.Fatal(err)
	}
	tool, err := Open(dir, Options{Shared: true})
	if err != nil {
		t.Fatal(err)
	}
	tm, err := tool.Incoming().Message(1, 1)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(tm.dir) == filepath.Dir(dm.dir) {
		t.Fatalf("tool and daemon share the incoming directory %s", filepath.Dir(tm.dir))
	}
	if !strings.HasPrefix(filepath.Base(filepath.Dir(tm.dir)), "tool-") {
		t.Errorf("tool's incoming directory %s, want incoming/tool-…", filepath.Dir(tm.dir))
	}
	if err := tool.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Dir(tm.dir)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Close left the tool's incoming directory: %v", err)
	}
	if _, err := os.Stat(dm.dir); err != nil {
		t.Errorf("the tool touched the daemon's incoming directory: %v", err)
	}
	if err := daemon.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dm.dir); err != nil {
		t.Errorf("the daemon's Close removed its incoming directory: %v", err)
	}
}
