package store

import "time"

// The download budget: the bytes each account downloaded over IMAP, in time buckets (one per
// account and bucket start, e.g. per minute, not one per fetch), the account's last throttle
// decision, and reservations of bytes for fetches under way, so that neither a restart nor a
// second process resets the rolling download budget.

// BudgetBucket is the number of bytes read from an account's IMAP server during the bucket that
// starts at Start. Its width is the caller's (the watcher uses one minute).
type BudgetBucket struct {
	Start time.Time
	Bytes int64
}

// BudgetThrottle is an account's last throttle decision: the account may fetch again at Until
// (zero when it is not throttled), for Reason.
type BudgetThrottle struct {
	Until     time.Time
	Reason    string
	UpdatedAt time.Time
}

// BudgetLimit is the rolling download budget a reservation is checked against: at most Bytes
// within any Window. Bucket is the width of the charged buckets: a bucket counts until its last
// instant has left the window (Start+Bucket+Window). Hold is how long a reservation counts when it
// is never released (its holder died); default DefaultBudgetHold.
type BudgetLimit struct {
	Bytes  int64
	Window time.Duration
	Bucket time.Duration
	Hold   time.Duration
}

// DefaultBudgetHold is how long an unreleased budget reservation counts.
const DefaultBudgetHold = 10 * time.Minute

// BudgetGrant is the answer to a budget reservation.
type BudgetGrant struct {
	// Granted says the bytes were reserved; ID names the reservation for ReleaseBudget.
	Granted bool
	ID      string
	// Used is what counted against the limit before this request: bytes charged within the
	// window plus the bytes of other live reservations.
	Used int64
	// Until, when not granted, is the earliest time the request could fit (charges leaving the
	// window, reservations lapsing); for a request larger than the limit, when nothing is used.
	Until time.Time
}

// EndpointState is what the store remembers about one webhook endpoint (a job target of kind
// webhook): whether it is disabled, since when and why, and since when it has been failing
// without a success. An endpoint the store has no record of is enabled and not failing.
type EndpointState struct {
	Name string
	// DisabledAt is when the endpoint was disabled; zero while it is enabled. The jobs of a
	// disabled endpoint are held (StateHeld) until EnableEndpoint releases them.
	DisabledAt time.Time
	// Reason says why it was disabled ("" when enabled), e.g. "http 410 Gone".
	Reason string
	// FailingSince is the first failed attempt since the last success; zero when the last
	// attempt succeeded (or none failed).
	FailingSince time.Time
	UpdatedAt    time.Time
}

// Disabled reports whether the endpoint is disabled.
func (e EndpointState) Disabled() bool { return !e.DisabledAt.IsZero() }

// Reply bookkeeping: auto-replies are sent at most once per (account, sender, reply) per period.
// The ledger keeps one entry per (account, lower-cased sender, reply) that was answered, until its
// once_per period has passed, with no size cap; every reply handed to SMTP is recorded with its
// Message-ID, making the rolling daily count (the last [ReplyWindow]) and letting a reply of ours
// that shows up in a watched mailbox be recognised (for [OwnReplyTTL]); and each account may have
// a time before which nothing is sent (after a `550 5.4.5` daily sending limit answer).
//
// A reply worker reserves right before it sends: in one transaction the store checks the ledger,
// the pause and the rolling count, and records the send. The worker releases the reservation when
// the server refused the message for certain (nothing was sent), and does nothing at all when the
// outcome is unknown: the reservation then stands, and the reply is never sent twice.

// Reply bookkeeping periods.
const (
	// ReplyWindow is the rolling window of the daily reply cap.
	ReplyWindow = 24 * time.Hour
	// OwnReplyTTL is how long the Message-ID of a sent reply is remembered as ours.
	OwnReplyTTL = 30 * 24 * time.Hour
	// ReplyPauseMin is the shortest pause after a daily-limit refusal (see Replies.PauseReplies).
	ReplyPauseMin = time.Hour
)

// ReplyKey names one entry of the reply ledger. Sender is compared lower-cased.
type ReplyKey struct {
	Account string
	Sender  string
	Reply   string
}

// Outcomes of [Replies.ReserveReply].
const (
	ReplyReserved  = "reserved"  // recorded; send it now
	ReplyDuplicate = "duplicate" // the sender got this reply within once_per: do not send
	ReplyOverCap   = "over_cap"  // the account's rolling daily cap is reached: try again at Until
	ReplyPaused    = "paused"    // the account's sending is paused: try again at Until
)

// Reservation is the answer of [Replies.ReserveReply].
type Reservation struct {
	Status string    // one of ReplyReserved, ReplyDuplicate, ReplyOverCap, ReplyPaused
	Until  time.Time // ReplyOverCap, ReplyPaused: when sending may resume
	Sent   int       // replies of the account within ReplyWindow before this one
}
