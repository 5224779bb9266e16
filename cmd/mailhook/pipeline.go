package main

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/mailhook/mailhook/config"
	"github.com/mailhook/mailhook/dispatch"
	"github.com/mailhook/mailhook/outbox"
	"github.com/mailhook/mailhook/payload"
	"github.com/mailhook/mailhook/rules"
	"github.com/mailhook/mailhook/spool"
	"github.com/mailhook/mailhook/store"
	"github.com/mailhook/mailhook/watcher"
)

// pipeline is the watcher.Handler that turns a fetched message into outbox jobs: it matches the
// rules and renders each webhook's request body once, at commit time, so a retry after a restart
// sends the very same bytes under the same webhook-id.
type pipeline struct {
	rules    *rules.Set
	webhooks map[string]config.Webhook
	authserv map[string]string // account name → trusted authserv-id
	logger   *slog.Logger
	// jobID derives every job id (store.JobID; replay.go substitutes replay ids).
	jobID func(account, mailbox string, uidvalidity, uid uint32, rule string, action int) string
	// replyCfg holds the reply templates, loop-guard settings and ledger (replies.go).
	replyCfg *replySetup
	// inline holds the attachments_when filters of webhooks with attachments: inline, and spool
	// the spool their jobs' files go to (nil: chosen attachments ship as metadata; attachments.go).
	inline map[string]*rules.AttachmentFilter
	spool  *spool.Spool
	// formats render each webhook's body (formats.go); states, when set, says which endpoints
	// are disabled, whose jobs are committed held.
	formats map[string]*payload.Formatter
	states  endpointState
}

var _ watcher.Handler = (*pipeline)(nil)

func newPipeline(l *loaded, logger *slog.Logger) *pipeline {
	p := &pipeline{rules: l.rules, webhooks: map[string]config.Webhook{}, authserv: map[string]string{}, logger: logger,
		jobID: store.JobID, replyCfg: newReplySetup(l), inline: l.inline, spool: l.spool,
		formats: l.formats}
	for _, w := range l.cfg.Webhooks {
		p.webhooks[w.Name] = w
	}
	for _, a := range l.cfg.Accounts {
		p.authserv[a.Name] = a.IMAP.TrustedAuthservID
	}
	return p
}

// Handle matches ev against the rules and returns the jobs of every matched rule: one per webhook
// action, one per reply action whose loop guards pass, and one per post-action, depending on the
// rule's webhook and reply jobs. A reply mailhook sent itself matches nothing (REQUIREMENTS C61).
func (p *pipeline) Handle(ctx context.Context, ev *watcher.Event) ([]store.Job, error) {
	if own, err := p.ownMessage(ctx, ev); own || err != nil {
		return nil, err
	}
	trusted := p.authserv[ev.Account]
	env := rules.NewEnv(ev.Account, ev.Mailbox, ev.UID, ev.Message, trusted)
	matched, errs := p.rules.Match(env)
	for _, err := range errs {
		p.logger.Warn("rule evaluation failed; treated as no match", "account", ev.Account, "mailbox", ev.Mailbox, "uid", ev.UID, "err", err)
	}
	var jobs []store.Job
	for _, r := range matched {
		var deps []string // this rule's webhook and reply jobs, which its post-actions wait for
		var post []int    // indexes of its post-actions
		for i, a := range r.Spec.Actions {
			if a.Reply != "" {
				job, err := p.replyJob(ctx, ev, r.Spec.Name, i, a.Reply)
				if err != nil {
					return nil, err
				}
				if job != nil { // nil: a loop guard said no; that counts as done for post-actions
					jobs = append(jobs, *job)
					deps = append(deps, job.ID)
				}
				continue
			}
			if a.Webhook == "" {
				post = append(post, i)
				continue
			}
			wh := p.webhooks[a.Webhook]
			id := p.jobID(ev.Account, ev.Mailbox, ev.UIDValidity, ev.UID, r.Spec.Name, i)
			pl := payload.New(id, r.Spec.Name, ev.Account, ev.Mailbox, ev.UIDValidity, ev.UID, ev.Message,
				env.Auth, payload.BodyMode(wh.Body), int(wh.MaxBodyBytes)) // parsed once, by NewEnv
			if err := p.shipAttachments(ev, wh, pl, id); err != nil {
				return nil, err
			}
			job := store.Job{
				ID: id, Kind: store.KindWebhook, Target: wh.Name, Account: ev.Account, Mailbox: ev.Mailbox,
				UIDValidity: ev.UIDValidity, UID: ev.UID, Rule: r.Spec.Name,
			}
			p.renderBody(ctx, ev, wh, pl, &job) // formats.go: the body in the webhook's format, once
			jobs = append(jobs, job)
			deps = append(deps, id)
		}
		pa, err := p.postActionJobs(ev, r.Spec, post, deps)
		if err != nil {
			return nil, err
		}
		jobs = append(jobs, pa...)
		p.logger.Info("rule matched", "account", ev.Account, "mailbox", ev.Mailbox, "uid", ev.UID, "rule", r.Spec.Name)
	}
	return jobs, nil
}

