package watcher

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mailhook/mailhook/store"
)

// Budget is the rolling download allowance of one account (Gmail allows 2,500 MB a day per
// account, shared by every client; going over locks IMAP for a day), shared by the Watchers of the account's mailboxes. Every byte a Watcher reads from its
// connection is charged to it, protocol overhead and TLS records included; before each FETCH the
// Watcher reserves the most the fetch can read and does not send the command unless the
// reservation is granted. *ByteBudget implements it.
type Budget interface {
	// Charge records n bytes read from the server now. It is called on connection reader
	// goroutines and must not block.
	Charge(n int64)
	// Reserve asks for room for a fetch that reads at most n bytes. When granted it returns a
	// Hold, which the caller feeds with the bytes the fetch reads (Hold.Read) and releases when
	// the fetch is over; otherwise it returns nil and says when to ask again. A budget shared
	// with other processes through the store records the reservation there, through fence when
	// it is not nil (the mailbox's writer: only the holder of the mailbox's lease reserves); an
	// error is the store's (store.ErrLeaseLost among them), and nothing is reserved.
	Reserve(ctx context.Context, n int64, fence Reserver) (*Hold, Throttle, error)
	// Usage returns the current figures, for Status and the status verb.
	Usage() BudgetUsage
}

// Throttle says why a reservation was refused and when to ask again.
type Throttle struct {
	Until  time.Time // when the window will have room, by the budget's clock
	Reason string
	// Busy: the bytes would fit, but other mailboxes' fetches in flight hold the rest; Until is a
	// short retry time and the refusal is not a budget pause.
	Busy bool
	// Available is what could be reserved now (for shrinking a batch to fit).
	Available int64
}

// BudgetUsage is a snapshot of a Budget.
type BudgetUsage struct {
	Limit     int64         // bytes allowed per Window
	Window    time.Duration // 24h
	Used      int64         // bytes read in the window ending now
	Reserved  int64         // bytes reserved by fetches in flight and not yet read
	Remaining int64         // Limit − Used − Reserved, at least 0
	// ThrottledUntil and Reason are the last refusal that paused the account (zero once a
	// reservation is granted again, or when the time has passed).
	ThrottledUntil time.Time
	Reason         string
}

// Reserver records a budget reservation in the store against every process that shares the
// account's budget: store.MailboxWriter implements it, fenced by the mailbox's lease.
type Reserver interface {
	ReserveBudget(ctx context.Context, n int64, lim store.BudgetLimit, now time.Time) (store.BudgetGrant, error)
}

// Hold is a granted reservation. Read and Release are safe for concurrent use.
type Hold struct {
	n       int64
	id      string // the store's reservation, "" when the budget is not shared
	read    atomic.Int64
	release func(*Hold)
	once    sync.Once
}

// Read records that n bytes of the reserved fetch arrived (they are charged separately): the
// reservation shrinks by as much.
func (h *Hold) Read(n int64) {
	if h != nil {
		h.read.Add(n)
	}
}

// Release ends the reservation. Further calls do nothing.
func (h *Hold) Release() {
	if h != nil && h.release != nil {
		h.once.Do(func() { h.release(h) })
	}
}

// left is what the reservation still holds back.
func (h *Hold) left() int64 { return max(0, h.n-h.read.Load()) }

// BudgetLedger persists a ByteBudget and shares it with the other processes using the same
// store: the part of store.Budget it uses.
type BudgetLedger interface {
	BudgetBuckets(ctx context.Context, account string, since time.Time) ([]store.BudgetBucket, error)
	BudgetThrottleOf(ctx context.Context, account string) (store.BudgetThrottle, bool, error)
	ChargeBudget(ctx context.Context, account string, add []store.BudgetBucket, th store.BudgetThrottle, pruneBefore time.Time) error
	ReserveBudget(ctx context.Context, account string, n int64, lim store.BudgetLimit, now time.Time) (store.BudgetGrant, error)
	ReleaseBudget(ctx context.Context, account, id string) error
}

