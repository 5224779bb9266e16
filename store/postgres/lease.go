package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// MailboxKey names one mailbox of one account.
type MailboxKey struct{ Account, Mailbox string }

// Held is a lease this replica holds: the mailbox and the epoch its writes are fenced on.
type Held struct {
	MailboxKey
	Epoch int64
}

// Lease timing defaults and bounds.
const (
	DefaultLeaseTTL = 15 * time.Second
	MinLeaseTTL     = 5 * time.Second
	MaxLeaseTTL     = 5 * time.Minute
	// defaultHandoverEvery paces the hand-over of surplus leases: one at a time, so a replica
	// that joins gets its share without every session of the cluster reconnecting at once.
	defaultHandoverEvery = time.Second
	defaultStopTimeout   = 10 * time.Second
	// retryEvery is how soon a failed round (database unreachable) is retried.
	retryEvery = time.Second
	// acquireSlack is added to the earliest foreign expiry before the next acquisition attempt,
	// so the attempt finds the lease expired by the database's clock.
	acquireSlack = 50 * time.Millisecond
)

// notifyLeases is the NOTIFY channel of lease releases.
const notifyLeases = "mailhook_leases"

// LeaseOptions tune a lease manager; the zero value gives the documented defaults.
type LeaseOptions struct {
	// TTL is how long an acquisition or renewal holds a lease by the database's clock. Default
	// 15 s. Leases are renewed every TTL/3.
	TTL time.Duration
	// Margin is how much before TTL (counted from when the last successful renewal was sent) the
	// replica stops acting on a lease it could not renew. Default TTL/10, at least 250 ms.
	Margin time.Duration
	// HandoverEvery paces the release of surplus leases (one per period). Default 1 s.
	HandoverEvery time.Duration
	// StopTimeout bounds how long a clean stop waits for the runners before releasing. Default 10 s.
	StopTimeout time.Duration
}

func (o LeaseOptions) withDefaults() LeaseOptions {
	if o.TTL <= 0 {
		o.TTL = DefaultLeaseTTL
	}
	if o.Margin <= 0 {
		o.Margin = max(o.TTL/10, 250*time.Millisecond)
	}
	if o.HandoverEvery <= 0 {
		o.HandoverEvery = defaultHandoverEvery
	}
	if o.StopTimeout <= 0 {
		o.StopTimeout = defaultStopTimeout
	}
	return o
}

// LeaseStats counts what a lease manager has done since it was made.
type LeaseStats struct {
	Held       int    // leases held now
	Acquired   uint64 // acquisitions (free, released or expired leases)
	TakenOver  uint64 // acquisitions of a lease another replica held and let expire
	Lost       uint64 // leases lost: not renewed in time, or found taken over
	HandedOver uint64 // surplus leases released for another replica
}

// Leases competes for the leases of a set of mailboxes and runs a function for each lease while
// it is held, so that across all replicas sharing the database each mailbox is watched by at most
// one replica at a time:
//
//   - acquiring a lease bumps its epoch; renewing it (every TTL/3, only while holder and epoch are
//     still ours) never does;
//   - a lease that could not be renewed is given up by this replica once TTL − Margin has passed
//     since its last successful renewal was sent (its run function's context is cancelled), before
//     the database lets another replica take it. A replica frozen past that point (a suspended VM)
//     is stopped by fencing instead: every write for the mailbox checks holder and epoch;
//   - live replicas keep a heartbeat row; a replica holding more than ⌈mailboxes / live replicas⌉
//     hands its surplus over one lease at a time and acquires only up to that share;
//   - a clean stop releases every lease and wakes the other replicas (NOTIFY).
//
// Make one with [Store.Leases]; Run it once.
type Leases struct {
	pool    *pgxpool.Pool
	replica string
	host    string
	opts    LeaseOptions
	log     *slog.Logger

	wake   chan struct{} // NOTIFY or a runner exit: run a round now
	exited chan struct{} // a runner returned

	mu    sync.Mutex
	held  map[MailboxKey]*lease
	stats LeaseStats
}

// lease is one held lease and its runner.
type lease struct {
	Held
	ctx      context.Context
	cancel   context.CancelFunc
	timer    *time.Timer   // cancels ctx at the deadline
	done     chan struct{} // closed when the runner returned
	handover bool          // cancelled to hand it over: release once the runner returned
	manual   bool          // taken with Acquire: no runner, no deadline; released by Close
}

