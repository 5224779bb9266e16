package main

// Auto-replies and mailbox post-actions in the pipeline (issue 6): the loop guards run at commit
// time, so a reply job exists only for a message that may be answered; the reply worker
// (reply.Worker) checks the once-per ledger and the daily cap again right before it sends.
// Post-actions become jobs that depend on the same rule's webhook and reply jobs, run by the
// mailbox's watcher.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	netmail "net/mail"
	"strings"
	"time"

	"github.com/mailhook/mailhook/config"
	"github.com/mailhook/mailhook/reply"
	"github.com/mailhook/mailhook/rules"
	"github.com/mailhook/mailhook/store"
	"github.com/mailhook/mailhook/watcher"
)

// compileReplies parses every reply's templates once, at load time. Errors name the field:
// `replies[0] "ack".subject: …`.
func compileReplies(cfg *config.Config) (map[string]*reply.Template, error) {
	out := make(map[string]*reply.Template, len(cfg.Replies))
	var errs []error
	for i, r := range cfg.Replies {
		tpl, err := reply.ParseTemplate(r.Name, r.Subject, r.Body, r.HTML)
		if err != nil {
			path := config.ItemPath("replies", i, r.Name)
			for _, e := range unjoin(err) {
				var te *reply.TemplateError
				if errors.As(e, &te) {
					errs = append(errs, &config.FieldError{Field: path + "." + te.Field, Problem: te.Err.Error()})
				} else {
					errs = append(errs, fmt.Errorf("%s: %w", path, e))
				}
			}
			continue
		}
		out[r.Name] = tpl
	}
	return out, errors.Join(errs...)
}

// unjoin splits an errors.Join result into its parts.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// ownAddresses returns the addresses that are "us" for reply r of account a (lower-cased): the
// reply's own_addresses, or by default the IMAP username (when it is an address) and smtp.from;
// smtp.from always counts, since replies go out under it.
func ownAddresses(a config.Account, r *config.Reply) []string {
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
		add(a.IMAP.Username)
	}
	add(a.SMTP.From)
	return out
}

// replyLedger is what the pipeline asks the store about replies.
type replyLedger interface {
	// OwnReply reports whether messageID is one of our sent replies (REQUIREMENTS C61).
	OwnReply(ctx context.Context, messageID string) (bool, error)
	// Replied reports whether the ledger already holds k (a reply would be a duplicate).
	Replied(ctx context.Context, k store.ReplyKey, now time.Time) (bool, error)
}

var _ replyLedger = store.Backend(nil)

// replySetup is what the pipeline needs for replies, built once from the loaded configuration.
type replySetup struct {
	templates map[string]*reply.Template
	replies   map[string]*config.Reply
	accounts  map[string]config.Account
	own       map[string][]string // account → every own address of the account, for C61
	ledger    replyLedger         // nil: no ledger (tools that do not send)
	// onSkip is called for every reply a loop guard (or the ledger pre-check) skipped, with
	// its reason (reply.Skip* or "already_replied"), and for every message ignored as our
	// own (reason "own_message"). Metrics hook it; the default does nothing.
	onSkip func(account, reply, reason string)
}

func newReplySetup(l *loaded) *replySetup {
	rs := &replySetup{templates: l.replies, replies: map[string]*config.Reply{}, accounts: map[string]config.Account{},
		own: map[string][]string{}, onSkip: func(string, string, string) {}}
	for i := range l.cfg.Replies {
		rs.replies[l.cfg.Replies[i].Name] = &l.cfg.Replies[i]
	}
	for _, a := range l.cfg.Accounts {
		rs.accounts[a.Name] = a
		own := ownAddresses(a, nil)
		for i := range l.cfg.Replies {
			own = append(own, ownAddresses(a, &l.cfg.Replies[i])...)
		}
		rs.own[a.Name] = own
	}
	return rs
}

// withLedger makes the pipeline consult ld (the state store) for our own replies and the ledger.
func (p *pipeline) withLedger(ld replyLedger) *pipeline {
	p.replyCfg.ledger = ld
	return p
}

// replySetup returns the reply configuration of p.
func (p *pipeline) replySetup() *replySetup { return p.replyCfg }

