// Package watcher runs one IMAP session per (account, mailbox): connect, authenticate, select,
// catch up from the stored checkpoint, then wait for new mail with IDLE (or NOOP polling), fetching
// each new message in two passes (header section + BODYSTRUCTURE, then only the body parts the
// rules need, always BODY.PEEK) and handing it to a Handler whose jobs commit together with the
// checkpoint. It reconnects with full-jitter backoff and closes connections that fall silent, since
// go-imap has no read deadlines.
//
// Guarantees, given a State that commits jobs and checkpoint in one transaction:
//
//   - Messages are handed to the Handler in strictly ascending UID order, one commit per message;
//     the checkpoint never moves past a message whose commit failed.
//   - A message whose stable key (message.Message.Key) the State has already seen is committed with
//     no jobs and never reaches the Handler, so a rescan after a UIDVALIDITY change (RFC 3501 §2.3.1.1)
//     repeats nothing.
//   - Body sections are always fetched with BODY.PEEK, so \Seen is never set by the watcher.
//   - An EXISTS push only wakes the loop; every wake-up re-runs the UID SEARCH, so a lost push costs
//     latency, never mail.
//   - A message that fails to fetch three times in a row is delivered from whatever was fetched with
//     the "fetch_failed" defect, so one bad message never stalls a mailbox.
//   - Every IDLE refresh (or poll) selects the mailbox again, so a mailbox deleted and re-created
//     under a live session (new UIDVALIDITY) is noticed within one refresh interval.
//   - One connection per Watcher; a silent connection is closed by a watchdog (CommandTimeout while
//     a command is outstanding, IdleRefresh + WatchdogSlack or the learned keepalive rhythm while
//     idling), and every error leads to a reconnect after full-jitter backoff.
//   - [ALERT] texts (tagged, and untagged ones on tls and plain connections) are logged at warning
//     level and shown as Status.Reason.
//   - With a Config.Budget, every byte read is charged to the account's rolling download budget
//     and no FETCH is sent that the budget refuses: the watcher pauses after the current message
//     (StateThrottled, the checkpoint where it was) and resumes when the window allows, skipping
//     nothing. Nothing of a message beyond Config.MaxMessageSize is fetched, and a server literal
//     larger than that drops the connection (budget.go, throttle.go).
//   - Attachment content is fetched only as the Handler's match chooses (Matched.Inline), once per
//     message, streamed through its transfer decoding into fsynced files in Config.Incoming that
//     the Handler sees before the commit and that are removed after it (spool.go); it is never
//     held whole in memory.
package watcher

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-sasl"

	"github.com/mailhook/mailhook/message"
	"github.com/mailhook/mailhook/outbox"
	"github.com/mailhook/mailhook/spool"
	"github.com/mailhook/mailhook/store"
)

// Defaults for zero Config fields.
const (
	DefaultIdleRefresh    = 10 * time.Minute
	DefaultPollInterval   = 10 * time.Minute
	DefaultCommandTimeout = 2 * time.Minute
	DefaultBackoffMin     = time.Second     // Backoff.Min
	DefaultBackoffMax     = 5 * time.Minute // Backoff.Max
	DefaultBackoffAuthMin = time.Minute     // Backoff.AuthMin
	DefaultBackoffQuota   = time.Hour       // Backoff.QuotaMin
	DefaultWatchdogSlack  = 60 * time.Second
	DefaultStableAfter    = time.Minute
	DefaultBatchSize      = 100
	DefaultMaxBatchSize   = 800
	DefaultContact        = "https://github.com/mailhook/mailhook"

	// maxFetchFailures is how many consecutive failed fetches of one UID make the watcher deliver
	// it degraded (with the fetch_failed defect), so one bad message never stalls a mailbox.
	maxFetchFailures = 3
	// batchHeaderBudget bounds the header bytes one first-pass batch may hold in memory: the first
	// pass keeps messages until that many bytes arrived (one message more at most, itself capped
	// at Limits.HeaderBytes), and the batch ends there.
	batchHeaderBudget = 16 << 20
)