func newLeases(pool *pgxpool.Pool, replica, host string, opts LeaseOptions, log *slog.Logger) *Leases {
	return &Leases{
		pool:    pool,
		replica: replica,
		host:    host,
		opts:    opts.withDefaults(),
		log:     log,
		wake:    make(chan struct{}, 1),
		exited:  make(chan struct{}, 1),
		held:    make(map[MailboxKey]*lease),
	}
}

// Replica returns this replica's id, the holder name of its leases.
func (m *Leases) Replica() string { return m.replica }

// Epoch returns the epoch of the lease this replica holds on (account, mailbox), and whether it
// holds one it has not given up. Writes for the mailbox are fenced on it.
func (m *Leases) Epoch(account, mailbox string) (int64, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	l, ok := m.held[MailboxKey{account, mailbox}]
	if !ok || (l.ctx.Err() != nil && !l.handover) {
		return 0, false
	}
	return l.Epoch, true
}

// Stats returns the counters and the number of leases held.
func (m *Leases) Stats() LeaseStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.stats
	s.Held = 0
	for _, l := range m.held {
		if l.ctx.Err() == nil {
			s.Held++
		}
	}
	return s
}

// Wake makes Run try to acquire leases now (another replica released one).
func (m *Leases) Wake() { signal(m.wake) }

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Run competes for the leases of want until ctx is cancelled, calling run in a goroutine of its
// own for each lease acquired, with a context cancelled when the lease is lost, handed over or
// given up, or when Run stops. run should return soon after its context is cancelled: the lease is
// not acquired again by this replica while its previous run has not returned. A run that returns
// on its own releases the lease.
//
// On ctx's cancellation Run cancels every run, waits for them (at most StopTimeout), releases the
// leases, removes the replica's heartbeat and returns nil. It returns an error wrapping
// ErrSchemaTooNew when a newer mailhook has migrated the database (after stopping the same way).
// A database that cannot be reached is retried; the leases lapse meanwhile.
func (m *Leases) Run(ctx context.Context, want []MailboxKey, run func(ctx context.Context, h Held)) error {
	want = dedupe(want)
	r := &round{m: m, want: want, run: run, cooldown: make(map[MailboxKey]time.Time)}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return m.shutdown()
		case <-timer.C:
		case <-m.wake:
		case <-m.exited:
		}
		next, err := r.do(ctx)
		if errors.Is(err, ErrSchemaTooNew) {
			m.log.Error("lease renewal: stopping", "err", err)
			_ = m.shutdown()
			return err
		}
		if err != nil && ctx.Err() == nil {
			if !r.failing {
				m.log.Warn("lease round failed; retrying", "err", err)
			}
			r.failing = true
			next = retryEvery
		} else if err == nil && r.failing {
			r.failing = false
			m.log.Info("lease round succeeded again")
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(next)
	}
}