// ownMessage reports whether ev is a reply we sent ourselves (our loop marker, or a Message-ID
// we recorded): it triggers nothing at all, neither webhooks nor replies (REQUIREMENTS C61).
func (p *pipeline) ownMessage(ctx context.Context, ev *watcher.Event) (bool, error) {
	rs := p.replySetup()
	own := reply.IsOwnMessage(ev.Message, rs.own[ev.Account])
	if !own && rs.ledger != nil && ev.Message.MessageID != "" {
		var err error
		if own, err = rs.ledger.OwnReply(ctx, ev.Message.MessageID); err != nil {
			return false, fmt.Errorf("uid %d: %w", ev.UID, err)
		}
	}
	if own {
		p.logger.Debug("message is a reply mailhook sent; ignored", "account", ev.Account, "mailbox", ev.Mailbox,
			"uid", ev.UID, "reason", reply.SkipOwnMessage)
		rs.onSkip(ev.Account, "", reply.SkipOwnMessage)
	}
	return own, nil
}

// replyJob returns the reply job of action number i (reply name) of rule, or nil when a loop
// guard says no reply may be sent (logged at debug with the reason, and counted).
func (p *pipeline) replyJob(ctx context.Context, ev *watcher.Event, rule string, i int, name string) (*store.Job, error) {
	rs := p.replySetup()
	r, tpl, acct := rs.replies[name], rs.templates[name], rs.accounts[ev.Account]
	if r == nil || tpl == nil {
		return nil, fmt.Errorf("rule %q: no reply named %q", rule, name) // Validate rules this out
	}
	log := p.logger.With("account", ev.Account, "mailbox", ev.Mailbox, "uid", ev.UID, "rule", rule, "reply", name)
	skip := func(reason string) (*store.Job, error) {
		log.Debug("auto-reply skipped", "reason", reason)
		rs.onSkip(ev.Account, name, reason)
		return nil, nil
	}
	policy := reply.Policy{OwnAddresses: ownAddresses(acct, r), MaxReceived: r.MaxReceived,
		Suppress: append(reply.DefaultSuppress(), r.Suppress...)}
	to, reason := reply.Check(ev.Message, policy)
	if reason != "" {
		return skip(reason)
	}
	if rs.ledger != nil {
		replied, err := rs.ledger.Replied(ctx, store.ReplyKey{Account: ev.Account, Sender: to, Reply: name}, time.Now())
		if err != nil {
			return nil, fmt.Errorf("uid %d rule %q: %w", ev.UID, rule, err)
		}
		if replied {
			return skip("already_replied")
		}
	}
	rj, err := reply.NewJob(tpl, ev.Message, to, reply.Params{Account: ev.Account,
		From: acct.SMTP.From, EnvelopeFrom: acct.SMTP.EnvelopeFrom, OncePer: r.OncePer})
	if err != nil {
		// A template that fails on this message must not stall the mailbox.
		log.Warn("auto-reply not rendered; skipped", "err", err)
		rs.onSkip(ev.Account, name, "template_error")
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
func (p *pipeline) postActionJobs(ev *watcher.Event, spec rules.Spec, idx []int, deps []string) ([]store.Job, error) {
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

// replyAccounts builds the SMTP sender of every account that has an smtp section.
func replyAccounts(l *loaded, logger *slog.Logger) ([]reply.Account, error) {
	var out []reply.Account
	for _, a := range l.cfg.Accounts {
		s := a.SMTP
		if !s.Configured() {
			continue
		}
		sc := reply.SMTPConfig{Addr: s.Addr(), Security: s.Security, HelloName: s.HelloName,
			Username: s.Username, Password: s.Password, Timeout: s.Timeout}
		if s.Security != config.SecurityPlain {
			tc, err := s.TLS.ClientConfig(s.Host)
			if err != nil {
				return nil, fmt.Errorf("accounts %q smtp.tls: %w", a.Name, err)
			}
			sc.TLS = tc
		}
		auth, authFailed, err := l.smtpSASL(a, logger)
		if err != nil {
			return nil, err
		}
		if auth != nil {
			sc.Auth, sc.OnAuthFailure, sc.Password = auth, authFailed, ""
		}
		sender, err := reply.NewSMTPSender(sc)
		if err != nil {
			return nil, fmt.Errorf("accounts %q smtp: %w", a.Name, err)
		}
		out = append(out, reply.Account{Name: a.Name, Sender: sender, PerDay: a.Limits.RepliesPerDay})
	}
	return out, nil
}