// Security modes of Config.Security.
const (
	SecurityTLS      = "tls"      // implicit TLS (port 993)
	SecurityStartTLS = "starttls" // RFC 3501 §6.2.1 STARTTLS; the session fails if the server refuses it
	SecurityPlain    = "plain"    // no encryption; callers restrict it to loopback
)

// Start policies of Config.Start (besides a date "2006-01-02").
const (
	StartNew = "new" // first run records UIDNEXT-1 and processes nothing old
	StartAll = "all" // first run processes the whole mailbox
)

// Backoff configures reconnection delays (full jitter, reset after a stable period). Zero fields take the defaults
// {Min 1s, Max 5m, AuthMin 1m, QuotaMin 1h}.
type Backoff struct {
	Min, Max time.Duration // full jitter in [0, min(Max, Min·2^n)]
	AuthMin  time.Duration // floor after AUTHENTICATIONFAILED or an [ALERT]
	QuotaMin time.Duration // floor after an over-quota / bandwidth refusal
}

// Plan says which body parts the second fetch pass downloads. The zero Plan fetches only the
// header section, BODYSTRUCTURE, size, flags and internal date.
type Plan struct {
	Text bool // text/plain parts
	HTML bool // text/html parts
	// ReplyText: the text/plain parts, or the text/html parts of a message without any
	// (message.Wanted.ReplyText): what a rule reading reply_text needs.
	ReplyText bool
	// Reports: a delivery or feedback report's report part and the returned message's header,
	// and the text of a plain-text bounce notice (message.Wanted.Reports), for Message.Bounce and
	// Message.Complaint. Nothing more is fetched for other mail.
	Reports bool
	// Calendar: the first calendar part, for Message.Calendar.
	Calendar bool
	// Inline, together with Config.Incoming, lets the Handler ship attachment content (webhooks
	// with `attachments: inline`): the watcher streams the attachments Matched.Inline chooses,
	// decoded from their transfer encoding, into files under Incoming (spool.go) and hands them
	// to Matched.Jobs in Event.Spooled. false: no attachment content is ever fetched.
	Inline bool
}

// parts reports whether the plan fetches anything beyond the header and BODYSTRUCTURE (attachment
// content, chosen per message, aside).
func (p Plan) parts() bool { return p.Text || p.HTML || p.ReplyText || p.Reports || p.Calendar }

