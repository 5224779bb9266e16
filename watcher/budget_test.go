package watcher

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/mailhook/mailhook/store"
	"github.com/mailhook/mailhook/store/sqlite"
)

// fakeClock is a settable clock for budget tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

var budgetT0 = time.Date(2026, 11, 26, 10, 0, 30, 0, time.UTC)

func newTestBudget(t *testing.T, limit int64, clk *fakeClock, ledger BudgetLedger) *ByteBudget {
	t.Helper()
	b, err := NewBudget(context.Background(), "acct", limit, ledger, BudgetOptions{Now: clk.Now, Headroom: 10})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBudgetRollingWindow checks the rolling window's arithmetic: grants up to the limit minus headroom,
// refusals say when the window will have room, and old bytes leave the window.
func TestBudgetRollingWindow(t *testing.T) {
	clk := &fakeClock{t: budgetT0}
	b := newTestBudget(t, 1000, clk, nil)

	b.Charge(400) // bucket 10:00
	clk.Add(time.Hour)
	b.Charge(300) // bucket 11:00
	if u := b.Usage(); u.Used != 700 || u.Remaining != 300 || u.Limit != 1000 {
		t.Fatalf("usage = %+v", u)
	}
	h, th := b.Reserve(290) // 700 + 290 = 990 = limit − headroom
	if h == nil {
		t.Fatalf("Reserve(290) refused: %+v", th)
	}
	if u := b.Usage(); u.Reserved != 290 || u.Remaining != 10 {
		t.Errorf("usage with a hold = %+v", u)
	}
	// Bytes read by the fetch shrink its reservation as they are charged.
	h.Read(100)
	b.Charge(100)
	if u := b.Usage(); u.Used != 800 || u.Reserved != 190 {
		t.Errorf("usage mid-fetch = %+v", u)
	}
	// Someone else's fetch holds the rest: a short busy refusal, not a budget pause.
	if h2, th := b.Reserve(150); h2 != nil || !th.Busy || th.Available != 0 {
		t.Errorf("Reserve(150) during a fetch = %v, %+v; want a busy refusal", h2, th)
	}
	h.Release()
	h.Release() // idempotent
	if h2, _ := b.Reserve(190); h2 == nil {
		t.Error("Reserve(190) refused after release")
	} else {
		h2.Release()
	}
	// A fetch that does not fit: refused until the 10:00 bucket (400 bytes) has left the window.
	h, th = b.Reserve(300)
	if h != nil || th.Busy {
		t.Fatalf("Reserve(300) = %v, %+v; want a budget refusal", h, th)
	}
	wantUntil := budgetT0.Truncate(time.Minute).Add(time.Minute + 24*time.Hour)
	if !th.Until.Equal(wantUntil) || th.Reason == "" || th.Available != 190 {
		t.Errorf("refusal = %+v, want until %v", th, wantUntil)
	}
	if u := b.Usage(); !u.ThrottledUntil.Equal(wantUntil) || u.Reason != th.Reason {
		t.Errorf("usage while throttled = %+v", u)
	}
	clk.Add(wantUntil.Sub(clk.Now()) - time.Nanosecond)
	if h, _ := b.Reserve(300); h != nil {
		t.Error("granted a nanosecond before the window allows it")
	}
	clk.Add(time.Nanosecond)
	h, th = b.Reserve(300)
	if h == nil {
		t.Fatalf("refused once the window moved: %+v", th)
	}
	h.Release()
	if u := b.Usage(); u.Used != 400 || !u.ThrottledUntil.IsZero() {
		t.Errorf("usage after the window moved = %+v", u)
	}
}

// TestBudgetRestartKeepsBudget: the bytes and the throttle decision survive a restart through
// the store, and a failed flush loses nothing.
func TestBudgetRestartKeepsBudget(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "state")
	clk := &fakeClock{t: budgetT0}
	st, err := sqlite.Open(dir, store.Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	b := newTestBudget(t, 1000, clk, st)
	b.Charge(600)
	clk.Add(3 * time.Minute)
	b.Charge(300)
	if h, _ := b.Reserve(200); h != nil {
		t.Fatal("Reserve(200) granted over the limit")
	}
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	b.Charge(50) // after the last flush: written by Run's final flush
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- b.Run(runCtx) }()
	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
	want := b.Usage()
	st.Close()

	st, err = sqlite.Open(dir, store.Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	b2 := newTestBudget(t, 1000, clk, st)
	got := b2.Usage()
	if got.Used != 950 || got.Used != want.Used || !got.ThrottledUntil.Equal(want.ThrottledUntil) || got.Reason != want.Reason {
		t.Errorf("after restart usage = %+v, want %+v", got, want)
	}
	// A flush that fails keeps its bytes for the next one.
	st.Close()
	b2.Charge(5)
	if err := b2.Flush(ctx); err == nil {
		t.Fatal("flush to a closed store succeeded")
	}
	st, err = sqlite.Open(dir, store.Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	b2.ledger = st
	if err := b2.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if b3 := newTestBudget(t, 1000, clk, st); b3.Usage().Used != 955 {
		t.Errorf("after a failed and a good flush: used %d, want 955", b3.Usage().Used)
	}
	// A day later everything has left the window, in memory and in the ledger.
	clk.Add(24*time.Hour + 2*time.Minute)
	if err := b2.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if rows, _ := st.BudgetBuckets(ctx, "acct", time.Time{}); len(rows) != 0 {
		t.Errorf("ledger keeps %v after the window", rows)
	}
	if u := b2.Usage(); u.Used != 0 || !u.ThrottledUntil.IsZero() {
		t.Errorf("usage a day later = %+v", u)
	}
}

func TestNewBudgetValidates(t *testing.T) {
	for _, tc := range []struct {
		limit, headroom int64
	}{{0, 0}, {-1, 0}, {100, 100}, {100, -1}} {
		if _, err := NewBudget(context.Background(), "a", tc.limit, nil, BudgetOptions{Headroom: tc.headroom}); err == nil {
			t.Errorf("NewBudget(limit %d, headroom %d) accepted", tc.limit, tc.headroom)
		}
	}
}