var (
	_ Budget       = (*ByteBudget)(nil)
	_ BudgetLedger = store.Budget(nil)
)

// Defaults of BudgetOptions.
const (
	DefaultBudgetWindow = 24 * time.Hour
	DefaultBudgetBucket = time.Minute
	DefaultBudgetFlush  = 5 * time.Second
	// budgetMerge is how often Flush also reads back what the other processes sharing the
	// ledger charged, so Usage (status, metrics, the first pass's sizing) includes it.
	budgetMerge = 30 * time.Second
	// busyRetry is how soon to ask again when only other mailboxes' fetches in flight are in the way.
	busyRetry = time.Second
)

// BudgetOptions tune a ByteBudget; zero fields take the defaults.
type BudgetOptions struct {
	Window     time.Duration // the rolling window (default 24h)
	Bucket     time.Duration // bucket width, the ledger's granularity (default 1m)
	FlushEvery time.Duration // write-behind period of Run (default 5s)
	// Headroom is kept free of fetches for the traffic that cannot be reserved in advance (SEARCH
	// results, untagged updates, keepalives, reconnects): a fetch is granted only while it leaves
	// this much of the limit unused. Default: 1% of the limit, at most 1 MB.
	Headroom int64
	Now      func() time.Time // clock (default time.Now)
	Logger   *slog.Logger     // nil discards
}

// ByteBudget is a rolling-window byte budget kept in memory per bucket and written behind to a
// BudgetLedger.
//
// Fetches stop Headroom short of the limit; what is read between fetches (a few hundred bytes per
// catch-up) uses the headroom, so the bytes read in any window stay within the limit.
//
// Accounting is conservative: a bucket counts until its last instant has left the window, so a
// byte may count up to one bucket width (1 min) longer than 24 h, never shorter. Reservations of
// fetches in flight count as used until their bytes arrive or they are released, so mailboxes
// sharing the budget cannot together overrun it.
//
// Sharing: with a ledger, the budget is shared with every process using the same store (the
// daemon's replicas, and `mailhook test --last` or `replay` run beside it). A reservation granted
// here is then also made in the store, with this process's unwritten bytes on top, against the bytes
// every process wrote and the reservations every process holds; the store's refusal throttles
// like a local one. So the processes together stay within the limit.
//
// Durability: Run writes the new bytes every FlushEvery and once more when it stops. A crash
// (SIGKILL, power loss) loses at most the bytes of the last FlushEvery (5 s) of traffic: after a
// restart the budget under-counts by that much, which at Gmail's rates is a few megabytes at
// worst; the 2000MB default leaves 500MB of Gmail's 2500MB cap for that and for other clients.
// A crashed process's store reservation counts until it lapses (store.DefaultBudgetHold).
type ByteBudget struct {
	account    string
	limit      int64
	ledger     BudgetLedger
	window     time.Duration
	bucket     time.Duration
	flushEvery time.Duration
	headroom   int64
	now        func() time.Time
	log        *slog.Logger

	flushMu sync.Mutex // one Flush or merge at a time: a merge must not miss bytes in another's write

	mu       sync.Mutex
	buckets  map[int64]int64 // bucket start (Unix ns) → bytes
	dirty    map[int64]int64 // bytes not yet written to the ledger
	holds    map[*Hold]struct{}
	throttle store.BudgetThrottle
	thDirty  bool
	written  time.Time // last ledger write, by now; old buckets are pruned at least hourly
	merged   time.Time // last read of the ledger's buckets, by now
}

