package reply

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/mailhook/mailhook/outbox"
	"github.com/mailhook/mailhook/store"
)

// Ledger is the part of the store the reply worker consults right before it sends: the reply
// ledger (once per sender and period), the rolling daily count and the account's sending pause.
// It is the part of store.Replies it uses; see there for the ledger's contract.
type Ledger interface {
	ReserveReply(ctx context.Context, k store.ReplyKey, messageID string, oncePer time.Duration, perDay int, now time.Time) (store.Reservation, error)
	ReleaseReply(ctx context.Context, k store.ReplyKey, messageID string) error
	PauseReplies(ctx context.Context, account string, now time.Time, reason string) (time.Time, error)
}

var _ Ledger = store.Replies(nil)

// Account is one account that sends replies.
type Account struct {
	Name   string
	Sender Sender
	// PerDay caps the replies of the account in any rolling 24 h; ≤ 0 means no cap.
	PerDay int
}

// Outcomes reported to Options.OnOutcome. They are stable metric label values.
const (
	OutcomeSent      = "sent"      // accepted by the server
	OutcomeDuplicate = "duplicate" // the sender was answered within once_per: not sent, job done
	OutcomeOverCap   = "over_cap"  // the daily cap is reached: job waits for the window
	OutcomePaused    = "paused"    // sending is paused after a daily-limit refusal: job waits
	OutcomeRetry     = "retry"     // temporary failure: job retried with backoff
	OutcomeDead      = "dead"      // permanent failure, or retried for Retry.MaxAge: dead-lettered
	OutcomeUnknown   = "unknown"   // connection lost after the final dot: never resent
)

// Defaults of Options.Retry.
const (
	DefaultMaxAge     = 72 * time.Hour
	DefaultMinBackoff = time.Minute
	DefaultMaxBackoff = time.Hour
)

// storeRetry is how soon a job whose ledger check failed is tried again.
const storeRetry = time.Second

// releaseTimeout bounds the release of a reservation, which goes on during shutdown.
const releaseTimeout = 10 * time.Second

// Options tune a Worker. The zero value is usable.
type Options struct {
	// Logger gets one line per outcome, with the keys account, reply, job and to; nil discards.
	// Message bodies, passwords and tokens are never logged.
	Logger *slog.Logger
	// Now is the clock (default time.Now); Rand gives a uniform number in [0, 1) for backoff
	// jitter (default math/rand/v2).
	Now  func() time.Time
	Rand func() float64
	// Retry is the schedule of temporary failures (defaults 72h, 1m, 1h).
	Retry outbox.RetryPolicy
	// OnOutcome, when set, is called once per handled job (for metrics), before its outcome is
	// recorded. It must not block.
	OnOutcome func(account, outcome string)
}

// Worker sends the reply jobs of the outbox, as an outbox.Worker: one lane per account, sending
// one reply at a time through the account's Sender, and one lane for reply jobs of any account,
// which dead-letters those whose account no longer sends replies (last error
// "reply_account_removed"). Semantics:
//
//   - At most once per (account, sender, reply) and period: right before sending, the worker
//     reserves the reply in the ledger (once per account, lower-cased recipient and reply name per
//     once_per) together with the rolling daily count, in one transaction; a job whose reply is
//     already in the ledger is done without sending, so two messages from one sender yield one
//     reply even when they arrive together.
//   - 250: done. A 4xx or a network failure before the final dot: the reservation is released and
//     the job retried with backoff (dead after Retry.MaxAge). A 5xx: released and dead-lettered.
//   - `550 5.4.5` (daily sending limit): the account's sending is paused until the rolling window
//     allows (store.PauseReplies), and the job waits for it.
//   - Connection lost after the final dot: the job becomes unknown and the reservation stands:
//     never resent. A reply left in flight by a crash becomes unknown too (the store recovers it
//     so).
//   - The daily cap reached: the job waits until the window allows, and an alert is logged.
type Worker struct {
	ledger   Ledger
	accounts map[string]*account
	order    []*account
	log      *slog.Logger
	now      func() time.Time
	rand     func() float64
	retry    outbox.RetryPolicy
	observe  func(account, outcome string)
}

var _ outbox.Worker = (*Worker)(nil)

// account is an Account with the lock that keeps its sends one at a time; it is the Gate of the
// account's lane.
type account struct {
	Account
	mu        sync.Mutex
	alertedAt time.Time // end of the window last alerted for (cap reached), to alert once
}