// Config configures one Watcher. Account, Mailbox, Addr and Username are required.
type Config struct {
	Account, Mailbox string
	Addr             string      // host:port
	Security         string      // SecurityTLS (default) | SecurityStartTLS | SecurityPlain
	TLS              *tls.Config // nil: system roots, ServerName from Addr
	Username         string
	Password         string
	// SASL, when set, replaces LOGIN: it returns a fresh SASL client per connection (XOAUTH2).
	SASL func(ctx context.Context) (sasl.Client, error)
	// OnAuthFailure, when set, is called when a session ends because authentication failed,
	// before the backoff, so an OAuth2 token source can drop the access token the server refused.
	OnAuthFailure func()

	Start        string        // StartNew (default) | StartAll | "2006-01-02"
	IdleRefresh  time.Duration // re-issue IDLE this often (default 10m, RFC 2177 §3 asks < 29m)
	PollInterval time.Duration // NOOP poll interval when the server lacks IDLE (default 10m)
	Backoff      Backoff
	Plan         Plan
	Limits       message.Limits
	// Budget, when set, is the account's rolling download budget, shared by the Watchers of its
	// mailboxes: every byte read is charged to it, and a FETCH it refuses is not sent; the
	// watcher pauses (StateThrottled) until the window allows it. nil means no budget.
	Budget Budget
	// MaxMessageSize caps what is fetched of one message (default DefaultMaxMessageSize): a
	// larger message is delivered with Truncated and the "too_large" defect, never fetched in
	// full, and a server literal larger than this drops the connection.
	MaxMessageSize int64
	// PostActions, when set, is the outbox of the mailbox's post-action jobs (mark_seen, flag,
	// move, copy), which the watcher runs between IDLE cycles on its own connection; see
	// postaction.go. nil means the watcher runs none.
	PostActions outbox.Store
	// Incoming is where the content of the attachments Matched.Inline chooses is streamed, one
	// directory per message. nil means no attachment content is fetched.
	Incoming *spool.Incoming
	Logger   *slog.Logger // nil discards

	// Version and Contact are sent in the RFC 2971 ID command (name "mailhook"); Contact goes in
	// the "support-url" field. Defaults: "dev" and DefaultContact.
	Version, Contact string

	// Dial replaces the TCP dialer (tests). The default dials with TCP keepalive every 30 s.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)

	// The knobs below exist so tests can shrink time; production leaves them zero.

	// CommandTimeout is how long a command may wait with no byte read before the watchdog closes
	// the connection (default 2m).
	CommandTimeout time.Duration
	// WatchdogSlack is added to IdleRefresh, or to the server's learned keepalive rhythm, to get
	// the longest silence tolerated during IDLE (default 60s).
	WatchdogSlack time.Duration
	// StableAfter is how long a session must live for the backoff to reset (default 1m).
	StableAfter time.Duration
	// BatchSize caps UIDs per first-pass UID FETCH (default 100). A batch whose headers exceed 16
	// MiB is cut where they did: the rest goes to the next batch.
	BatchSize int
	// MaxBatchSize is what a catch-up's batches grow to, doubling from BatchSize after each batch
	// that was fetched whole, so a long backlog costs fewer round trips while the first messages
	// still come after a small first batch (default 800 with the default BatchSize, otherwise
	// BatchSize: no growth).
	MaxBatchSize int
	// firstPassKeep replaces batchHeaderBudget when set (tests of the cut).
	firstPassKeep int64
	// Rand returns a uniform value in [0, n) for backoff jitter (default math/rand/v2).
	Rand func(n int64) int64
	// Now is the clock of budget decisions; give the Budget the same one (default time.Now).
	Now func() time.Time
	// ThrottleCheck is how often a throttled watcher looks at Now again (default 1m).
	ThrottleCheck time.Duration
}

// State is the durable progress of the watcher's one mailbox, which it reads and advances: the
// part of the mailbox's store.MailboxWriter it uses (see there for the contract). Commit must
// store every entry's jobs and seen key and the last entry's checkpoint in one transaction.
//
// The fetch record and strikes make failed fetches survive restarts: the watcher records each
// catch-up batch's UID range before fetching it (BeginFetch, once per batch; a commit reaching
// its end clears it; the fetch right after an IDLE push writes none, to keep durable writes off
// the path of new mail), and counts a failure of one message with StrikeFetch. A process that finds a
// record of its predecessor fetches that range one message at a time, so a message that kills
// or wedges the process is found and, after three strikes, delivered degraded.
//
// A State that also implements Reserver (store.MailboxWriter does) makes the budget's
// reservations in the store through it, fenced by the mailbox's lease; otherwise they go through
// the budget's ledger unfenced.
type State interface {
	Checkpoint(ctx context.Context) (store.Checkpoint, bool, error)
	ResetCheckpoint(ctx context.Context, cp store.Checkpoint) error
	Commit(ctx context.Context, batch []store.Commit) error
	Seen(ctx context.Context, key string) (bool, error)

	BeginFetch(ctx context.Context, r store.FetchRange) error
	EndFetch(ctx context.Context) error
	UnfinishedFetch(ctx context.Context) (store.FetchRange, bool, error)
	StrikeFetch(ctx context.Context, uidvalidity, uid uint32, reason string) (int, error)
	FetchStrikes(ctx context.Context, uidvalidity, uid uint32) (int, error)
}

