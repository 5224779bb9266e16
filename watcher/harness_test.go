package watcher_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailhook/mailhook/message"
	"github.com/mailhook/mailhook/store"
	"github.com/mailhook/mailhook/watcher"
)

// waitTimeout bounds every wait in these tests.
const waitTimeout = 20 * time.Second

// eventually polls cond every 5 ms until it holds or waitTimeout passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", waitTimeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// fakeState is an in-memory watcher.State of one mailbox that checks the checkpoint invariant
// (it never decreases within one UIDVALIDITY) and can fail commits on demand.
type fakeState struct {
	mu          sync.Mutex
	cps         map[string]store.Checkpoint
	seen        map[string]bool
	commits     []commitRecord
	resets      []store.Checkpoint
	violations  []string
	failCommits map[uint32]int // uid → how many more commits of it fail
	commitErr   error          // when set, every commit fails with it

	record  *store.FetchRange  // the fetch record, nil when none
	begun   []store.FetchRange // every BeginFetch, in order
	strikes map[uint32]int
}

type commitRecord struct {
	validity, uid uint32
	key           string
	jobs          int
}

var _ watcher.State = (*fakeState)(nil)

func newFakeState() *fakeState {
	return &fakeState{cps: map[string]store.Checkpoint{}, seen: map[string]bool{}, failCommits: map[uint32]int{},
		strikes: map[uint32]int{}}
}

func (f *fakeState) Checkpoint(context.Context) (store.Checkpoint, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	cp, ok := f.cps[""]
	return cp, ok, nil
}

func (f *fakeState) ResetCheckpoint(_ context.Context, cp store.Checkpoint) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cps[""] = cp
	f.resets = append(f.resets, cp)
	return nil
}

// Commit applies the batch all or nothing: an injected failure of any entry fails all of it.
func (f *fakeState) Commit(_ context.Context, batch []store.Commit) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.commitErr != nil {
		return f.commitErr
	}
	for _, c := range batch {
		if uid := c.Checkpoint.LastUID; f.failCommits[uid] > 0 {
			f.failCommits[uid]--
			return fmt.Errorf("injected commit failure for uid %d", uid)
		}
	}
	for _, c := range batch {
		cp := c.Checkpoint
		old, ok := f.cps[""]
		if ok && old.UIDValidity == cp.UIDValidity && cp.LastUID <= old.LastUID {
			f.violations = append(f.violations, fmt.Sprintf("checkpoint %d after %d", cp.LastUID, old.LastUID))
		}
		f.cps[""] = cp
		if f.record != nil && f.record.UIDValidity == cp.UIDValidity && cp.LastUID >= f.record.Hi {
			f.record = nil
		}
		for uid := range f.strikes {
			if uid <= cp.LastUID {
				delete(f.strikes, uid)
			}
		}
		f.seen[c.Key] = true
		f.commits = append(f.commits, commitRecord{cp.UIDValidity, cp.LastUID, c.Key, len(c.Jobs)})
	}
	return nil
}

func (f *fakeState) Seen(_ context.Context, key string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.seen[key], nil
}

func (f *fakeState) BeginFetch(_ context.Context, r store.FetchRange) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record = &r
	f.begun = append(f.begun, r)
	return nil
}

func (f *fakeState) EndFetch(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record = nil
	return nil
}

func (f *fakeState) UnfinishedFetch(context.Context) (store.FetchRange, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.record == nil {
		return store.FetchRange{}, false, nil
	}
	return *f.record, true, nil
}

func (f *fakeState) StrikeFetch(_ context.Context, _, uid uint32, _ string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.strikes[uid]++
	return f.strikes[uid], nil
}

func (f *fakeState) FetchStrikes(_ context.Context, _, uid uint32) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.strikes[uid], nil
}

func (f *fakeState) committedUIDs() []uint32 {
	f.mu.Lock()
	defer f.mu.Unlock()
	var uids []uint32
	for _, c := range f.commits {
		uids = append(uids, c.uid)
	}
	return uids
}

func (f *fakeState) checkInvariants(t *testing.T) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, v := range f.violations {
		t.Errorf("checkpoint invariant violated: %s", v)
	}
}

