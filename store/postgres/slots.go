package postgres

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// notifySlots is the NOTIFY channel of released endpoint slots.
const notifySlots = "mailhook_slots"

// slotRecheck bounds a wait for a free slot: a slot whose holder died frees itself by expiring,
// which sends no NOTIFY.
const slotRecheck = time.Second

// Slots is a cluster-wide concurrency limit: at most limit units of name are held at once across
// every replica sharing the database (a webhook endpoint's concurrency protects the receiver, not
// one process). A unit is a row with a holder and an expiry by the database's clock, renewed with
// the replica's lease round (Leases.Run) and taken over by others once it expires, so the units of
// a replica that died come back after the lease TTL. Its Acquire and Release have the shape of an
// outbox lane's gate.
type Slots struct {
	s     *Store
	name  string
	limit int

	mu    sync.Mutex
	made  bool  // the rows of the limit exist
	held  []int // slot numbers this handle holds
	stale []int // slot numbers whose release failed: released before the next take
}

// Slots returns the cluster-wide limit of limit units named name (e.g. "webhook:ci").
func (s *Store) Slots(name string, limit int) *Slots {
	return &Slots{s: s, name: name, limit: max(limit, 1)}
}

// Acquire waits until at least one unit is free, takes as many free units as it can at once
// (up to the limit) and returns how many; 0 when ctx is done first.
func (sl *Slots) Acquire(ctx context.Context) int {
	for {
		wake := sl.s.slotWake()
		n, err := sl.take(ctx)
		if err == nil && n > 0 {
			return n
		}
		if err != nil && ctx.Err() == nil {
			sl.s.log.Warn("could not take a concurrency slot; retrying", "name", sl.name, "err", err)
		}
		t := time.NewTimer(slotRecheck)
		select {
		case <-ctx.Done():
			t.Stop()
			return 0
		case <-wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// take claims the free units of the limit in one statement.
func (sl *Slots) take(ctx context.Context) (int, error) {
	ttl := sl.s.leases.opts.TTL
	sl.mu.Lock()
	made := sl.made
	sl.mu.Unlock()
	if err := sl.releaseStale(ctx); err != nil {
		return 0, err
	}
	if !made {
		if _, err := sl.s.pool.Exec(ctx, `INSERT INTO concurrency_slots (name, slot, holder, expires_at)
SELECT $1, n, '', '-infinity' FROM generate_series(0, $2 - 1) AS n
ON CONFLICT (name, slot) DO NOTHING`, sl.name, sl.limit); err != nil {
			return 0, fmt.Errorf("take slots of %q: %w", sl.name, err)
		}
		sl.mu.Lock()
		sl.made = true
		sl.mu.Unlock()
	}
	rows, err := sl.s.pool.Query(ctx, `WITH free AS (
	SELECT slot FROM concurrency_slots
	WHERE name = $1 AND slot < $2 AND (holder = '' OR expires_at < clock_timestamp())
	FOR UPDATE SKIP LOCKED
)
UPDATE concurrency_slots c SET holder = $3, expires_at = clock_timestamp() + $4 * interval '1 microsecond'
FROM free WHERE c.name = $1 AND c.slot = free.slot
RETURNING c.slot`, sl.name, sl.limit, sl.s.replica, ttl.Microseconds())
	if err != nil {
		return 0, fmt.Errorf("take slots of %q: %w", sl.name, err)
	}
	defer rows.Close()
	var got []int
	for rows.Next() {
		var n int
		if err := rows.Scan(&n); err != nil {
			return 0, fmt.Errorf("take slots of %q: %w", sl.name, err)
		}
		got = append(got, n)
	}
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("take slots of %q: %w", sl.name, err)
	}
	sl.mu.Lock()
	sl.held = append(sl.held, got...)
	sl.mu.Unlock()
	return len(got), nil
}

// releaseStale releases the units whose Release could not reach the database. They are still held
// in this replica's name, and its lease rounds renew them: without this they would never come back.
// A unit this handle holds again (taken after it expired) is left alone.
func (sl *Slots) releaseStale(ctx context.Context) error {
	sl.mu.Lock()
	var stale []int
	for _, n := range sl.stale {
		if !slices.Contains(sl.held, n) {
			stale = append(stale, n)
		}
	}
	sl.stale = nil
	sl.mu.Unlock()
	if len(stale) == 0 {
		return nil
	}
	if _, err := sl.s.pool.Exec(ctx, `UPDATE concurrency_slots SET holder = '', expires_at = '-infinity'
WHERE name = $1 AND slot = ANY ($2) AND holder = $3`, sl.name, stale, sl.s.replica); err != nil {
		sl.mu.Lock()
		sl.stale = append(sl.stale, stale...)
		sl.mu.Unlock()
		return fmt.Errorf("take slots of %q: release units: %w", sl.name, err)
	}
	return nil
}

// Release gives back n of the units this handle holds and wakes the waiters of every replica.
// A release that cannot reach the database is retried before the handle's next take.
func (sl *Slots) Release(n int) {
	sl.mu.Lock()
	n = min(n, len(sl.held))
	give := append([]int(nil), sl.held[len(sl.held)-n:]...)
	sl.held = sl.held[:len(sl.held)-n]
	sl.mu.Unlock()
	if len(give) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), sl.s.leases.opts.TTL/3)
	defer cancel()
	_, err := sl.s.pool.Exec(ctx, `WITH freed AS (
	UPDATE concurrency_slots SET holder = '', expires_at = '-infinity'
	WHERE name = $1 AND slot = ANY ($2) AND holder = $3
	RETURNING slot
)
SELECT pg_notify($4, $1) FROM (SELECT 1 FROM freed LIMIT 1) f`, sl.name, give, sl.s.replica, notifySlots)
	if err != nil {
		sl.mu.Lock()
		sl.stale = append(sl.stale, give...)
		sl.mu.Unlock()
		sl.s.log.Warn("could not release concurrency slots; retrying before the next take", "name", sl.name, "err", err)
	}
	sl.s.broadcastSlots() // waiters of this process need not wait for the notification
}

// slotWake returns the channel closed at the next slot release seen by this process.
func (s *Store) slotWake() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.slotsFreed
}

// broadcastSlots wakes every waiter for a slot and arms a new channel.
func (s *Store) broadcastSlots() {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.slotsFreed)
	s.slotsFreed = make(chan struct{})
}