func dedupe(want []MailboxKey) []MailboxKey {
	seen := make(map[MailboxKey]bool, len(want))
	out := make([]MailboxKey, 0, len(want))
	for _, k := range want {
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	return out
}

// round is the state Run keeps between rounds.
type round struct {
	m            *Leases
	want         []MailboxKey
	run          func(ctx context.Context, h Held)
	rowsMade     bool                     // the lease rows of want exist
	cooldown     map[MailboxKey]time.Time // not acquired again before then: its runner returned on its own
	lastHandover time.Time                // monotonic
	failing      bool
}

// do runs one round: settle finished runners, heartbeat and renew, hand over one surplus lease,
// acquire up to the share. It returns when the next round is due.
func (r *round) do(ctx context.Context) (time.Duration, error) {
	m := r.m
	ttl := m.opts.TTL
	cctx, cancel := context.WithTimeout(ctx, ttl/3)
	defer cancel()

	if err := r.settle(cctx); err != nil {
		return 0, err
	}
	if !r.rowsMade {
		if err := r.makeRows(cctx); err != nil {
			return 0, err
		}
		r.rowsMade = true
	}

	// Heartbeat, renewal of leases and concurrency slots, schema version, live replicas and the earliest foreign expiry in one
	// round trip (one implicit transaction).
	renew := m.renewable()
	accounts, mailboxes, epochs := columns(renew)
	wantA, wantM := keyColumns(r.want)
	var b pgx.Batch
	b.Queue(`INSERT INTO replicas (id, host, started_at, heartbeat_at, expires_at)
VALUES ($1, $2, clock_timestamp(), clock_timestamp(), clock_timestamp() + $3 * interval '1 microsecond')
ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, expires_at = excluded.expires_at`,
		m.replica, m.host, ttl.Microseconds())
	b.Queue(`UPDATE mailbox_leases l SET expires_at = clock_timestamp() + $2 * interval '1 microsecond'
FROM unnest($3::text[], $4::text[], $5::bigint[]) AS h (account, mailbox, epoch)
WHERE l.account = h.account AND l.mailbox = h.mailbox AND l.epoch = h.epoch AND l.holder = $1
RETURNING l.account, l.mailbox`, m.replica, ttl.Microseconds(), accounts, mailboxes, epochs)
	b.Queue(`UPDATE concurrency_slots SET expires_at = clock_timestamp() + $2 * interval '1 microsecond'
WHERE holder = $1 AND expires_at > clock_timestamp()`, m.replica, ttl.Microseconds())
	b.Queue(`SELECT coalesce((SELECT version FROM schema_version), 0)`)
	b.Queue(`SELECT count(*) FROM replicas WHERE expires_at > clock_timestamp()`)
	b.Queue(`SELECT extract(epoch FROM min(l.expires_at) - clock_timestamp())::float8
FROM mailbox_leases l JOIN unnest($2::text[], $3::text[]) AS w (account, mailbox) USING (account, mailbox)
WHERE l.holder <> $1 AND l.expires_at > clock_timestamp()`, m.replica, wantA, wantM)
	sent := time.Now()
	res := m.pool.SendBatch(cctx, &b)
	renewed := make(map[MailboxKey]bool, len(renew))
	var version int
	var live int64
	var foreign *float64
	err := func() error {
		defer res.Close()
		if _, err := res.Exec(); err != nil {
			return fmt.Errorf("heartbeat: %w", err)
		}
		rows, err := res.Query()
		if err != nil {
			return fmt.Errorf("renew leases: %w", err)
		}
		for rows.Next() {
			var k MailboxKey
			if err := rows.Scan(&k.Account, &k.Mailbox); err != nil {
				rows.Close()
				return fmt.Errorf("renew leases: %w", err)
			}
			renewed[k] = true
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("renew leases: %w", err)
		}
		if _, err := res.Exec(); err != nil {
			return fmt.Errorf("renew concurrency slots: %w", err)
		}
		if err := res.QueryRow().Scan(&version); err != nil {
			return fmt.Errorf("read schema version: %w", err)
		}
		if err := res.QueryRow().Scan(&live); err != nil {
			return fmt.Errorf("count replicas: %w", err)
		}
		if err := res.QueryRow().Scan(&foreign); err != nil {
			return fmt.Errorf("read lease expiries: %w", err)
		}
		return res.Close()
	}()
	if err != nil {
		return 0, err
	}
	m.applyRenewal(renew, renewed, sent)
	if version > SchemaVersion() {
		return 0, tooNew(version)
	}

	share := int((int64(len(r.want)) + max(live, 1) - 1) / max(live, 1))
	holding := m.Stats().Held
	if holding > share && time.Since(r.lastHandover) >= m.opts.HandoverEvery {
		if m.handOverOne() {
			r.lastHandover = time.Now()
		}
	}
	if holding < share {
		if err := r.acquire(cctx, share-holding); err != nil {
			return 0, err
		}
	}

	next := ttl / 3
	if foreign != nil {
		if d := time.Duration(*foreign*float64(time.Second)) + acquireSlack; d < next {
			next = max(d, acquireSlack)
		}
	}
	if holding > share {
		next = min(next, m.opts.HandoverEvery)
	}
	return next, nil
}

// makeRows creates the lease rows of the wanted mailboxes that do not exist yet.
func (r *round) makeRows(ctx context.Context) error {
	a, mb := keyColumns(r.want)
	_, err := r.m.pool.Exec(ctx, `INSERT INTO mailbox_leases (account, mailbox, holder, epoch, expires_at, acquired_at)
SELECT account, mailbox, '', 0, '-infinity', '-infinity' FROM unnest($1::text[], $2::text[]) AS w (account, mailbox)
ON CONFLICT (account, mailbox) DO NOTHING`, a, mb)
	if err != nil {
		return fmt.Errorf("create lease rows: %w", err)
	}
	return nil
}

// renewable returns the leases to renew: held, and either not given up or being handed over
// (renewed until the runner has returned and the lease is released).
func (m *Leases) renewable() []Held {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Held
	for _, l := range m.held {
		if l.ctx.Err() == nil || l.handover {
			out = append(out, l.Held)
		}
	}
	return out
}

// applyRenewal moves the deadline of every renewed lease to sent + TTL − Margin and gives up the
// ones the database did not renew (taken over, or released by an operator).
func (m *Leases) applyRenewal(renew []Held, renewed map[MailboxKey]bool, sent time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	deadline := sent.Add(m.opts.TTL - m.opts.Margin)
	for _, h := range renew {
		l, ok := m.held[h.MailboxKey]
		if !ok || l.Epoch != h.Epoch {
			continue
		}
		if renewed[h.MailboxKey] {
			l.timer.Reset(time.Until(deadline))
			continue
		}
		if l.ctx.Err() == nil {
			m.stats.Lost++
			m.log.Warn("mailbox lease lost: taken over", "account", h.Account, "mailbox", h.Mailbox, "epoch", h.Epoch)
		}
		l.handover = false // not ours to release any more
		l.cancel()
	}
}

// handOverOne cancels the runner of one held lease so that it is released once the runner has
// returned. It picks the most recently acquired lease (the highest epoch is no guide across
// mailboxes, so the choice is by key for determinism).
func (m *Leases) handOverOne() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	var keys []MailboxKey
	for k, l := range m.held {
		if l.ctx.Err() == nil {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return false
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].Account != keys[j].Account {
			return keys[i].Account > keys[j].Account
		}
		return keys[i].Mailbox > keys[j].Mailbox
	})
	l := m.held[keys[0]]
	l.handover = true
	l.cancel()
	m.log.Info("handing mailbox lease over", "account", l.Account, "mailbox", l.Mailbox, "epoch", l.Epoch)
	return true
}