// recorder is a Handler that records events and returns one job per message.
type recorder struct {
	mu     sync.Mutex
	events []*watcher.Event
	calls  map[uint32]int
	hook   func(ev *watcher.Event) // runs inside Handle, before recording
	// inline chooses the attachments the match ships inline (Matched.Inline); nil ships none.
	inline func(ev *watcher.Event) []message.Attachment
}

// Match returns the recorder's match of ev: inline's choice, and Handle for the jobs.
func (r *recorder) Match(ev *watcher.Event) watcher.Matched {
	var chosen []message.Attachment
	if r.inline != nil {
		chosen = r.inline(ev)
	}
	return recorded{jobs: r.Handle, inline: chosen}
}

// recorded is a recorder's match of one message.
type recorded struct {
	jobs   watcher.HandlerFunc
	inline []message.Attachment
}

func (d recorded) Inline() []message.Attachment { return d.inline }

func (d recorded) Jobs(ctx context.Context, ev *watcher.Event) ([]store.Job, error) {
	return d.jobs(ctx, ev)
}

func newRecorder() *recorder { return &recorder{calls: map[uint32]int{}} }

func (r *recorder) Handle(_ context.Context, ev *watcher.Event) ([]store.Job, error) {
	if r.hook != nil {
		r.hook(ev)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev)
	r.calls[ev.UID]++
	return []store.Job{{ID: fmt.Sprintf("job-%d-%d", ev.UIDValidity, ev.UID), Kind: store.KindWebhook}}, nil
}

// uids returns the UIDs handled so far, in order.
func (r *recorder) uids() []uint32 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var uids []uint32
	for _, ev := range r.events {
		uids = append(uids, ev.UID)
	}
	return uids
}

func (r *recorder) subjects() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var s []string
	for _, ev := range r.events {
		s = append(s, ev.Message.Subject)
	}
	return s
}

func (r *recorder) waitUIDs(t *testing.T, want ...uint32) {
	t.Helper()
	eventually(t, fmt.Sprintf("handled UIDs %v", want), func() bool { return len(r.uids()) >= len(want) })
	if got := r.uids(); !slices.Equal(got, want) {
		t.Fatalf("handled UIDs %v, want %v", got, want)
	}
}

// syncBuffer collects log output from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// baseConfig is a plain-text loopback config with test-sized timers.
func baseConfig(addr, user, password string, logs *syncBuffer) watcher.Config {
	return watcher.Config{
		Account:        "acct",
		Mailbox:        "INBOX",
		Addr:           addr,
		Security:       watcher.SecurityPlain,
		Username:       user,
		Password:       password,
		Start:          watcher.StartNew,
		IdleRefresh:    time.Minute,
		PollInterval:   time.Minute,
		CommandTimeout: 10 * time.Second,
		WatchdogSlack:  5 * time.Second,
		Backoff:        watcher.Backoff{Min: 5 * time.Millisecond, Max: 50 * time.Millisecond, AuthMin: 300 * time.Millisecond, QuotaMin: time.Second},
		Logger:         slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

// runWatcher starts w.Run and stops it (and checks it returned nil) when the test ends.
func runWatcher(t *testing.T, w *watcher.Watcher, logs *syncBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v after cancel", err)
			}
		case <-time.After(waitTimeout):
			t.Errorf("Run did not return within %v of cancel", waitTimeout)
		}
		if st := w.Status(); st.State != watcher.StateStopped {
			t.Errorf("state after Run = %q", st.State)
		}
		if t.Failed() {
			t.Logf("watcher log:\n%s", logs.String())
		}
	})
}

// waitState waits until the watcher reports state.
func waitState(t *testing.T, w *watcher.Watcher, state string) {
	t.Helper()
	eventually(t, "state "+state, func() bool { return w.Status().State == state })
}

func mustNew(t *testing.T, cfg watcher.Config, st watcher.State, h watcher.Handler) *watcher.Watcher {
	t.Helper()
	w, err := watcher.New(cfg, st, h)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return w
}

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