// Event is one new message handed to the Handler.
type Event struct {
	Account, Mailbox string
	UIDValidity, UID uint32
	Message          *message.Message
	// Spooled maps the IMAP section of each attachment fetched for Matched.Inline to the file holding
	// its content, decoded from its transfer encoding and fsynced. The files are removed once the
	// message is committed (or abandoned): a Handler that ships them links or copies them before
	// Matched.Jobs returns. A chosen attachment missing here was not fetched (it did not fit under
	// MaxMessageSize, or the plan had no spool).
	Spooled map[string]string
}

// Handler turns a new message into outbox jobs, in two steps around the fetch of attachment
// content, so what a message triggers is decided once.
type Handler interface {
	// Match is called once per new message, after the second pass and before any attachment
	// content is fetched (ev.Spooled is nil). It must be quick and do no I/O.
	Match(ev *Event) Matched
}

// Matched is what a Handler decided for one message.
type Matched interface {
	// Inline lists the attachments whose content the jobs ship; the watcher fetches them (see
	// Plan.Inline) before calling Jobs.
	Inline() []message.Attachment
	// Jobs returns the message's outbox jobs. ev is the event given to Match, with Spooled set;
	// Jobs must not keep it. Jobs is not called for a message already processed. An error aborts
	// the session before anything is committed; the message is offered again after reconnecting.
	Jobs(ctx context.Context, ev *Event) ([]store.Job, error)
}

// HandlerFunc adapts a function that makes the jobs of an event to Handler; it ships no
// attachment content.
type HandlerFunc func(ctx context.Context, ev *Event) ([]store.Job, error)

// Match returns f as the Matched of ev.
func (f HandlerFunc) Match(*Event) Matched { return funcMatched(f) }

// funcMatched is the Matched of a HandlerFunc.
type funcMatched func(ctx context.Context, ev *Event) ([]store.Job, error)

// Inline returns nil: a HandlerFunc ships no attachment content.
func (funcMatched) Inline() []message.Attachment { return nil }

// Jobs calls f(ctx, ev).
func (f funcMatched) Jobs(ctx context.Context, ev *Event) ([]store.Job, error) { return f(ctx, ev) }

// States reported in Status.State.
const (
	StateConnecting = "connecting" // dialing, authenticating, selecting
	StateFetching   = "fetching"   // catching up: searching, fetching, handling
	StateIdle       = "idle"       // waiting in IDLE
	StatePolling    = "polling"    // waiting between NOOP polls
	StateBackoff    = "backoff"    // waiting before reconnecting
	StateThrottled  = "throttled"  // download budget exhausted: connected, waiting for the window
	StateStopped    = "stopped"    // Run returned
	// StateStandby: another replica sharing the store watches the mailbox; this one holds no lease
	// on it (see Leased), which is healthy.
	StateStandby = "standby"
)

// Status is a snapshot of a Watcher for health endpoints and the status verb.
type Status struct {
	State        string
	Since        time.Time // when State was entered
	Reason       string    // last error or [ALERT] text; "" when healthy
	LastActivity time.Time // last byte read from the server
	BytesRead    int64     // bytes read from the server over all sessions, TLS overhead included
	UIDValidity  uint32
	LastUID      uint32    // last UID committed
	NextAttempt  time.Time // in StateBackoff: when the next connection attempt starts
	Connects     int       // sessions started
	Idles        int       // IDLE commands issued
	// ThrottledUntil is, in StateThrottled, when the download budget allows the next fetch
	// (Reason says why).
	ThrottledUntil time.Time
	// Budget is the account's download budget (shared with its other mailboxes); zero without one.
	Budget BudgetUsage
	// Heartbeat is when the Run loop last showed progress: a state change, a new IDLE or poll
	// cycle, a committed message, a reconnect. It goes stale only when the loop is stuck; the
	// longest healthy gap is one IdleRefresh (or PollInterval), one backoff delay, or one command
	// bounded by CommandTimeout.
	Heartbeat time.Time
}

