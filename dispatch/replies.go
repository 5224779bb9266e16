package dispatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/mailhook/mailhook/store"
)

// ReplyOutbox is the part of the store reply workers drive: the outbox (jobs of kind reply) and
// the reply ledger. *store.Store implements it. See store.ReserveReply for the ledger contract.
type ReplyOutbox interface {
	ClaimSelected(ctx context.Context, sel store.Selector, now time.Time, max int) ([]store.Job, error)
	Finish(ctx context.Context, id, state string, nextAt time.Time, a store.Attempt) error
	NextDueSelected(ctx context.Context, sel store.Selector) (time.Time, bool, error)
	Wake() <-chan struct{}
	ReserveReply(ctx context.Context, k store.ReplyKey, messageID string, oncePer time.Duration, perDay int, now time.Time) (store.Reservation, error)
	ReleaseReply(ctx context.Context, k store.ReplyKey, messageID string) error
	PauseReplies(ctx context.Context, account string, now time.Time, reason string) (time.Time, error)
}

var _ ReplyOutbox = (*store.Store)(nil)

// ReplyAccount is one account that sends replies.
type ReplyAccount struct {
	Name   string
	Sender Sender
	// PerDay caps the replies of the account in any rolling 24 h (REQUIREMENTS C60); ≤ 0 means
	// no cap.
	PerDay int
}

// Outcomes reported to ReplyOptions.OnOutcome. They are stable metric label values.
const (
	ReplySent      = "sent"      // accepted by the server
	ReplyDuplicate = "duplicate" // the sender was answered within once_per: not sent, job done
	ReplyOverCap   = "over_cap"  // the daily cap is reached: job waits for the window
	ReplyPaused    = "paused"    // sending is paused after a daily-limit refusal: job waits
	ReplyRetry     = "retry"     // temporary failure: job retried with backoff
	ReplyDead      = "dead"      // permanent failure, or retried for Retry.MaxAge: dead-lettered
	ReplyUnknown   = "unknown"   // connection lost after the final dot: never resent
)

// Defaults of ReplyOptions.Retry.
const (
	DefaultReplyMaxAge     = 72 * time.Hour
	DefaultReplyMinBackoff = time.Minute
	DefaultReplyMaxBackoff = time.Hour
)

// ReplyOptions tune a ReplyDispatcher. The zero value is usable.
type ReplyOptions struct {
	// Logger gets one line per outcome, with the keys account, reply, job and to; nil discards.
	// Message bodies, passwords and tokens are never logged.
	Logger *slog.Logger
	// Now is the clock (default time.Now); Rand gives a uniform number in [0, 1) for backoff
	// jitter (default math/rand/v2).
	Now  func() time.Time
	Rand func() float64
	// Retry is the schedule of temporary failures (defaults 72h, 1m, 1h).
	Retry RetryPolicy
	// OnOutcome, when set, is called once per handled job (for metrics). It must not block.
	OnOutcome func(account, outcome string)
}

// ReplyDispatcher sends the reply jobs of the outbox: one worker per account, sending one reply at
// a time through the account's Sender, apart from the webhook workers (which claim only kind
// webhook). Semantics (DESIGN "Delivery semantics"; REQUIREMENTS C52, C60, C65, C66):
//
//   - At most once: right before sending, the worker reserves the reply in the ledger (once per
//     account, lower-cased recipient and reply name per once_per) together with the rolling daily
//     count, in one transaction; a job whose reply is already in the ledger is done without
//     sending, so two messages from one sender yield one reply even when they arrive together.
//   - 250: done. A 4xx or a network failure before the final dot: the reservation is released and
//     the job retried with backoff (dead after Retry.MaxAge). A 5xx: released and dead-lettered.
//   - `550 5.4.5` (daily sending limit): the account's sending is paused until the rolling window
//     allows (store.PauseReplies), and the job waits for it.
//   - Connection lost after the final dot: the job becomes unknown and the reservation stands:
//     never resent.
//   - The daily cap reached: the job waits until the window allows, and an alert is logged.
type ReplyDispatcher struct {
	out      ReplyOutbox
	accounts map[string]*replyAccount
	order    []*replyAccount
	log      *slog.Logger
	now      func() time.Time
	rand     func() float64
	retry    RetryPolicy
	observe  func(account, outcome string)
	beats    beats // worker loop heartbeats, for Heartbeat
}

// replyAccount is a ReplyAccount with the lock that keeps its sends one at a time.
type replyAccount struct {
	ReplyAccount
	mu        sync.Mutex
	alertedAt time.Time // end of the window last alerted for (cap reached), to alert once
}