var _ outbox.Gate = (*account)(nil)

// Acquire takes the account's lock: one reply at a time.
func (a *account) Acquire(context.Context) int { a.mu.Lock(); return 1 }

// Release gives the lock back.
func (a *account) Release(int) { a.mu.Unlock() }

// New returns the reply worker of accounts, consulting ledger. It does no I/O.
func New(ledger Ledger, accounts []Account, opts Options) (*Worker, error) {
	if ledger == nil {
		return nil, errors.New("reply dispatch: nil ledger")
	}
	w := &Worker{ledger: ledger, accounts: map[string]*account{}, log: opts.Logger, now: opts.Now,
		rand: opts.Rand, observe: opts.OnOutcome}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	if w.now == nil {
		w.now = time.Now
	}
	if w.rand == nil {
		w.rand = rand.Float64
	}
	if w.observe == nil {
		w.observe = func(string, string) {}
	}
	w.retry = opts.Retry.WithDefaults(outbox.RetryPolicy{MaxAge: DefaultMaxAge, MinBackoff: DefaultMinBackoff,
		MaxBackoff: DefaultMaxBackoff})
	if err := w.retry.Check(); err != nil {
		return nil, fmt.Errorf("reply dispatch: %w", err)
	}
	for _, a := range accounts {
		if a.Name == "" || a.Sender == nil {
			return nil, errors.New("reply dispatch: account without a name or sender")
		}
		if _, dup := w.accounts[a.Name]; dup {
			return nil, fmt.Errorf("reply dispatch: account %q configured twice", a.Name)
		}
		ra := &account{Account: a}
		w.accounts[a.Name] = ra
		w.order = append(w.order, ra)
	}
	return w, nil
}

// Lanes returns the worker's claim lanes for an outbox.Consumer: per account, its reply jobs, sent
// one at a time under the account's lock (held from before the claim until the outcome is
// recorded); and reply jobs of any account, worked by Work.
func (w *Worker) Lanes() []outbox.Lane {
	var lanes []outbox.Lane
	for _, a := range w.order {
		lanes = append(lanes, outbox.Lane{
			Select: store.Selector{Kind: store.KindReply, Account: a.Name},
			Gate:   a,
			Worker: outbox.WorkerFunc(func(ctx context.Context, j store.Job) outbox.Result { return w.send(ctx, a, j) }),
			Log:    w.log,
		})
	}
	return append(lanes, outbox.Lane{Select: store.Selector{Kind: store.KindReply}, Worker: w, Log: w.log})
}