// settle removes the leases whose runner has returned and releases them in the database: a
// hand-over, a runner that returned on its own (not acquired again for one TTL), or a lease given
// up at its deadline or found taken over (the release matches holder and epoch, so a lease that is
// no longer ours is left alone; one given up is released so its next holder need not wait).
func (r *round) settle(ctx context.Context) error {
	m := r.m
	now := time.Now()
	for k, until := range r.cooldown {
		if now.After(until) {
			delete(r.cooldown, k)
		}
	}
	m.mu.Lock()
	var release []Held
	for k, l := range m.held {
		if l.manual {
			continue
		}
		select {
		case <-l.done:
		default:
			continue
		}
		if l.ctx.Err() == nil {
			m.log.Warn("mailbox runner returned while holding its lease; releasing it", "account", k.Account, "mailbox", k.Mailbox)
			r.cooldown[k] = now.Add(m.opts.TTL)
		}
		if l.handover {
			m.stats.HandedOver++
		}
		l.cancel()
		l.timer.Stop()
		delete(m.held, k)
		release = append(release, l.Held)
	}
	m.mu.Unlock()
	if len(release) == 0 {
		return nil
	}
	return m.release(ctx, release, false)
}

// release gives leases up in the database (if still ours at that epoch) and wakes the replicas.
// With leaving, it also removes the replica's heartbeat first, so the woken replicas count it out
// of the share.
func (m *Leases) release(ctx context.Context, hs []Held, leaving bool) error {
	a, mb, e := columns(hs)
	var b pgx.Batch
	b.Queue(`UPDATE mailbox_leases l SET holder = '', expires_at = '-infinity'
FROM unnest($2::text[], $3::text[], $4::bigint[]) AS h (account, mailbox, epoch)
WHERE l.account = h.account AND l.mailbox = h.mailbox AND l.epoch = h.epoch AND l.holder = $1`, m.replica, a, mb, e)
	if leaving {
		b.Queue(`DELETE FROM replicas WHERE id = $1`, m.replica)
	}
	b.Queue(`SELECT pg_notify($1, $2)`, notifyLeases, m.replica)
	if err := m.pool.SendBatch(ctx, &b).Close(); err != nil {
		return fmt.Errorf("release leases: %w", err)
	}
	return nil
}