// NewBudget returns the budget of account allowing limit bytes per window, loaded from ledger
// (nil keeps it in memory only). Call Run to write it behind.
func NewBudget(ctx context.Context, account string, limit int64, ledger BudgetLedger, opts BudgetOptions) (*ByteBudget, error) {
	if limit <= 0 || opts.Headroom < 0 || opts.Headroom >= limit {
		return nil, fmt.Errorf("budget of %q: limit %d must be positive and above the headroom %d", account, limit, opts.Headroom)
	}
	b := &ByteBudget{
		account: account, limit: limit, ledger: ledger,
		window:     cmp.Or(opts.Window, DefaultBudgetWindow),
		bucket:     cmp.Or(opts.Bucket, DefaultBudgetBucket),
		flushEvery: cmp.Or(opts.FlushEvery, DefaultBudgetFlush),
		headroom:   cmp.Or(opts.Headroom, min(limit/100, 1_000_000)),
		now:        opts.Now,
		log:        opts.Logger,
		buckets:    map[int64]int64{},
		dirty:      map[int64]int64{},
		holds:      map[*Hold]struct{}{},
	}
	if b.now == nil {
		b.now = time.Now
	}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	if ledger == nil {
		return b, nil
	}
	rows, err := ledger.BudgetBuckets(ctx, account, b.now().Add(-b.window-b.bucket))
	if err != nil {
		return nil, fmt.Errorf("load budget of %q: %w", account, err)
	}
	for _, r := range rows {
		b.buckets[r.Start.UnixNano()] += r.Bytes
	}
	b.merged = b.now()
	th, ok, err := ledger.BudgetThrottleOf(ctx, account)
	if err != nil {
		return nil, fmt.Errorf("load budget of %q: %w", account, err)
	}
	if ok {
		b.throttle = store.BudgetThrottle{Until: th.Until, Reason: th.Reason}
	}
	return b, nil
}

// Charge implements Budget.
func (b *ByteBudget) Charge(n int64) {
	if n <= 0 {
		return
	}
	k := b.bucketOf(b.now())
	b.mu.Lock()
	b.buckets[k] += n
	b.dirty[k] += n
	b.mu.Unlock()
}

func (b *ByteBudget) bucketOf(t time.Time) int64 {
	ns := t.UnixNano()
	w := int64(b.bucket)
	return ns - ((ns%w)+w)%w
}

// expiry is when every byte of the bucket starting at k has left the window.
func (b *ByteBudget) expiry(k int64) time.Time {
	return time.Unix(0, k).Add(b.bucket + b.window)
}

// usedLocked sums the buckets still (partly) inside the window at now. Caller holds mu.
func (b *ByteBudget) usedLocked(now time.Time) int64 {
	var used int64
	for k, n := range b.buckets {
		if b.expiry(k).After(now) {
			used += n
		}
	}
	return used
}

func (b *ByteBudget) reservedLocked() int64 {
	var r int64
	for h := range b.holds {
		r += h.left()
	}
	return r
}

// Reserve implements Budget.
func (b *ByteBudget) Reserve(ctx context.Context, n int64, fence Reserver) (*Hold, Throttle, error) {
	h, th := b.reserveLocal(n)
	if h != nil && b.ledger != nil {
		var err error
		if h, th, err = b.reserveShared(ctx, h, fence); err != nil {
			return nil, Throttle{}, err
		}
	}
	if h != nil {
		b.mu.Lock()
		if !b.throttle.Until.IsZero() {
			b.throttle, b.thDirty = store.BudgetThrottle{}, true
		}
		b.mu.Unlock()
	}
	return h, th, nil
}

