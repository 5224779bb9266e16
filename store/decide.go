package store

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// This file holds the decisions every backend makes the same way around its own SQL: which jobs
// may be created, which jobs a mailbox writer may claim, whether a download reservation fits and
// when it would, whether the daily reply cap is reached. A backend reads the rows, locked as its
// engine requires, and lets these functions decide.

// CheckNew reports why j cannot be created: an empty id, an unknown kind, a state other than
// pending, held or dead (empty means pending), or a dependency on itself, empty or repeated.
func CheckNew(j *Job) error {
	if j.ID == "" {
		return errors.New("job with empty id")
	}
	switch j.Kind {
	case KindWebhook, KindReply, KindPostAction:
	default:
		return fmt.Errorf("job %s: unknown kind %q", j.ID, j.Kind)
	}
	switch j.State {
	case "", StatePending, StateHeld, StateDead:
	default:
		return fmt.Errorf("job %s: cannot be created in state %q", j.ID, j.State)
	}
	seen := make(map[string]bool, len(j.DependsOn))
	for _, d := range j.DependsOn {
		if d == j.ID {
			return fmt.Errorf("job %s depends on itself", j.ID)
		}
		if d == "" || seen[d] {
			return fmt.Errorf("job %s: empty or repeated dependency %q", j.ID, d)
		}
		seen[d] = true
	}
	return nil
}

// MailboxPostActions restricts sel to the post-actions of (account, mailbox), what the writer of
// that mailbox claims and finishes; a selector naming another kind or mailbox is an error.
func MailboxPostActions(sel Selector, account, mailbox string) (Selector, error) {
	if (sel.Kind != "" && sel.Kind != KindPostAction) ||
		(sel.Account != "" && sel.Account != account) || (sel.Mailbox != "" && sel.Mailbox != mailbox) {
		return sel, fmt.Errorf("mailbox writer of %q/%q: selector %+v picks jobs of another mailbox or kind", account, mailbox, sel)
	}
	sel.Kind, sel.Account, sel.Mailbox = KindPostAction, account, mailbox
	return sel, nil
}

// BudgetHold checks a reservation of n bytes against lim and returns how long the reservation
// counts unless released (lim.Hold, or DefaultBudgetHold).
func BudgetHold(account string, n int64, lim BudgetLimit) (time.Duration, error) {
	if n < 0 || lim.Bytes <= 0 || lim.Window <= 0 {
		return 0, fmt.Errorf("reserve download budget of %q: invalid request %d of %+v", account, n, lim)
	}
	if lim.Hold <= 0 {
		return DefaultBudgetHold, nil
	}
	return lim.Hold, nil
}

// BudgetUse is bytes counting against an account's download budget now: a bucket of charges, or a
// live reservation. Ends is when they stop counting (the bucket leaves the window, the reservation
// lapses).
type BudgetUse struct {
	Ends  time.Time
	Bytes int64
}

// DecideBudget decides a reservation of n bytes against lim while uses count: granted when they
// fit (the caller then records the reservation and sets ID), or when nothing is used at all (a
// request larger than the limit fits only alone). Otherwise Until is the earliest end of uses
// after which it fits.
func DecideBudget(uses []BudgetUse, n int64, lim BudgetLimit) BudgetGrant {
	var g BudgetGrant
	for _, u := range uses {
		g.Used += u.Bytes
	}
	if g.Used+n <= lim.Bytes || g.Used == 0 {
		g.Granted = true
		return g
	}
	need := g.Used + n - lim.Bytes
	if n > lim.Bytes {
		need = g.Used // fits only alone
	}
	uses = slices.Clone(uses)
	slices.SortFunc(uses, func(a, b BudgetUse) int { return a.Ends.Compare(b.Ends) })
	for _, u := range uses {
		need -= u.Bytes
		if need <= 0 {
			g.Until = u.Ends
			break
		}
	}
	return g
}

// CheckReplyRequest returns k as the reply ledger keys it (the sender lower-cased), or an error
// when the key, the Message-ID or the once-per period is missing.
func CheckReplyRequest(k ReplyKey, messageID string, oncePer time.Duration) (ReplyKey, error) {
	k.Sender = strings.ToLower(k.Sender)
	if k.Account == "" || k.Sender == "" || k.Reply == "" || messageID == "" || oncePer <= 0 {
		return k, fmt.Errorf("reserve reply: incomplete key %+v or message id", k)
	}
	return k, nil
}

// ReplyCapped decides the daily reply cap: with sent replies within ReplyWindow, the oldest sent
// at oldest, a cap of perDay (0: none) is reached when sent ≥ perDay; sending may resume when the
// oldest leaves the window.
func ReplyCapped(sent, perDay int, oldest time.Time) (Reservation, bool) {
	if perDay <= 0 || sent < perDay {
		return Reservation{Sent: sent}, false
	}
	return Reservation{Status: ReplyOverCap, Until: oldest.Add(ReplyWindow), Sent: sent}, true
}

// RescanKeep is how long before a mailbox's last internal date its seen keys are kept whatever
// their age: RescanLookback + RescanSkew.
const RescanKeep = RescanLookback + RescanSkew

// SeenCounts decides whether a seen key recorded at seenAt (Unix nanoseconds) still counts, for
// a mailbox whose checkpoint's last internal date is last (0: none) and a TTL that keeps keys
// recorded at or after ttlFrom: within the TTL, or within RescanKeep of the last internal date,
// so a UIDVALIDITY rescan of a mailbox quiet for longer than the TTL still finds the keys of
// every message it looks at again (see RescanLookback).
func SeenCounts(seenAt, last, ttlFrom int64) bool {
	return seenAt >= ttlFrom || (last != 0 && seenAt >= last-int64(RescanKeep))
}