// acquire takes up to n leases of wanted mailboxes that are free (never held, released or
// expired by the database's clock), skipping rows a fenced transaction has locked, and starts a
// runner for each.
func (r *round) acquire(ctx context.Context, n int) error {
	m := r.m
	m.mu.Lock()
	var cand []MailboxKey
	for _, k := range r.want {
		if _, busy := m.held[k]; !busy && r.cooldown[k].IsZero() {
			cand = append(cand, k)
		}
	}
	m.mu.Unlock()
	if len(cand) == 0 || n <= 0 {
		return nil
	}
	a, mb := keyColumns(cand)
	sent := time.Now()
	rows, err := m.pool.Query(ctx, `UPDATE mailbox_leases l
SET holder = $1, epoch = l.epoch + 1, expires_at = clock_timestamp() + $2 * interval '1 microsecond', acquired_at = clock_timestamp()
FROM (
	SELECT f.account, f.mailbox, f.holder AS previous
	FROM mailbox_leases f JOIN unnest($3::text[], $4::text[]) AS w (account, mailbox) USING (account, mailbox)
	WHERE f.expires_at < clock_timestamp()
	ORDER BY random()
	LIMIT $5
	FOR UPDATE OF f SKIP LOCKED
) c
WHERE l.account = c.account AND l.mailbox = c.mailbox
RETURNING l.account, l.mailbox, l.epoch, c.previous`, m.replica, m.opts.TTL.Microseconds(), a, mb, n)
	if err != nil {
		return fmt.Errorf("acquire leases: %w", err)
	}
	type got struct {
		Held
		previous string
	}
	var gs []got
	for rows.Next() {
		var g got
		if err := rows.Scan(&g.Account, &g.Mailbox, &g.Epoch, &g.previous); err != nil {
			rows.Close()
			return fmt.Errorf("acquire leases: %w", err)
		}
		gs = append(gs, g)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("acquire leases: %w", err)
	}
	deadline := sent.Add(m.opts.TTL - m.opts.Margin)
	// Start in a random order: replicas starting together should not all begin with one account.
	rand.Shuffle(len(gs), func(i, j int) { gs[i], gs[j] = gs[j], gs[i] })
	for _, g := range gs {
		m.start(g.Held, deadline, g.previous, r.run)
	}
	return nil
}

// Lost tells the manager that the runner of h found its lease taken over (a fenced write failed
// with store.ErrLeaseLost): the lease is given up now, not at the next renewal, and counted lost.
// Its runner's context is cancelled; the lease is settled once the runner has returned.
func (m *Leases) Lost(h Held) {
	m.mu.Lock()
	l := m.held[h.MailboxKey]
	lost := l != nil && l.Epoch == h.Epoch && l.ctx.Err() == nil
	if lost {
		m.stats.Lost++
		l.cancel()
	}
	m.mu.Unlock()
	if lost {
		m.log.Info("mailbox lease found taken over: giving it up", "account", h.Account, "mailbox", h.Mailbox, "epoch", h.Epoch)
		signal(m.wake)
	}
}

// start records an acquired lease and starts its runner.
func (m *Leases) start(h Held, deadline time.Time, previous string, run func(context.Context, Held)) {
	lctx, cancel := context.WithCancel(context.Background())
	l := &lease{Held: h, ctx: lctx, cancel: cancel, done: make(chan struct{})}
	l.timer = time.AfterFunc(time.Until(deadline), func() {
		if lctx.Err() == nil {
			m.mu.Lock()
			m.stats.Lost++
			m.mu.Unlock()
			m.log.Warn("mailbox lease not renewed in time: giving it up", "account", h.Account, "mailbox", h.Mailbox, "epoch", h.Epoch)
		}
		cancel()
	})
	m.mu.Lock()
	m.held[h.MailboxKey] = l
	m.stats.Acquired++
	takeover := previous != "" && previous != m.replica
	if takeover {
		m.stats.TakenOver++
	}
	m.mu.Unlock()
	if takeover {
		m.log.Info("mailbox lease taken over", "account", h.Account, "mailbox", h.Mailbox, "epoch", h.Epoch, "previous", previous)
	} else {
		m.log.Info("mailbox lease acquired", "account", h.Account, "mailbox", h.Mailbox, "epoch", h.Epoch)
	}
	go func() {
		defer func() {
			close(l.done)
			signal(m.exited)
		}()
		run(lctx, h)
	}()
}