// Watcher watches one mailbox. Create it with New; Run it once.
type Watcher struct {
	cfg Config
	st  State
	// fence is st when it also reserves budget (store.MailboxWriter does): the budget's store
	// reservations then go through the mailbox's lease.
	fence Reserver
	h     Handler
	log   *slog.Logger
	rand  func(n int64) int64
	date  time.Time // parsed Config.Start when it is a date

	// failures counts failed fetches per UID (within the current UIDVALIDITY), as recorded in
	// State (StrikeFetch, FetchStrikes); touched only by the Run goroutine.
	failures     map[uint32]int
	failValidity uint32
	// recordChecked: the first session of this process has looked for a fetch record left by a
	// previous process; suspect is the UID range that record named (one message at a time).
	recordChecked bool
	suspect       store.FetchRange
	throttled     bool // paused by the budget and not yet resumed; guarded by mu

	bytesRead atomic.Int64 // Status.BytesRead
	lastRead  atomic.Int64 // Status.LastActivity, Unix nanoseconds

	mu        sync.Mutex
	status    Status
	lastAlert string // last [ALERT] text of the current session, to log each once
}

// alert logs an [ALERT] text at warning level (once per session) and makes it the status reason
// (RFC 3501 §7.1: the client MUST present it to the user).
func (w *Watcher) alert(text string) {
	w.mu.Lock()
	dup := w.lastAlert == text
	w.lastAlert = text
	w.status.Reason = "alert: " + text
	w.mu.Unlock()
	if !dup {
		w.log.Warn("server alert", "alert", text)
	}
}

// New checks cfg, fills defaults and returns a Watcher. It does no I/O.
func New(cfg Config, st State, h Handler) (*Watcher, error) {
	if st == nil || h == nil {
		return nil, errors.New("watcher: nil State or Handler")
	}
	if cfg.Account == "" || cfg.Mailbox == "" {
		return nil, errors.New("watcher: account and mailbox are required")
	}
	if _, _, err := net.SplitHostPort(cfg.Addr); err != nil {
		return nil, fmt.Errorf("watcher %s/%s: addr %q: %w", cfg.Account, cfg.Mailbox, cfg.Addr, err)
	}
	if cfg.Username == "" && cfg.SASL == nil {
		return nil, fmt.Errorf("watcher %s/%s: username is required", cfg.Account, cfg.Mailbox)
	}
	switch cfg.Security {
	case "":
		cfg.Security = SecurityTLS
	case SecurityTLS, SecurityStartTLS, SecurityPlain:
	default:
		return nil, fmt.Errorf("watcher %s/%s: security %q: want tls, starttls or plain", cfg.Account, cfg.Mailbox, cfg.Security)
	}
	w := &Watcher{cfg: cfg, st: st, h: h, failures: map[uint32]int{}}
	w.fence, _ = st.(Reserver)
	switch cfg.Start {
	case "":
		w.cfg.Start = StartNew
	case StartNew, StartAll:
	default:
		d, err := time.Parse(time.DateOnly, cfg.Start)
		if err != nil {
			return nil, fmt.Errorf("watcher %s/%s: start %q: want new, all or YYYY-MM-DD", cfg.Account, cfg.Mailbox, cfg.Start)
		}
		w.date = d
	}
	c := &w.cfg
	setDefault(&c.IdleRefresh, DefaultIdleRefresh)
	setDefault(&c.PollInterval, DefaultPollInterval)
	setDefault(&c.CommandTimeout, DefaultCommandTimeout)
	setDefault(&c.WatchdogSlack, DefaultWatchdogSlack)
	setDefault(&c.StableAfter, DefaultStableAfter)
	setDefault(&c.Backoff.Min, DefaultBackoffMin)
	setDefault(&c.Backoff.Max, DefaultBackoffMax)
	setDefault(&c.Backoff.AuthMin, DefaultBackoffAuthMin)
	setDefault(&c.Backoff.QuotaMin, DefaultBackoffQuota)
	if c.Backoff.Max < c.Backoff.Min {
		return nil, fmt.Errorf("watcher %s/%s: backoff max %v below min %v", cfg.Account, cfg.Mailbox, c.Backoff.Max, c.Backoff.Min)
	}
	if c.BatchSize <= 0 {
		c.BatchSize = DefaultBatchSize
		if c.MaxBatchSize <= 0 {
			c.MaxBatchSize = DefaultMaxBatchSize
		}
	}
	c.MaxBatchSize = max(c.MaxBatchSize, c.BatchSize)
	if c.Version == "" {
		c.Version = "dev"
	}
	if c.Contact == "" {
		c.Contact = DefaultContact
	}
	if c.Limits.HeaderBytes <= 0 { // Build applies the other defaults itself
		c.Limits.HeaderBytes = message.DefaultLimits().HeaderBytes
	}
	if c.MaxMessageSize <= 0 {
		c.MaxMessageSize = DefaultMaxMessageSize
	}
	c.Limits.HeaderBytes = int(min(int64(c.Limits.HeaderBytes), c.MaxMessageSize))
	if c.Now == nil {
		c.Now = time.Now
	}
	setDefault(&c.ThrottleCheck, DefaultThrottleCheck)
	w.log = c.Logger
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	w.log = w.log.With("account", cfg.Account, "mailbox", cfg.Mailbox)
	w.rand = c.Rand
	if w.rand == nil {
		w.rand = rand.Int64N
	}
	now := time.Now()
	w.status = Status{State: StateConnecting, Since: now, Heartbeat: now}
	return w, nil
}

