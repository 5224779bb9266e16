package watcher_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/mailhook/mailhook/internal/testmail"
	"github.com/mailhook/mailhook/store"
	"github.com/mailhook/mailhook/watcher"
)

// TestPanicBecomesFetchFailure: a Handler that panics on one message does not take the process
// down; each panic is a recorded strike of that message, and after three it is delivered degraded
// (fetch_failed) while the messages around it are delivered normally, in order.
func TestPanicBecomesFetchFailure(t *testing.T) {
	srv := testmail.StartMemServer(t, testmail.MemOptions{})
	uids := appendN(t, srv, 0, 3)
	logs := &syncBuffer{}
	st, rec := newFakeState(), newRecorder()
	rec.hook = func(ev *watcher.Event) {
		if ev.UID == uids[1] && !slices.Contains(ev.Message.Defects, "fetch_failed") {
			panic("boom in a rule")
		}
	}
	cfg := baseConfig(srv.Addr(), srv.User(), srv.Password(), logs)
	cfg.Start = watcher.StartAll
	w := mustNew(t, cfg, st, rec)
	runWatcher(t, w, logs)

	eventually(t, "all three committed", func() bool { return len(st.committedUIDs()) == 3 })
	if got := st.committedUIDs(); !slices.Equal(got, uids) {
		t.Fatalf("committed %v, want %v", got, uids)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, ev := range rec.events {
		degraded := slices.Contains(ev.Message.Defects, "fetch_failed")
		if degraded != (ev.UID == uids[1]) {
			t.Errorf("uid %d delivered with defects %v", ev.UID, ev.Message.Defects)
		}
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.strikes) != 0 {
		t.Errorf("strikes left after the commit passed them: %v", st.strikes)
	}
}

// TestFetchRecordPerBatch: a catch-up writes one fetch record per batch (not per message), and the
// commit of the batch's last message clears it. A batch whose first pass is sent ahead, with the
// second pass of the batch before it, has a record that spans both, so the batch being handled
// stays recorded until committed.
func TestFetchRecordPerBatch(t *testing.T) {
	uids, got, st := catchUpRecords(t, 7, 3, 0)
	want := [][2]uint32{{uids[0], uids[2]}, {uids[0], uids[5]}, {uids[3], uids[6]}}
	if !slices.Equal(got, want) {
		t.Errorf("fetch records %v, want one per batch %v", got, want)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.record != nil {
		t.Errorf("fetch record %+v left after the batch committed", *st.record)
	}
}

// TestBatchesGrow: with MaxBatchSize above BatchSize, a catch-up's batches double while they
// arrive whole (2, 4, 8, then capped at 8), so a long backlog costs fewer round trips; each fetch
// record spans a batch and the next one sent ahead with it, as without growth.
func TestBatchesGrow(t *testing.T) {
	uids, got, _ := catchUpRecords(t, 20, 2, 8)
	// Batches: uids[0:2], [2:6], [6:14], [14:20]; each record runs from a batch's first UID to
	// the last of the batch sent ahead with its second pass.
	want := [][2]uint32{{uids[0], uids[1]}, {uids[0], uids[5]}, {uids[2], uids[13]}, {uids[6], uids[19]}}
	if !slices.Equal(got, want) {
		t.Errorf("fetch records %v, want batches of 2, 4, 8, 6 %v", got, want)
	}
}

// catchUpRecords runs a watcher with start: all over n messages in batches of batch (growing up
// to maxBatch; 0: the default) until every one is committed, and returns their UIDs, the fetch
// records it began, as [Lo, Hi], and its state.
func catchUpRecords(t *testing.T, n, batch, maxBatch int) ([]uint32, [][2]uint32, *fakeState) {
	t.Helper()
	srv := testmail.StartMemServer(t, testmail.MemOptions{})
	uids := appendN(t, srv, 0, n)
	logs := &syncBuffer{}
	st, rec := newFakeState(), newRecorder()
	cfg := baseConfig(srv.Addr(), srv.User(), srv.Password(), logs)
	cfg.Start = watcher.StartAll
	cfg.BatchSize, cfg.MaxBatchSize = batch, maxBatch
	w := mustNew(t, cfg, st, rec)
	runWatcher(t, w, logs)
	rec.waitUIDs(t, uids...)
	eventually(t, "all committed", func() bool { return len(st.committedUIDs()) == len(uids) })
	st.mu.Lock()
	defer st.mu.Unlock()
	var got [][2]uint32
	for _, r := range st.begun {
		got = append(got, [2]uint32{r.Lo, r.Hi})
	}
	return uids, got, st
}

// TestUnfinishedFetchAfterRestart: a process that stops while handling a message (here: it is
// cancelled from inside the Handler, before the commit, as a kill would) leaves its batch's
// record. The next process fetches that range one message at a time, and a message that stops
// the process on every attempt collects one strike per restart until it is delivered degraded.
func TestUnfinishedFetchAfterRestart(t *testing.T) {
	srv := testmail.StartMemServer(t, testmail.MemOptions{})
	uids := appendN(t, srv, 0, 5)
	poison := uids[2]
	st := newFakeState()
	cfg := func(logs *syncBuffer) watcher.Config {
		c := baseConfig(srv.Addr(), srv.User(), srv.Password(), logs)
		c.Start = watcher.StartAll
		return c
	}
	// run starts a "process" and returns when the poison message stopped it, or when every
	// message is committed.
	run := func(i int) (stopped bool) {
		logs := &syncBuffer{}
		rec := newRecorder()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		died := make(chan struct{})
		rec.hook = func(ev *watcher.Event) {
			if ev.UID == poison && !slices.Contains(ev.Message.Defects, "fetch_failed") {
				close(died)
				cancel()
				<-ctx.Done()
			}
		}
		// The Handler returns an error after the cancel, so nothing of the batch is committed.
		h := watcher.HandlerFunc(func(ctx context.Context, ev *watcher.Event) ([]store.Job, error) {
			jobs, err := rec.Handle(ctx, ev)
			if ctx.Err() != nil {
				return nil, errors.New("process killed")
			}
			return jobs, err
		})
		w := mustNew(t, cfg(logs), st, h)
		done := make(chan error, 1)
		go func() { done <- w.Run(ctx) }()
		deadline := time.After(waitTimeout)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
	wait:
		for {
			select {
			case <-died:
				stopped = true
				break wait
			case <-tick.C:
				if len(st.committedUIDs()) == len(uids) {
					break wait
				}
			case <-deadline:
				t.Fatalf("run %d: neither stopped nor done; log:\n%s", i, logs.String())
			}
		}
		cancel()
		select {
		case <-done:
		case <-time.After(waitTimeout):
			t.Fatalf("run %d: Run did not return", i)
		}
		return stopped
	}

	var runs int
	for runs = 1; runs <= 6 && run(runs); runs++ {
	}
	// Run 1 stops in the batch of all five; run 2 finds the range and goes one at a time,
	// committing uids[0], uids[1] and stopping on the poison with a single-UID record; runs 3–5
	// strike it (1, 2, 3); run 5 delivers it degraded and the rest normally.
	if got := st.committedUIDs(); !slices.Equal(got, uids) {
		t.Fatalf("after %d runs committed %v, want %v", runs, got, uids)
	}
	if runs != 5 {
		t.Errorf("took %d runs, want 5 (one batch, then three strikes of the poison message)", runs)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	singles := 0
	for _, r := range st.begun {
		if r.Lo == poison && r.Hi == poison {
			singles++
		}
	}
	if singles != 3 {
		t.Errorf("poison message fetched alone %d times, want 3 (runs 2–4); records %v", singles, st.begun)
	}
}

// TestFirstPassCutByBytes: the first pass keeps headers until its byte bound is reached and cuts
// the batch there; the rest of the batch is fetched by the next first pass (sent ahead, its
// record spanning the batch before it). Every message is delivered once, in order, and each batch
// had its own fetch record, the last one cleared by its commit.
func TestFirstPassCutByBytes(t *testing.T) {
	srv := testmail.StartMemServer(t, testmail.MemOptions{})
	uids := appendN(t, srv, 0, 7)
	logs := &syncBuffer{}
	st, rec := newFakeState(), newRecorder()
	cfg := baseConfig(srv.Addr(), srv.User(), srv.Password(), logs)
	cfg.Start = watcher.StartAll
	cfg.BatchSize = 100
	watcher.SetFirstPassKeep(&cfg, 1) // every header is more: one message per batch
	w := mustNew(t, cfg, st, rec)
	runWatcher(t, w, logs)
	rec.waitUIDs(t, uids...)
	eventually(t, "all committed", func() bool { return len(st.committedUIDs()) == len(uids) })
	if got := st.committedUIDs(); !slices.Equal(got, uids) {
		t.Errorf("committed %v, want %v", got, uids)
	}
	st.checkInvariants(t)

	st.mu.Lock()
	defer st.mu.Unlock()
	var got [][2]uint32
	for _, r := range st.begun {
		got = append(got, [2]uint32{r.Lo, r.Hi})
	}
	last := uids[len(uids)-1]
	want := [][2]uint32{{uids[0], last}} // each first pass asks for the rest and keeps one
	for _, uid := range uids[:len(uids)-1] {
		want = append(want, [2]uint32{uid, last})
	}
	if !slices.Equal(got, want) {
		t.Errorf("fetch records %v, want %v", got, want)
	}
	if st.record != nil {
		t.Errorf("fetch record %+v left after the last batch committed", *st.record)
	}
}