// shutdown cancels every runner, waits for them (at most StopTimeout), releases the leases that
// are still ours and removes the heartbeat.
func (m *Leases) shutdown() error {
	m.mu.Lock()
	all := make([]*lease, 0, len(m.held))
	for _, l := range m.held {
		all = append(all, l)
		l.cancel()
		l.timer.Stop()
	}
	m.mu.Unlock()
	wait := time.NewTimer(m.opts.StopTimeout)
	defer wait.Stop()
	for _, l := range all {
		if l.manual {
			continue
		}
		select {
		case <-l.done:
		case <-wait.C:
			m.log.Warn("mailbox runner did not stop in time; releasing its lease anyway", "account", l.Account, "mailbox", l.Mailbox)
			wait.Reset(0)
		}
	}
	hs := make([]Held, len(all))
	for i, l := range all {
		hs[i] = l.Held
	}
	ctx, cancel := context.WithTimeout(context.Background(), m.opts.TTL/3)
	defer cancel()
	err := m.release(ctx, hs, true)
	m.mu.Lock()
	for k := range m.held {
		delete(m.held, k)
	}
	m.mu.Unlock()
	if err != nil {
		m.log.Warn("releasing leases at stop failed; they lapse after the lease ttl", "err", err)
	}
	return nil
}

// ErrLeaseHeld: Acquire found the mailbox's lease held by another live replica.
var ErrLeaseHeld = errors.New("mailbox lease is held by another replica")

// Acquire takes the lease of (account, mailbox) once, outside Run, for a tool or a test that
// writes for one mailbox: it succeeds when the lease is free, expired, or held by this replica id
// (a restarted handle with the same id: the epoch is bumped, fencing the previous handle out), and
// fails with ErrLeaseHeld otherwise. The lease has no runner and is not renewed unless Run runs;
// its fencing does not depend on renewal. Close releases it.
func (m *Leases) Acquire(ctx context.Context, account, mailbox string) (Held, error) {
	k := MailboxKey{account, mailbox}
	h := Held{MailboxKey: k}
	if _, err := m.pool.Exec(ctx, `INSERT INTO mailbox_leases (account, mailbox, holder, epoch, expires_at, acquired_at)
VALUES ($1, $2, '', 0, '-infinity', '-infinity') ON CONFLICT (account, mailbox) DO NOTHING`, account, mailbox); err != nil {
		return Held{}, fmt.Errorf("acquire lease of %q/%q: %w", account, mailbox, err)
	}
	err := m.pool.QueryRow(ctx, `UPDATE mailbox_leases l
SET holder = $3, epoch = l.epoch + 1, expires_at = clock_timestamp() + $4 * interval '1 microsecond', acquired_at = clock_timestamp()
WHERE l.account = $1 AND l.mailbox = $2 AND (l.expires_at < clock_timestamp() OR l.holder = $3)
RETURNING l.epoch`, account, mailbox, m.replica, m.opts.TTL.Microseconds()).Scan(&h.Epoch)
	if errors.Is(err, pgx.ErrNoRows) {
		return Held{}, fmt.Errorf("acquire lease of %q/%q: %w", account, mailbox, ErrLeaseHeld)
	}
	if err != nil {
		return Held{}, fmt.Errorf("acquire lease of %q/%q: %w", account, mailbox, err)
	}
	lctx, cancel := context.WithCancel(context.Background())
	l := &lease{Held: h, ctx: lctx, cancel: cancel, done: make(chan struct{}), manual: true}
	l.timer = time.AfterFunc(time.Hour, func() {})
	l.timer.Stop()
	m.mu.Lock()
	if old, ok := m.held[k]; ok {
		old.cancel()
		old.timer.Stop()
	}
	m.held[k] = l
	m.stats.Acquired++
	m.mu.Unlock()
	return h, nil
}

// releaseAll releases every lease still recorded as held (those taken with Acquire; Run releases
// its own as it stops).
func (m *Leases) releaseAll(ctx context.Context) error {
	m.mu.Lock()
	var hs []Held
	for k, l := range m.held {
		l.cancel()
		l.timer.Stop()
		hs = append(hs, l.Held)
		delete(m.held, k)
	}
	m.mu.Unlock()
	if len(hs) == 0 {
		return nil
	}
	return m.release(ctx, hs, false)
}

