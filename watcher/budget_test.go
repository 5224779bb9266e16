package watcher

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
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
	h, th := reserve(t, b, 290) // 700 + 290 = 990 = limit − headroom
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
	if h2, th := reserve(t, b, 150); h2 != nil || !th.Busy || th.Available != 0 {
		t.Errorf("Reserve(150) during a fetch = %v, %+v; want a busy refusal", h2, th)
	}
	h.Release()
	h.Release() // idempotent
	if h2, _ := reserve(t, b, 190); h2 == nil {
		t.Error("Reserve(190) refused after release")
	} else {
		h2.Release()
	}
	// A fetch that does not fit: refused until the 10:00 bucket (400 bytes) has left the window.
	h, th = reserve(t, b, 300)
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
	if h, _ := reserve(t, b, 300); h != nil {
		t.Error("granted a nanosecond before the window allows it")
	}
	clk.Add(time.Nanosecond)
	h, th = reserve(t, b, 300)
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
	if h, _ := reserve(t, b, 200); h != nil {
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

// TestBudgetSharedThroughStore: two processes on one state (the daemon, and a tool such as
// `mailhook test --last` run beside it) share the account's budget through the store: the bytes
// one wrote and the reservations one holds refuse the other's fetches, so together they stay
// within the limit; a reservation never released (its process was killed) lapses.
func TestBudgetSharedThroughStore(t *testing.T) {
	ctx := context.Background()
	clk := &fakeClock{t: budgetT0}
	st := openState(t, clk)
	daemon := newTestBudget(t, 1000, clk, st) // limit − headroom = 990
	tool := newTestBudget(t, 1000, clk, st)

	// The tool reads 900 bytes after the daemon loaded its budget.
	h, _ := reserve(t, tool, 900)
	if h == nil {
		t.Fatal("tool's first reservation refused")
	}
	tool.Charge(900)
	h.Read(900)
	h.Release()
	if err := tool.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if u := daemon.Usage(); u.Used != 0 {
		t.Fatalf("daemon sees %d bytes used before any reservation", u.Used)
	}
	h, th := reserve(t, daemon, 200)
	if h != nil || th.Busy || !th.Until.Equal(budgetT0.Truncate(time.Minute).Add(time.Minute+24*time.Hour)) ||
		!strings.Contains(th.Reason, "every process") || th.Available != 90 {
		t.Fatalf("daemon's reservation beside the tool's 900 bytes = %v, %+v; want refused until the bytes leave the window", h, th)
	}
	if u := daemon.Usage(); u.Used != 900 || !u.ThrottledUntil.Equal(th.Until) {
		t.Errorf("daemon's usage after the refusal = %+v; want the tool's 900 bytes and the throttle", u)
	}

	// Reservations in flight are shared: the daemon's 80 leave the tool no room for 50 (a short,
	// busy wait: the bytes fit once the fetch ends).
	hd, _ := reserve(t, daemon, 80)
	if hd == nil {
		t.Fatal("daemon's reservation of 80 of the 90 left refused")
	}
	if u := daemon.Usage(); !u.ThrottledUntil.IsZero() {
		t.Errorf("throttle kept after a grant: %+v", u)
	}
	if h, th := reserve(t, tool, 50); h != nil || !th.Busy {
		t.Fatalf("tool's reservation beside the daemon's fetch = %v, %+v; want a busy refusal", h, th)
	}
	hd.Release()
	ht, _ := reserve(t, tool, 50)
	if ht == nil {
		t.Fatal("tool's reservation refused after the daemon's fetch ended")
	}
	// The tool is killed: its reservation is never released, and counts until it lapses.
	if h, th := reserve(t, daemon, 80); h != nil || !th.Busy {
		t.Fatalf("daemon's reservation beside the killed tool's = %v, %+v; want a busy refusal", h, th)
	}
	clk.Add(store.DefaultBudgetHold)
	if h, _ := reserve(t, daemon, 80); h == nil {
		t.Error("daemon's reservation refused after the killed tool's lapsed")
	}
}

// TestBudgetSharedCountsUnwrittenBytes: bytes read but not yet written behind (Run writes every
// 5 s) count in the store from the process's next reservation on.
func TestBudgetSharedCountsUnwrittenBytes(t *testing.T) {
	clk := &fakeClock{t: budgetT0}
	st := openState(t, clk)
	daemon := newTestBudget(t, 1000, clk, st)
	tool := newTestBudget(t, 1000, clk, st)
	daemon.Charge(500) // not written yet
	if h, _ := reserve(t, daemon, 100); h == nil {
		t.Fatal("daemon's reservation refused")
	}
	if h, th := reserve(t, tool, 400); h != nil {
		t.Fatalf("tool granted 400 beside the daemon's 500 unwritten and 100 reserved: %+v", th)
	}
	if h, _ := reserve(t, tool, 390); h == nil {
		t.Error("tool refused the 390 that fit")
	}
}

// TestBudgetReservesThroughFence: a watcher's reservations go through its mailbox's writer (the
// lease's fence), and a lost lease is an error that leaves nothing reserved.
func TestBudgetReservesThroughFence(t *testing.T) {
	clk := &fakeClock{t: budgetT0}
	st := openState(t, clk)
	b := newTestBudget(t, 1000, clk, st)
	f := &fence{}
	h, _, err := b.Reserve(context.Background(), 100, f)
	if err != nil || h == nil || f.calls != 1 {
		t.Fatalf("Reserve through the fence = %v, %v after %d calls; want granted by one call", h, err, f.calls)
	}
	h.Release()
	f.err = store.ErrLeaseLost
	h, _, err = b.Reserve(context.Background(), 100, f)
	if !errors.Is(err, store.ErrLeaseLost) || h != nil {
		t.Fatalf("Reserve after the lease was lost = %v, %v; want ErrLeaseLost", h, err)
	}
	if u := b.Usage(); u.Reserved != 0 {
		t.Errorf("a failed reservation holds %d bytes", u.Reserved)
	}
}

// fence is a Reserver that grants everything, or fails with err.
type fence struct {
	calls int
	err   error
}

func (f *fence) ReserveBudget(_ context.Context, n int64, _ store.BudgetLimit, _ time.Time) (store.BudgetGrant, error) {
	f.calls++
	if f.err != nil {
		return store.BudgetGrant{}, f.err
	}
	return store.BudgetGrant{Granted: true}, nil
}

// reserve is b.Reserve with no fence, failing t on a store error.
func reserve(t *testing.T, b *ByteBudget, n int64) (*Hold, Throttle) {
	t.Helper()
	h, th, err := b.Reserve(context.Background(), n, nil)
	if err != nil {
		t.Fatalf("Reserve(%d): %v", n, err)
	}
	return h, th
}

// openState opens a fresh SQLite state on clk's time, closed when t ends.
func openState(t *testing.T, clk *fakeClock) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "state"), store.Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}