// NewReplyDispatcher returns a dispatcher for accounts. It does no I/O.
func NewReplyDispatcher(o ReplyOutbox, accounts []ReplyAccount, opts ReplyOptions) (*ReplyDispatcher, error) {
	if o == nil {
		return nil, errors.New("reply dispatch: nil outbox")
	}
	d := &ReplyDispatcher{out: o, accounts: map[string]*replyAccount{}, log: opts.Logger, now: opts.Now,
		rand: opts.Rand, observe: opts.OnOutcome}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if d.now == nil {
		d.now = time.Now
	}
	if d.rand == nil {
		d.rand = rand.Float64
	}
	if d.observe == nil {
		d.observe = func(string, string) {}
	}
	r := opts.Retry
	if r.MaxAge == 0 {
		r.MaxAge = DefaultReplyMaxAge
	}
	if r.MinBackoff == 0 {
		r.MinBackoff = DefaultReplyMinBackoff
	}
	if r.MaxBackoff == 0 {
		r.MaxBackoff = DefaultReplyMaxBackoff
	}
	var err error
	if d.retry, err = r.withDefaults(); err != nil {
		return nil, fmt.Errorf("reply dispatch: %w", err)
	}
	for _, a := range accounts {
		if a.Name == "" || a.Sender == nil {
			return nil, errors.New("reply dispatch: account without a name or sender")
		}
		if _, dup := d.accounts[a.Name]; dup {
			return nil, fmt.Errorf("reply dispatch: account %q configured twice", a.Name)
		}
		ra := &replyAccount{ReplyAccount: a}
		d.accounts[a.Name] = ra
		d.order = append(d.order, ra)
	}
	return d, nil
}

// Run sends reply jobs until ctx is done, then returns nil once every worker has stopped. Besides
// one worker per account, one worker claims reply jobs of any account and dead-letters those
// whose account no longer sends replies (last error "reply_account_removed"). Run must not be
// called again before it has returned.
func (d *ReplyDispatcher) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, a := range d.order {
		wg.Go(func() { d.worker(a).run(ctx) })
	}
	wg.Go(func() { d.worker(nil).run(ctx) })
	wg.Wait()
	d.log.Debug("reply dispatcher stopped")
	return nil
}

// Heartbeat returns the oldest of the times at which each running worker last began a round of
// its loop, or the zero time when Run is not running (see Dispatcher.Heartbeat). A worker goes
// round at least every 30 s while idle, and after every reply, which the Sender's timeouts bound.
func (d *ReplyDispatcher) Heartbeat() time.Time { return d.beats.oldest() }

// worker returns the loop of account a's worker, which sends the account's replies one at a time
// under the account's lock (held from before Claim until the job is finished), or of the
// any-account worker when a is nil.
func (d *ReplyDispatcher) worker(a *replyAccount) *pump {
	sel := store.Selector{Kind: store.KindReply}
	p := &pump{
		log:    d.log,
		now:    d.now,
		wake:   d.out.Wake,
		beats:  &d.beats,
		handle: d.route,
	}
	if a != nil {
		sel.Account = a.Name
		p.acquire = func(context.Context) int { a.mu.Lock(); return 1 }
		p.release = func(int) { a.mu.Unlock() }
		p.handle = func(ctx context.Context, j store.Job) { d.handle(ctx, a, j) }
	}
	p.claim = func(ctx context.Context, now time.Time, max int) ([]store.Job, error) {
		return d.out.ClaimSelected(ctx, sel, now, max)
	}
	p.nextDue = func(ctx context.Context) (time.Time, bool, error) { return d.out.NextDueSelected(ctx, sel) }
	return p
}