func columns(hs []Held) (accounts, mailboxes []string, epochs []int64) {
	accounts = make([]string, len(hs))
	mailboxes = make([]string, len(hs))
	epochs = make([]int64, len(hs))
	for i, h := range hs {
		accounts[i], mailboxes[i], epochs[i] = h.Account, h.Mailbox, h.Epoch
	}
	return
}

func keyColumns(ks []MailboxKey) (accounts, mailboxes []string) {
	accounts = make([]string, len(ks))
	mailboxes = make([]string, len(ks))
	for i, k := range ks {
		accounts[i], mailboxes[i] = k.Account, k.Mailbox
	}
	return
}

// LeaseState is one mailbox lease as the status verb shows it.
type LeaseState struct {
	MailboxKey
	Holder    string    // replica id; "" when free or released
	Epoch     int64     // acquisitions so far
	ExpiresAt time.Time // by the database's clock; zero when released or never held
	Live      bool      // held and not expired at the database's clock now
}

// LeaseStates lists every mailbox lease, ordered by account and mailbox.
func (s *Store) LeaseStates(ctx context.Context) ([]LeaseState, error) {
	rows, err := s.pool.Query(ctx, `SELECT account, mailbox, holder, epoch,
	CASE WHEN isfinite(expires_at) THEN expires_at END, holder <> '' AND expires_at > clock_timestamp()
FROM mailbox_leases ORDER BY account, mailbox`)
	if err != nil {
		return nil, fmt.Errorf("list mailbox leases: %w", err)
	}
	defer rows.Close()
	var out []LeaseState
	for rows.Next() {
		var l LeaseState
		var exp *time.Time
		if err := rows.Scan(&l.Account, &l.Mailbox, &l.Holder, &l.Epoch, &exp, &l.Live); err != nil {
			return nil, fmt.Errorf("list mailbox leases: %w", err)
		}
		if exp != nil {
			l.ExpiresAt = exp.UTC()
		}
		out = append(out, l)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list mailbox leases: %w", err)
	}
	return out, nil
}

// DescribeLeases says, per mailbox with a lease row, who watches it, as the status verb prints it
// under the mailbox: "lease: held by REPLICA until TIME (in DURATION), epoch N", "lease: lapsed
// (…)" or "lease: free (…)".
func (s *Store) DescribeLeases(ctx context.Context, now time.Time) (map[MailboxKey]string, error) {
	ls, err := s.LeaseStates(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[MailboxKey]string, len(ls))
	for _, l := range ls {
		line := "lease: free (no replica watches it)"
		if l.Live {
			line = fmt.Sprintf("lease: held by %s until %s (in %s), epoch %d", l.Holder,
				l.ExpiresAt.Local().Format(time.RFC3339), l.ExpiresAt.Sub(now).Round(time.Second), l.Epoch)
		} else if l.Holder != "" {
			line = fmt.Sprintf("lease: lapsed (last held by %s until %s), epoch %d", l.Holder,
				l.ExpiresAt.Local().Format(time.RFC3339), l.Epoch)
		}
		out[l.MailboxKey] = line
	}
	return out, nil
}

// ReplicaState is one replica with a heartbeat row.
type ReplicaState struct {
	ID, Host  string
	StartedAt time.Time
	Heartbeat time.Time
	ExpiresAt time.Time
	Live      bool
}

// ReplicaStates lists the replicas with a heartbeat row (live or lapsed), by id.
func (s *Store) ReplicaStates(ctx context.Context) ([]ReplicaState, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, host, started_at, heartbeat_at, expires_at, expires_at > clock_timestamp()
FROM replicas ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list replicas: %w", err)
	}
	defer rows.Close()
	var out []ReplicaState
	for rows.Next() {
		var r ReplicaState
		if err := rows.Scan(&r.ID, &r.Host, &r.StartedAt, &r.Heartbeat, &r.ExpiresAt, &r.Live); err != nil {
			return nil, fmt.Errorf("list replicas: %w", err)
		}
		r.StartedAt, r.Heartbeat, r.ExpiresAt = r.StartedAt.UTC(), r.Heartbeat.UTC(), r.ExpiresAt.UTC()
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list replicas: %w", err)
	}
	return out, nil
}
