package dispatch

import (
	"strconv"
	"strings"

	"github.com/mailhook/mailhook/payload"
	"github.com/mailhook/mailhook/store"
)

// Outcomes returned by Event.Outcome.
const (
	OutcomeDelivered   = "delivered"   // 2xx: the job is done
	OutcomeRetry       = "retry"       // a failure that may pass: the job is pending again, due later
	OutcomeDead        = "dead"        // dead-lettered: permanent failure, or retries ran out
	OutcomeInterrupted = "interrupted" // shutdown cut the delivery short: the job is pending again
	OutcomeHeld        = "held"        // the endpoint is disabled: the job waits for it to be enabled
)

// Reasons returned by Event.DeadReason: a small fixed set, so they make safe metric labels.
const (
	DeadRejected = "rejected"        // a 3xx or a 4xx other than 408, 425, 429 and 410
	DeadGone     = "gone"            // HTTP 410
	DeadMaxAge   = "max_age"         // retryable failures until the retry policy's MaxAge
	DeadRefused  = "refused_address" // the URL resolves to a link-local or metadata address
	DeadRemoved  = "webhook_removed" // the job's webhook is no longer configured
	DeadSpool    = "spool_missing"   // the job's spooled attachment content is gone
)

// Event is one settled delivery attempt, reported to Options.Observe just before the outcome is
// written to the outbox. It carries names only: never a URL, a header value, a body or a secret.
type Event struct {
	Webhook string // the endpoint name (the job target)
	JobID   string
	Rule    string
	Account string
	Mailbox string
	// State is the job's next state: store.StateDone, store.StatePending, store.StateDead or
	// store.StateHeld (its endpoint is disabled).
	State string
	// Status is the attempt status as recorded in the outbox: "http 503", "timeout", "network",
	// "refused", "removed" or "canceled".
	Status string
	// Attempt counts the job's attempts so far, this one included.
	Attempt int
	// Inline says that the job's body ships attachment content from the spool, whose files may
	// go once the job is done; false for every other job, which has no files to remove.
	Inline bool
}

// Outcome classifies the event as one of the Outcome* constants.
func (e Event) Outcome() string {
	switch {
	case e.State == store.StateDone:
		return OutcomeDelivered
	case e.State == store.StateDead:
		return OutcomeDead
	case e.State == store.StateHeld:
		return OutcomeHeld
	case e.Status == "canceled":
		return OutcomeInterrupted
	default:
		return OutcomeRetry
	}
}

// DeadReason says why a dead-lettered job died (one of the Dead* constants), or "" when the event
// is not a dead letter.
func (e Event) DeadReason() string {
	if e.State != store.StateDead {
		return ""
	}
	switch e.Status {
	case "removed":
		return DeadRemoved
	case "refused":
		return DeadRefused
	case "spool":
		return DeadSpool
	case "timeout", "network":
		return DeadMaxAge
	}
	if code, err := strconv.Atoi(strings.TrimPrefix(e.Status, "http ")); err == nil {
		switch {
		case code == 410:
			return DeadGone
		case retryable(code):
			return DeadMaxAge
		}
	}
	return DeadRejected
}

// observe reports a settled attempt of j to Options.Observe, if set.
func (d *Dispatcher) observe(j store.Job, state string, a store.Attempt) {
	if d.observer == nil {
		return
	}
	d.observer(Event{Webhook: j.Target, JobID: j.ID, Rule: j.Rule, Account: j.Account, Mailbox: j.Mailbox,
		State: state, Status: a.Status, Attempt: j.Attempts, Inline: payload.HasInline(j.Body)})
}
