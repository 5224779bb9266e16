package pipeline

// Auto-replies and mailbox post-actions: the loop guards run when the message's jobs are made, so
// a reply job exists only for a message that may be answered; the reply worker (reply.Worker)
// checks the once-per ledger and the daily cap again right before it sends. Post-actions become
// jobs that depend on the same rule's webhook and reply jobs, run by the mailbox's watcher.

import (
	"context"
	"fmt"
	netmail "net/mail"
	"strings"
	"time"

	"github.com/mailhook/mailhook/reply"
	"github.com/mailhook/mailhook/rules"
	"github.com/mailhook/mailhook/store"
	"github.com/mailhook/mailhook/watcher"
)

// ownAddresses returns the addresses that are "us" for reply r of account a (lower-cased): the
// reply's own addresses, or by default the IMAP username (when it is an address) and the From of
// replies; From always counts, since replies go out under it.
func ownAddresses(a *Account, r *Reply) []string {
	var out []string
	add := func(s string) {
		if addr, err := netmail.ParseAddress(s); err == nil {
			out = append(out, strings.ToLower(addr.Address))
		}
	}
	if r != nil && len(r.OwnAddresses) > 0 {
		for _, s := range r.OwnAddresses {
			add(s)
		}
	} else {
		add(a.Username)
	}
	add(a.From)
	return out
}

// ownMessage tells our own replies apart, in two strengths. own: ev carries the signature of
// this installation (reply.SignedByUs), so it is a reply we sent, which triggers nothing at all,
// neither webhooks nor replies — two mailhooks answering each other cannot loop. looksOurs: it
// carries our loop marker or a Message-ID the ledger recorded, which anyone who received one of
// our replies can copy into their own mail: it gets no reply, but its webhooks go out.
func (p *Pipeline) ownMessage(ctx context.Context, ev *watcher.Event) (own, looksOurs bool, err error) {
	if reply.SignedByUs(p.ownKey, ev.Message) {
		p.log.Debug("message is a reply mailhook sent; ignored", "account", ev.Account, "mailbox", ev.Mailbox,
			"uid", ev.UID, "reason", reply.SkipOwnMessage)
		p.onSkip(ev.Account, "", reply.SkipOwnMessage)
		return true, false, nil
	}
	looksOurs = reply.IsOwnMessage(ev.Message, p.own[ev.Account])
	if !looksOurs && p.ledger != nil && ev.Message.MessageID != "" {
		if looksOurs, err = p.ledger.OwnReply(ctx, ev.Message.MessageID); err != nil {
			return false, false, fmt.Errorf("uid %d: %w", ev.UID, err)
		}
	}
	if looksOurs {
		p.log.Debug("message looks like a reply mailhook sent, but is not signed by this installation: no replies, webhooks go out",
			"account", ev.Account, "mailbox", ev.Mailbox, "uid", ev.UID)
	}
	return false, looksOurs, nil
}

// replyJob returns the reply job of action number i (reply name) of rule, or nil when a loop
// guard says no reply may be sent (logged at debug with the reason, and counted).
func (p *Pipeline) replyJob(ctx context.Context, ev *watcher.Event, rule string, i int, name string, fields map[string]any) (*store.Job, error) {
	r, acct := p.replies[name], p.accounts[ev.Account]
	if r == nil || r.Template == nil {
		return nil, fmt.Errorf("rule %q: no reply named %q", rule, name) // validation rules this out
	}
	if acct == nil {
		acct = &Account{Name: ev.Account}
	}
	log := p.log.With("account", ev.Account, "mailbox", ev.Mailbox, "uid", ev.UID, "rule", rule, "reply", name)
	skip := func(reason string) (*store.Job, error) {
		log.Debug("auto-reply skipped", "reason", reason)
		p.onSkip(ev.Account, name, reason)
		return nil, nil
	}
	policy := reply.Policy{OwnAddresses: ownAddresses(acct, r), MaxReceived: r.MaxReceived,
		Suppress: append(reply.DefaultSuppress(), r.Suppress...)}
	to, reason := reply.Check(ev.Message, policy)
	if reason != "" {
		return skip(reason)
	}
	if p.ledger != nil {
		replied, err := p.ledger.Replied(ctx, store.ReplyKey{Account: ev.Account, Sender: to, Reply: name}, time.Now())
		if err != nil {
			return nil, fmt.Errorf("uid %d rule %q: %w", ev.UID, rule, err)
		}
		if replied {
			return skip("already_replied")
		}
	}
	rj, err := reply.NewJob(r.Template, ev.Message, to, reply.Params{Account: ev.Account,
		From: acct.From, EnvelopeFrom: acct.EnvelopeFrom, OncePer: r.OncePer, Fields: fields, Key: p.ownKey})
	if err != nil {
		// A template that fails on this message must not stall the mailbox.
		log.Warn("auto-reply not rendered; skipped", "err", err)
		p.onSkip(ev.Account, name, "template_error")
		return nil, nil
	}
	body, err := rj.Marshal()
	if err != nil {
		return nil, fmt.Errorf("uid %d rule %q: reply: %w", ev.UID, rule, err)
	}
	return &store.Job{ID: p.jobID(ev.Account, ev.Mailbox, ev.UIDValidity, ev.UID, rule, i), Kind: store.KindReply,
		Target: name, Account: ev.Account, Mailbox: ev.Mailbox, UIDValidity: ev.UIDValidity, UID: ev.UID,
		Rule: rule, Body: body}, nil
}

// postActionJobs returns the post-action jobs of rule for the actions at indexes idx, in order.
// Each depends on deps (the rule's webhook and reply jobs) and on the post-actions before it, so
// a flag happens before the move that follows it.
func (p *Pipeline) postActionJobs(ev *watcher.Event, spec rules.Spec, idx []int, deps []string) ([]store.Job, error) {
	var jobs []store.Job
	deps = append([]string(nil), deps...)
	for _, i := range idx {
		a := spec.Actions[i]
		var pa watcher.PostAction
		switch {
		case a.MarkSeen:
			pa = watcher.PostAction{Op: watcher.OpMarkSeen}
		case len(a.Flag) > 0:
			pa = watcher.PostAction{Op: watcher.OpFlag, Flags: a.Flag}
		case a.Move != "":
			pa = watcher.PostAction{Op: watcher.OpMove, Mailbox: a.Move}
		case a.Copy != "":
			pa = watcher.PostAction{Op: watcher.OpCopy, Mailbox: a.Copy}
		default:
			continue
		}
		body, err := pa.Marshal()
		if err != nil {
			return nil, fmt.Errorf("uid %d rule %q: post-action: %w", ev.UID, spec.Name, err)
		}
		id := p.jobID(ev.Account, ev.Mailbox, ev.UIDValidity, ev.UID, spec.Name, i)
		jobs = append(jobs, store.Job{ID: id, Kind: store.KindPostAction, Target: pa.Target(), Account: ev.Account,
			Mailbox: ev.Mailbox, UIDValidity: ev.UIDValidity, UID: ev.UID, Rule: spec.Name,
			DependsOn: append([]string(nil), deps...), Body: body})
		deps = append(deps, id)
	}
	return jobs, nil
}