// Work handles a reply job of any account: it dead-letters the job of an account that no longer
// sends replies, and sends the others under their account's lock.
func (w *Worker) Work(ctx context.Context, j store.Job) outbox.Result {
	a, ok := w.accounts[j.Account]
	if !ok {
		log := w.log.With("account", j.Account, "reply", j.Target, "job", j.ID)
		log.Warn("account no longer sends replies; job dead-lettered", "err", "reply_account_removed")
		w.observe(j.Account, OutcomeDead)
		return outbox.Result{State: store.StateDead, Log: log, Attempt: store.Attempt{Status: "removed", Error: "reply_account_removed"}}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return w.send(ctx, a, j)
}

// send sends one claimed reply job of account a (whose lock the caller holds) and returns its
// outcome. A reply that failed for certain frees its reservation first.
func (w *Worker) send(ctx context.Context, a *account, j store.Job) outbox.Result {
	log := w.log.With("account", j.Account, "reply", j.Target, "job", j.ID, "uid", j.UID, "attempt", j.Attempts)
	now := w.now()
	result := func(outcome, state string, next time.Time, at store.Attempt) outbox.Result {
		if outcome != "" {
			w.observe(a.Name, outcome)
		}
		return outbox.Result{State: state, NextAt: next, Attempt: at, Log: log}
	}
	rj, err := ParseJob(j.Body)
	if err != nil {
		log.Error("reply job unreadable; dead-lettered", "err", err)
		return result(OutcomeDead, store.StateDead, time.Time{}, store.Attempt{Status: "bad_job", Error: err.Error()})
	}
	log = log.With("to", rj.To)
	key := store.ReplyKey{Account: j.Account, Sender: rj.To, Reply: rj.Reply}
	res, err := w.ledger.ReserveReply(ctx, key, rj.MessageID, rj.OncePer, a.PerDay, now)
	if err != nil {
		if ctx.Err() == nil {
			log.Error("reply ledger unavailable; will retry", "err", err)
		}
		return result("", store.StatePending, now.Add(storeRetry), store.Attempt{Status: "store", Error: err.Error()})
	}
	switch res.Status {
	case store.ReplyDuplicate:
		// Done, not dead: rule post-actions go on, as for a reply a loop guard skipped.
		log.Debug("reply skipped", "reason", "already_replied")
		return result(OutcomeDuplicate, store.StateDone, time.Time{}, store.Attempt{Status: "skipped", Error: "already replied to this sender within once_per"})
	case store.ReplyPaused:
		log.Info("replies paused; reply waits", "until", res.Until)
		return result(OutcomePaused, store.StatePending, res.Until, store.Attempt{Status: "paused", Error: "sending paused until " + res.Until.Format(time.RFC3339)})
	case store.ReplyOverCap:
		if !a.alertedAt.Equal(res.Until) {
			a.alertedAt = res.Until
			log.Error("alert: daily reply cap reached; replies stop until the window allows",
				"alert", "replies_per_day", "sent", res.Sent, "cap", a.PerDay, "until", res.Until)
		}
		return result(OutcomeOverCap, store.StatePending, res.Until, store.Attempt{Status: "over_cap", Error: fmt.Sprintf("replies_per_day %d reached", a.PerDay)})
	}

	msg, err := rj.Compose(now)
	if err == nil {
		err = a.Sender.Send(ctx, rj.EnvelopeFrom, rj.To, msg)
	}
	if err == nil {
		log.Info("reply sent", "message_id", rj.MessageID)
		return result(OutcomeSent, store.StateDone, time.Time{}, store.Attempt{Status: "smtp 250"})
	}
	var se *SendError
	if !errors.As(err, &se) {
		se = &SendError{Stage: StageConnect, Err: err}
	}
	at := store.Attempt{Status: se.Status(), Error: se.Error()}
	if se.Ambiguous {
		// At most once: the server may have the reply. The reservation stands.
		log.Error("reply outcome unknown (connection lost after the message was sent); never resent", "err", err)
		return result(OutcomeUnknown, store.StateUnknown, time.Time{}, at)
	}
	// Certainly not sent: free the ledger entry and the daily count.
	w.release(ctx, log, key, rj.MessageID)
	switch {
	case ctx.Err() != nil:
		at.Status, at.Error = "canceled", "shut down before the message was sent"
		log.Debug("reply interrupted by shutdown; job requeued")
		return result("", store.StatePending, w.now(), at)
	case se.DailyLimit():
		until, perr := w.ledger.PauseReplies(ctx, a.Name, w.now(), "daily sending limit: "+se.Status()+" "+se.Enhanced)
		if perr != nil {
			until = w.now().Add(store.ReplyPauseMin)
			log.Error("cannot record the sending pause", "err", perr)
		}
		log.Error("alert: the server's daily sending limit is reached; all replies of the account paused",
			"alert", "daily_sending_limit", "err", err, "until", until)
		return result(OutcomePaused, store.StatePending, until, at)
	case se.Temporary():
		if next, ok := w.retry.Next(j.CreatedAt, w.now(), max(j.Attempts-1, 0), 0, w.rand()); ok {
			log.Warn("reply failed; will retry", "status", at.Status, "err", err, "next_at", next)
			return result(OutcomeRetry, store.StatePending, next, at)
		}
		at.Error += fmt.Sprintf("; gave up after max_age %v", w.retry.MaxAge)
		log.Error("reply failed; job dead-lettered", "status", at.Status, "err", at.Error)
		return result(OutcomeDead, store.StateDead, time.Time{}, at)
	default:
		log.Error("reply refused; job dead-lettered", "status", at.Status, "err", err)
		return result(OutcomeDead, store.StateDead, time.Time{}, at)
	}
}

// release frees a reservation, going on during shutdown (a reply that was certainly not sent must
// not block the sender for a week).
func (w *Worker) release(ctx context.Context, log *slog.Logger, k store.ReplyKey, messageID string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	if err := w.ledger.ReleaseReply(ctx, k, messageID); err != nil {
		log.Error("cannot release the reply reservation; the sender gets no reply this period", "err", err)
	}
}