// reserveLocal decides a reservation of n bytes by what this process knows: its own charges
// (written or not) and holds, and the other processes' charges as last merged.
func (b *ByteBudget) reserveLocal(n int64) (*Hold, Throttle) {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	used, reserved := b.usedLocked(now), b.reservedLocked()
	limit := b.limit - b.headroom
	if used+reserved+n <= limit {
		h := &Hold{n: n, release: b.releaseHold}
		b.holds[h] = struct{}{}
		return h, Throttle{}
	}
	avail := max(0, limit-used-reserved)
	if used+n <= limit {
		return nil, Throttle{Until: now.Add(busyRetry), Busy: true, Available: avail,
			Reason: "other mailboxes of the account are fetching"}
	}
	// Walk the buckets oldest first until enough bytes have left the window. Reservations in
	// flight are counted as if they will all be read.
	need := used + reserved + n - limit
	keys := make([]int64, 0, len(b.buckets))
	for k := range b.buckets {
		if b.expiry(k).After(now) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	until := now.Add(b.window) // unreachable for n ≤ limit: every bucket expires within the window
	var freed int64
	for _, k := range keys {
		if freed += b.buckets[k]; freed >= need {
			until = b.expiry(k)
			break
		}
	}
	return nil, b.refuseLocked(until, used, n, avail, "")
}

// refuseLocked records and returns a refusal that pauses the account until until. Caller holds mu.
func (b *ByteBudget) refuseLocked(until time.Time, used, n, avail int64, by string) Throttle {
	reason := fmt.Sprintf("download budget: %s of %s used in the last %s%s; the next fetch needs up to %s",
		fmtBytes(used), fmtBytes(b.limit), fmtWindow(b.window), by, fmtBytes(n))
	if !b.throttle.Until.Equal(until) || b.throttle.Reason != reason {
		b.throttle, b.thDirty = store.BudgetThrottle{Until: until, Reason: reason}, true
	}
	return Throttle{Until: until, Reason: reason, Available: avail}
}

// reserveShared makes the locally granted reservation h in the store too. The bytes this process
// read but has not written yet are not in the store's sum, so they are asked for on top (until
// the hold is released they count twice, on the safe side): one store write per reservation, not
// two. A refusal releases h, reads the other processes' bytes into the local view and says until
// when: only their reservations in the way (the bytes would fit otherwise) is a short Busy wait.
func (b *ByteBudget) reserveShared(ctx context.Context, h *Hold, fence Reserver) (*Hold, Throttle, error) {
	now := b.now()
	ask := h.n
	b.mu.Lock()
	for _, n := range b.dirty {
		ask += n
	}
	b.mu.Unlock()
	lim := store.BudgetLimit{Bytes: b.limit - b.headroom, Window: b.window, Bucket: b.bucket}
	var g store.BudgetGrant
	var err error
	if fence != nil {
		g, err = fence.ReserveBudget(ctx, ask, lim, now)
	} else {
		g, err = b.ledger.ReserveBudget(ctx, b.account, ask, lim, now)
	}
	if err != nil || !g.Granted {
		h.Release()
	}
	if err != nil {
		return nil, Throttle{}, err
	}
	if g.Granted {
		h.id = g.ID
		return h, Throttle{}, nil
	}
	if err := b.merge(ctx); err != nil {
		return nil, Throttle{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	used := b.usedLocked(now)
	if used+h.n <= lim.Bytes {
		return nil, Throttle{Until: now.Add(busyRetry), Busy: true, Available: max(0, lim.Bytes-g.Used),
			Reason: "other processes sharing the account's budget are fetching"}, nil
	}
	until := g.Until
	if until.IsZero() {
		until = now.Add(b.window)
	}
	return nil, b.refuseLocked(until, used, h.n, max(0, lim.Bytes-g.Used),
		" (by every process sharing the account's state)"), nil
}

func (b *ByteBudget) releaseHold(h *Hold) {
	b.mu.Lock()
	delete(b.holds, h)
	b.mu.Unlock()
	if h.id == "" {
		return
	}
	// Not released (store down), the reservation lapses after store.DefaultBudgetHold.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.ledger.ReleaseBudget(ctx, b.account, h.id); err != nil {
		b.log.Warn("download budget reservation not released; it lapses by itself", "account", b.account, "err", err)
	}
}

// merge reads the account's buckets back from the ledger, so the local view includes what other
// processes sharing it charged; the bytes this process has not written yet are added on top.
func (b *ByteBudget) merge(ctx context.Context) error {
	b.flushMu.Lock()
	defer b.flushMu.Unlock()
	return b.mergeLocked(ctx)
}

// mergeLocked is merge; the caller holds flushMu.
func (b *ByteBudget) mergeLocked(ctx context.Context) error {
	now := b.now()
	rows, err := b.ledger.BudgetBuckets(ctx, b.account, now.Add(-b.window-b.bucket))
	if err != nil {
		return fmt.Errorf("read budget of %q: %w", b.account, err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	clear(b.buckets)
	for _, r := range rows {
		b.buckets[r.Start.UnixNano()] += r.Bytes
	}
	for k, n := range b.dirty {
		b.buckets[k] += n
	}
	b.merged = now
	return nil
}

// Usage implements Budget.
func (b *ByteBudget) Usage() BudgetUsage {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	u := BudgetUsage{Limit: b.limit, Window: b.window, Used: b.usedLocked(now), Reserved: b.reservedLocked()}
	u.Remaining = max(0, u.Limit-u.Used-u.Reserved)
	if b.throttle.Until.After(now) {
		u.ThrottledUntil, u.Reason = b.throttle.Until, b.throttle.Reason
	}
	return u
}

// Flush writes the bytes charged since the last flush and the throttle decision to the ledger,
// and forgets buckets that left the window; every budgetMerge (30 s) it also reads back what the
// other processes sharing the ledger charged. On error nothing is lost: the next Flush retries.
func (b *ByteBudget) Flush(ctx context.Context) error {
	b.flushMu.Lock()
	defer b.flushMu.Unlock()
	now := b.now()
	cut := b.bucketOf(now.Add(-b.window - b.bucket))
	b.mu.Lock()
	for k := range b.buckets {
		if k < cut {
			delete(b.buckets, k)
		}
	}
	if b.ledger == nil {
		clear(b.dirty)
		b.thDirty = false
		b.mu.Unlock()
		return nil
	}
	stale := now.Sub(b.merged) >= budgetMerge
	if len(b.dirty) == 0 && !b.thDirty && now.Sub(b.written) < time.Hour {
		b.mu.Unlock()
		if stale {
			return b.mergeLocked(ctx)
		}
		return nil
	}
	add := make([]store.BudgetBucket, 0, len(b.dirty))
	for k, n := range b.dirty {
		add = append(add, store.BudgetBucket{Start: time.Unix(0, k).UTC(), Bytes: n})
	}
	th := b.throttle
	clear(b.dirty)
	b.thDirty = false
	b.mu.Unlock()

	if err := b.ledger.ChargeBudget(ctx, b.account, add, th, time.Unix(0, cut)); err != nil {
		b.mu.Lock()
		for _, a := range add {
			b.dirty[a.Start.UnixNano()] += a.Bytes
		}
		b.thDirty = true
		b.mu.Unlock()
		return err
	}
	b.mu.Lock()
	b.written = now
	b.mu.Unlock()
	if stale {
		return b.mergeLocked(ctx)
	}
	return nil
}

// Run writes the budget behind every FlushEvery until ctx is done, then flushes once more (with
// its own 5-second deadline) and returns nil. Flush errors are logged and retried.
func (b *ByteBudget) Run(ctx context.Context) error {
	t := time.NewTicker(b.flushEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := b.Flush(fctx); err != nil {
				b.log.Error("download budget not saved at shutdown", "account", b.account, "err", err)
			}
			return nil
		case <-t.C:
			if err := b.Flush(ctx); err != nil && ctx.Err() == nil {
				b.log.Warn("download budget not saved; will retry", "account", b.account, "err", err)
			}
		}
	}
}

// fmtBytes renders n in decimal megabytes (the unit of download_per_day), or bytes when small.
func fmtBytes(n int64) string {
	if n < 1_000_000 {
		return fmt.Sprintf("%dB", n)
	}
	return fmt.Sprintf("%.1fMB", float64(n)/1e6)
}

func fmtWindow(d time.Duration) string {
	if d%time.Hour == 0 {
		return fmt.Sprintf("%dh", d/time.Hour)
	}
	return d.String()
}

// errThrottled ends a catch-up because the budget refused the next fetch; the session then
// waits for the window (waitBudget) and catches up again. It never leaves the watcher.
var errThrottled = errors.New("download budget exhausted")