func setDefault(d *time.Duration, def time.Duration) {
	if *d <= 0 {
		*d = def
	}
}

// Status returns a snapshot of the watcher's state. It is safe for concurrent use.
func (w *Watcher) Status() Status {
	w.mu.Lock()
	st := w.status
	w.mu.Unlock()
	st.BytesRead = w.bytesRead.Load()
	if w.cfg.Budget != nil {
		st.Budget = w.cfg.Budget.Usage()
	}
	if ns := w.lastRead.Load(); ns != 0 {
		st.LastActivity = time.Unix(0, ns)
	}
	return st
}

func (w *Watcher) setState(state string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.status.Heartbeat = time.Now()
	if w.status.State != state {
		w.status.State = state
		w.status.Since = time.Now()
	}
}

func (w *Watcher) update(f func(s *Status)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.status.Heartbeat = time.Now()
	f(&w.status)
}

// sameCause reduces a failure reason to its cause for log de-duplication: the words without the
// numbers (addresses, ephemeral ports, counts), which change from one attempt to the next.
func sameCause(reason string) string {
	return strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return -1
		}
		return r
	}, reason)
}

// Run watches the mailbox until ctx is done, reconnecting after every error with full-jitter
// backoff. It returns nil when ctx is done; it never returns early on an IMAP or State error but
// one: a write refused with store.ErrLeaseLost (a backend shared by replicas found the mailbox
// taken over by another) ends Run at once with that error. Run must be called at most once.
func (w *Watcher) Run(ctx context.Context) error {
	defer w.setState(StateStopped)
	attempt := 0
	warned := map[string]bool{} // causes logged at warn in this failure streak: a retry storm logs each once
	for {
		w.setState(StateConnecting)
		start := time.Now()
		progressed, err := w.session(ctx)
		if ctx.Err() != nil {
			w.log.Debug("watcher stopped", "err", err)
			return nil
		}
		if err == nil { // unreachable: a session ends only with an error or ctx
			err = errors.New("session ended")
		}
		if errors.Is(err, store.ErrLeaseLost) {
			// Another replica took the mailbox over: stop at once (not at the next renewal), so this
			// session ends now; fencing already refused the write.
			w.log.Warn("mailbox lease lost: another replica watches this mailbox now; stopping", "err", err)
			w.update(func(s *Status) { s.Reason = err.Error() })
			return err
		}
		if progressed || time.Since(start) >= w.cfg.StableAfter {
			attempt = 0
			clear(warned)
		}
		kind := classify(err)
		reason := err.Error()
		if text, ok := alertText(err); ok {
			w.alert(text)
			reason = "alert: " + text
		}
		w.mu.Lock()
		w.lastAlert = ""
		w.mu.Unlock()
		delay := w.cfg.Backoff.delay(attempt, kind, w.rand)
		if d, ok := retryAfter(err); ok {
			delay = max(delay, d) // e.g. an OAuth2 refresh refused with invalid_grant
		}
		if kind == errAuth && w.cfg.OnAuthFailure != nil {
			w.cfg.OnAuthFailure()
		}
		attempt++
		// One line per state change, not per retry: each cause is a warning once per failure streak,
		// a repeat is debug (Status and /readyz keep the current reason).
		level := slog.LevelWarn
		if cause := sameCause(reason); warned[cause] {
			level = slog.LevelDebug
		} else if len(warned) < 16 {
			warned[cause] = true
		}
		w.log.Log(ctx, level, "session ended; reconnecting", "err", err, "attempt", attempt, "delay", delay.Round(time.Millisecond))
		now := time.Now()
		w.update(func(s *Status) {
			s.Reason = reason
			s.State, s.Since, s.NextAttempt = StateBackoff, now, now.Add(delay)
		})
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// errKind is how a session error bends the backoff.
type errKind int

const (
	errOther errKind = iota
	errAuth          // AUTHENTICATIONFAILED, AUTHORIZATIONFAILED or [ALERT]: wait at least AuthMin
	errQuota         // over quota / bandwidth: wait at least QuotaMin
)

// delay returns the wait before reconnect attempt n (0-based): full jitter, a uniform value in
// [0, min(Max, Min·2^n)], raised to AuthMin or QuotaMin for those kinds. randN(k) must return a
// uniform value in [0, k).
func (b Backoff) delay(n int, kind errKind, randN func(int64) int64) time.Duration {
	ceil := b.Min
	for i := 0; i < n && ceil < b.Max; i++ {
		ceil *= 2
	}
	ceil = min(ceil, b.Max)
	d := time.Duration(0)
	if ceil > 0 {
		d = time.Duration(randN(int64(ceil) + 1))
	}
	switch kind {
	case errAuth:
		d = max(d, b.AuthMin)
	case errQuota:
		d = max(d, b.QuotaMin)
	}
	return d
}

// classify reads the IMAP response code and text of a session error (RFC 5530 codes).
func classify(err error) errKind {
	if isAuthFailure(err) {
		return errAuth
	}
	var ie *imap.Error
	if !errors.As(err, &ie) {
		return errOther
	}
	text := strings.ToLower(ie.Text)
	switch {
	case ie.Code == "OVERQUOTA" || strings.Contains(text, "bandwidth") ||
		strings.Contains(text, "quota") || (strings.Contains(text, "exceeded") && strings.Contains(text, "limit")):
		return errQuota
	case ie.Code == "AUTHENTICATIONFAILED" || ie.Code == "AUTHORIZATIONFAILED" || ie.Code == "ALERT" ||
		ie.Code == "EXPIRED" || ie.Code == "PRIVACYREQUIRED":
		return errAuth
	}
	return errOther
}

// alertText returns the text of an [ALERT] response (RFC 3501 §7.1: must be shown to the user).
func alertText(err error) (string, bool) {
	var ie *imap.Error
	if errors.As(err, &ie) && ie.Code == imap.ResponseCodeAlert {
		return ie.Text, true
	}
	return "", false
}