// route handles a job claimed by the any-account worker.
func (d *ReplyDispatcher) route(ctx context.Context, j store.Job) {
	a, ok := d.accounts[j.Account]
	if !ok {
		log := d.log.With("account", j.Account, "reply", j.Target, "job", j.ID)
		log.Warn("account no longer sends replies; job dead-lettered", "err", "reply_account_removed")
		d.finish(ctx, log, j, store.StateDead, time.Time{}, store.Attempt{Status: "removed", Error: "reply_account_removed"})
		d.observe(j.Account, ReplyDead)
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	d.handle(ctx, a, j)
}

// handle runs one claimed reply job of account a (whose lock the caller holds).
func (d *ReplyDispatcher) handle(ctx context.Context, a *replyAccount, j store.Job) {
	log := d.log.With("account", j.Account, "reply", j.Target, "job", j.ID, "uid", j.UID, "attempt", j.Attempts)
	now := d.now()
	outcome := func(o string) { d.observe(a.Name, o) }
	rj, err := ParseReplyJob(j.Body)
	if err != nil {
		log.Error("reply job unreadable; dead-lettered", "err", err)
		d.finish(ctx, log, j, store.StateDead, time.Time{}, store.Attempt{Status: "bad_job", Error: err.Error()})
		outcome(ReplyDead)
		return
	}
	log = log.With("to", rj.To)
	key := store.ReplyKey{Account: j.Account, Sender: rj.To, Reply: rj.Reply}
	res, err := d.out.ReserveReply(ctx, key, rj.MessageID, rj.OncePer, a.PerDay, now)
	if err != nil {
		if ctx.Err() == nil {
			log.Error("reply ledger unavailable; will retry", "err", err)
		}
		d.finish(ctx, log, j, store.StatePending, now.Add(minStoreRetry), store.Attempt{Status: "store", Error: err.Error()})
		return
	}
	switch res.Status {
	case store.ReplyDuplicate:
		// Done, not dead: rule post-actions go on, as for a reply a loop guard skipped.
		log.Debug("reply skipped", "reason", "already_replied")
		d.finish(ctx, log, j, store.StateDone, time.Time{}, store.Attempt{Status: "skipped", Error: "already replied to this sender within once_per"})
		outcome(ReplyDuplicate)
		return
	case store.ReplyPaused:
		log.Info("replies paused; reply waits", "until", res.Until)
		d.finish(ctx, log, j, store.StatePending, res.Until, store.Attempt{Status: "paused", Error: "sending paused until " + res.Until.Format(time.RFC3339)})
		outcome(ReplyPaused)
		return
	case store.ReplyOverCap:
		if !a.alertedAt.Equal(res.Until) {
			a.alertedAt = res.Until
			log.Error("alert: daily reply cap reached; replies stop until the window allows",
				"alert", "replies_per_day", "sent", res.Sent, "cap", a.PerDay, "until", res.Until)
		}
		d.finish(ctx, log, j, store.StatePending, res.Until, store.Attempt{Status: "over_cap", Error: fmt.Sprintf("replies_per_day %d reached", a.PerDay)})
		outcome(ReplyOverCap)
		return
	}

	msg, err := rj.Compose(now)
	if err == nil {
		err = a.Sender.Send(ctx, rj.EnvelopeFrom, rj.To, msg)
	}
	if err == nil {
		log.Info("reply sent", "message_id", rj.MessageID)
		d.finish(ctx, log, j, store.StateDone, time.Time{}, store.Attempt{Status: "smtp 250"})
		outcome(ReplySent)
		return
	}
	var se *SendError
	if !errors.As(err, &se) {
		se = &SendError{Stage: StageConnect, Err: err}
	}
	at := store.Attempt{Status: se.Status(), Error: se.Error()}
	if se.Ambiguous {
		// At most once (C66): the server may have the reply. The reservation stands.
		log.Error("reply outcome unknown (connection lost after the message was sent); never resent", "err", err)
		d.finish(ctx, log, j, store.StateUnknown, time.Time{}, at)
		outcome(ReplyUnknown)
		return
	}
	// Certainly not sent: free the ledger entry and the daily count.
	d.release(ctx, log, key, rj.MessageID)
	switch {
	case ctx.Err() != nil:
		at.Status, at.Error = "canceled", "shut down before the message was sent"
		log.Debug("reply interrupted by shutdown; job requeued")
		d.finish(ctx, log, j, store.StatePending, d.now(), at)
	case se.DailyLimit():
		until, perr := d.out.PauseReplies(ctx, a.Name, d.now(), "daily sending limit: "+se.Status()+" "+se.Enhanced)
		if perr != nil {
			until = d.now().Add(store.ReplyPauseMin)
			log.Error("cannot record the sending pause", "err", perr)
		}
		log.Error("alert: the server's daily sending limit is reached; all replies of the account paused",
			"alert", "daily_sending_limit", "err", err, "until", until)
		d.finish(ctx, log, j, store.StatePending, until, at)
		outcome(ReplyPaused)
	case se.Temporary():
		if next, ok := d.retry.next(j.CreatedAt, d.now(), max(j.Attempts-1, 0), 0, d.rand()); ok {
			log.Warn("reply failed; will retry", "status", at.Status, "err", err, "next_at", next)
			d.finish(ctx, log, j, store.StatePending, next, at)
			outcome(ReplyRetry)
			return
		}
		at.Error += fmt.Sprintf("; gave up after max_age %v", d.retry.MaxAge)
		log.Error("reply failed; job dead-lettered", "status", at.Status, "err", at.Error)
		d.finish(ctx, log, j, store.StateDead, time.Time{}, at)
		outcome(ReplyDead)
	default:
		log.Error("reply refused; job dead-lettered", "status", at.Status, "err", err)
		d.finish(ctx, log, j, store.StateDead, time.Time{}, at)
		outcome(ReplyDead)
	}
}

// release frees a reservation, going on during shutdown (a reply that was certainly not sent must
// not block the sender for a week).
func (d *ReplyDispatcher) release(ctx context.Context, log *slog.Logger, k store.ReplyKey, messageID string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finishTimeout)
	defer cancel()
	if err := d.out.ReleaseReply(ctx, k, messageID); err != nil {
		log.Error("cannot release the reply reservation; the sender gets no reply this period", "err", err)
	}
}

// finish records the outcome of a reply job (see persist); a reply left in flight becomes unknown
// on the next start (at most once).
func (d *ReplyDispatcher) finish(ctx context.Context, log *slog.Logger, j store.Job, state string, nextAt time.Time, a store.Attempt) {
	a.JobID = j.ID
	if a.At.IsZero() {
		a.At = d.now()
	}
	persist(ctx, log, "reply", state, func(ctx context.Context) error {
		return d.out.Finish(ctx, j.ID, state, nextAt, a)
	})
}