// ruleSpecs converts the rules: section for rules.Compile.
func ruleSpecs(cfg *config.Config) []rules.Spec {
	specs := make([]rules.Spec, 0, len(cfg.Rules))
	for _, r := range cfg.Rules {
		s := rules.Spec{Name: r.Name, Account: r.Account, Mailbox: r.Mailbox, When: r.When, Stop: r.Stop}
		for _, a := range r.Actions {
			s.Actions = append(s.Actions, rules.Action{Webhook: a.Webhook, Reply: a.Reply, MarkSeen: a.MarkSeen,
				Flag: a.Flag, Move: a.Move, Copy: a.Copy})
		}
		specs = append(specs, s)
	}
	return specs
}

// endpoints converts the webhooks: section for the dispatcher.
func endpoints(cfg *config.Config) ([]dispatch.Endpoint, error) {
	eps := make([]dispatch.Endpoint, 0, len(cfg.Webhooks))
	for i, w := range cfg.Webhooks {
		ep := dispatch.Endpoint{
			Name: w.Name, URL: w.URL, Timeout: w.Timeout, Concurrency: w.Concurrency, AllowLinkLocal: w.AllowLinkLocal,
			Retry:        outbox.RetryPolicy{MaxAge: w.Retry.MaxAge, MinBackoff: w.Retry.MinBackoff, MaxBackoff: w.Retry.MaxBackoff},
			DisableAfter: w.DisableAfter,
		}
		for _, s := range w.Secrets {
			key, err := dispatch.ParseSecret(s)
			if err != nil {
				return nil, fmt.Errorf("webhooks[%d] %q.secrets: %w", i, w.Name, err)
			}
			ep.Secrets = append(ep.Secrets, key)
		}
		for _, h := range w.Headers {
			ep.Headers = append(ep.Headers, dispatch.Header{Name: h.Name, Value: h.Value})
		}
		f, err := payload.NewFormatter(w.FormatOptions())
		if err != nil {
			return nil, fmt.Errorf("webhooks[%d] %q: %w", i, w.Name, err)
		}
		ep.ContentType = f.ContentType()
		for _, fh := range f.Headers() { // e.g. GitHub's Accept, unless configured
			if !slices.ContainsFunc(w.Headers, func(h config.Header) bool { return strings.EqualFold(h.Name, fh.Name) }) {
				ep.Headers = append(ep.Headers, dispatch.Header{Name: fh.Name, Value: fh.Value})
			}
		}
		eps = append(eps, ep)
	}
	return eps, nil
}

// plan says which body parts the watcher of (account, mailbox) must fetch: those the rules read,
// those a webhook of an applicable rule ships (body: text|html|both), and the attachments a
// matched rule's webhook ships inline (attachments.go).
func plan(l *loaded, account, mailbox string) watcher.Plan {
	reads := l.rules.Reads(account, mailbox)
	pl := watcher.Plan{Text: reads.Text, HTML: reads.HTML, Inline: inlinePlan(l, account, mailbox)}
	body := map[string]string{} // webhook name → its body: mode
	for _, w := range l.cfg.Webhooks {
		body[w.Name] = w.Body
	}
	for _, r := range l.rules.Rules() {
		if !r.AppliesTo(account, mailbox) {
			continue
		}
		for _, a := range r.Actions {
			b := body[a.Webhook] // "" for other actions
			pl.Text = pl.Text || b == config.BodyText || b == config.BodyBoth
			pl.HTML = pl.HTML || b == config.BodyHTML || b == config.BodyBoth
		}
	}
	return pl
}

// watcherConfig builds the watcher configuration of one (account, mailbox).
func watcherConfig(l *loaded, a config.Account, mailbox string, logger *slog.Logger) (watcher.Config, error) {
	im := a.IMAP
	wc := watcher.Config{
		Account: a.Name, Mailbox: mailbox,
		Addr:     im.Addr(),
		Security: im.Security, Username: im.Username, Password: im.Password,
		Start: im.Start, IdleRefresh: im.IdleRefresh, PollInterval: im.PollInterval, CommandTimeout: im.CommandTimeout,
		Backoff: watcher.Backoff{Min: im.Backoff.Min, Max: im.Backoff.Max, AuthMin: im.Backoff.AuthMin, QuotaMin: im.Backoff.QuotaMin},
		Plan:    plan(l, a.Name, mailbox),
		Logger:  logger,
		Version: version(), // sent in ID (RFC 2971)

		Incoming: l.incoming, // nil unless this process ships attachments inline (run, replay)

		MaxMessageSize: int64(a.Limits.MaxMessageSize),
	}
	if im.Security != config.SecurityPlain {
		tc, err := im.TLS.ClientConfig(im.Host)
		if err != nil {
			return wc, fmt.Errorf("accounts %q imap.tls: %w", a.Name, err)
		}
		wc.TLS = tc
	}
	if im.OAuth2 != nil {
		if err := l.useOAuth2(&wc, a, logger); err != nil {
			return wc, err
		}
	}
	return wc, nil
}

// cost describes a fetch plan in the words `check` prints.
func cost(p watcher.Plan) string {
	if p.Inline != nil {
		p.Inline = nil
		return cost(p) + "; attachment content when a matched rule's webhook ships it inline"
	}
	switch {
	case p.Text && p.HTML:
		return "header + BODYSTRUCTURE, then the text/plain and text/html parts"
	case p.Text:
		return "header + BODYSTRUCTURE, then the text/plain part"
	case p.HTML:
		return "header + BODYSTRUCTURE, then the text/html part"
	default:
		return "header + BODYSTRUCTURE only (no body bytes)"
	}
}
