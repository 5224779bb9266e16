package main

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/mailhook/mailhook/config"
	"github.com/mailhook/mailhook/payload"
	"github.com/mailhook/mailhook/pipeline"
	"github.com/mailhook/mailhook/rules"
	"github.com/mailhook/mailhook/watcher"
)

// pipelineConfig converts the loaded configuration for pipeline.New. The verb adds what it
// connects the pipeline to: the logger, the state store, the attachment spool, metrics, job ids.
func (l *loaded) pipelineConfig(logger *slog.Logger) pipeline.Config {
	pc := pipeline.Config{Rules: l.rules, Logger: logger}
	for _, w := range l.cfg.Webhooks {
		pc.Webhooks = append(pc.Webhooks, pipeline.Webhook{Name: w.Name, Body: payload.BodyMode(w.Body),
			MaxBodyBytes: int(w.MaxBodyBytes), Attachments: pipeline.AttachmentMode(w.Attachments),
			AttachmentsWhen: l.inline[w.Name], MaxInlineBytes: int64(w.MaxInlineBytes), Formatter: l.formats[w.Name]})
	}
	for _, r := range l.cfg.Replies {
		pc.Replies = append(pc.Replies, pipeline.Reply{Name: r.Name, Template: l.replies[r.Name],
			OwnAddresses: r.OwnAddresses, Suppress: r.Suppress, MaxReceived: r.MaxReceived, OncePer: r.OncePer})
	}
	for _, a := range l.cfg.Accounts {
		pc.Accounts = append(pc.Accounts, pipeline.Account{Name: a.Name, TrustedAuthservID: a.IMAP.TrustedAuthservID,
			Username: a.IMAP.Username, From: a.SMTP.From, EnvelopeFrom: a.SMTP.EnvelopeFrom})
	}
	return pc
}

// ruleSpecs converts the rules: section for rules.Compile.
func ruleSpecs(cfg *config.Config) []rules.Spec {
	specs := make([]rules.Spec, 0, len(cfg.Rules))
	for _, r := range cfg.Rules {
		s := rules.Spec{Name: r.Name, Account: r.Account, Mailbox: r.Mailbox, When: r.When, Stop: r.Stop, Extract: r.Extract}
		for _, a := range r.Actions {
			s.Actions = append(s.Actions, rules.Action{Webhook: a.Webhook, Reply: a.Reply, MarkSeen: a.MarkSeen,
				Flag: a.Flag, Move: a.Move, Copy: a.Copy})
		}
		specs = append(specs, s)
	}
	return specs
}

// watcherConfig builds the connection configuration of the watcher of one (account, mailbox);
// a verb that fetches messages adds the pipeline's fetch plan (and the spool's Incoming).
func watcherConfig(l *loaded, a config.Account, mailbox string, logger *slog.Logger) (watcher.Config, error) {
	im := a.IMAP
	wc := watcher.Config{
		Account: a.Name, Mailbox: mailbox,
		Addr:     im.Addr(),
		Security: im.Security, Username: im.Username, Password: im.Password,
		Start: im.Start, IdleRefresh: im.IdleRefresh, PollInterval: im.PollInterval, CommandTimeout: im.CommandTimeout,
		Backoff: watcher.Backoff{Min: im.Backoff.Min, Max: im.Backoff.Max, AuthMin: im.Backoff.AuthMin, QuotaMin: im.Backoff.QuotaMin},
		Logger:  logger,
		Version: version(), // sent in ID (RFC 2971)

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
	if p.Inline {
		p.Inline = false
		return cost(p) + "; attachment content when a matched rule's webhook ships it inline"
	}
	if p.Reports || p.Calendar {
		var what []string
		if p.Reports {
			what = append(what, "a report's few-KB report part and returned header (bounces, complaints)")
		}
		if p.Calendar {
			what = append(what, "the calendar part of an invitation")
		}
		p.Reports, p.Calendar = false, false
		return cost(p) + "; " + strings.Join(what, " and ") + ", only for messages that have them"
	}
	switch {
	case (p.Text || p.ReplyText) && p.HTML:
		return "header + BODYSTRUCTURE, then the text/plain and text/html parts"
	case p.ReplyText:
		return "header + BODYSTRUCTURE, then the text/plain part (the text/html part of a message without one)"
	case p.Text:
		return "header + BODYSTRUCTURE, then the text/plain part"
	case p.HTML:
		return "header + BODYSTRUCTURE, then the text/html part"
	default:
		return "header + BODYSTRUCTURE only (no body bytes)"
	}
}
