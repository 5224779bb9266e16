package main

import (
	"fmt"
	"log/slog"

	"github.com/mailhook/mailhook/config"
	"github.com/mailhook/mailhook/dispatch"
	"github.com/mailhook/mailhook/message"
	"github.com/mailhook/mailhook/payload"
	"github.com/mailhook/mailhook/rules"
	"github.com/mailhook/mailhook/spool"
	"github.com/mailhook/mailhook/store"
	"github.com/mailhook/mailhook/watcher"
)

// Attachments shipped inline (webhooks[].attachments: inline; checked by package config): the
// compiled attachments_when filters, the watcher's fetch decision (inlinePlan) and the payload
// side (shipAttachments). Both sides call rules.ChooseInline with the same arguments, so what is
// fetched is exactly what the payload ships.

// compileInline compiles the attachments_when of every webhook with attachments: inline, by
// webhook name (nil for the default choice).
func compileInline(cfg *config.Config) (map[string]*rules.AttachmentFilter, error) {
	out := map[string]*rules.AttachmentFilter{}
	for i, w := range cfg.Webhooks {
		if w.Attachments != config.AttachmentsInline {
			continue
		}
		f, err := rules.CompileAttachmentFilter(w.AttachmentsWhen)
		if err != nil {
			return nil, fmt.Errorf("%s.attachments_when: %w", config.ItemPath("webhooks", i, w.Name), err)
		}
		out[w.Name] = f
	}
	return out, nil
}

// inlinePlan returns the watcher.Plan.Inline of (account, mailbox): for each message it runs the
// rules (as the pipeline will) and collects, over the matched rules' webhooks with attachments:
// inline, the attachments each would ship. So attachment content is fetched only for a message
// some rule sends inline, and only the attachments chosen and fitting under max_inline_bytes. It
// returns nil when no rule applying to the mailbox has such a webhook: then nothing is fetched.
func inlinePlan(l *loaded, account, mailbox string) func(ev *watcher.Event) []message.Attachment {
	webhooks := map[string]config.Webhook{}
	for _, w := range l.cfg.Webhooks {
		if w.Attachments == config.AttachmentsInline {
			webhooks[w.Name] = w
		}
	}
	needed := false
	for _, r := range l.rules.Rules() {
		for _, a := range r.Actions {
			if _, ok := webhooks[a.Webhook]; ok && r.AppliesTo(account, mailbox) {
				needed = true
			}
		}
	}
	if !needed {
		return nil
	}
	trusted := ""
	for _, a := range l.cfg.Accounts {
		if a.Name == account {
			trusted = a.IMAP.TrustedAuthservID
		}
	}
	return func(ev *watcher.Event) []message.Attachment {
		m := ev.Message
		if len(m.Attachments) == 0 {
			return nil
		}
		matched, _ := l.rules.Match(rules.NewEnv(ev.Account, ev.Mailbox, ev.UID, m, trusted)) // errors: logged by Handle
		chosen := make([]bool, len(m.Attachments))
		for _, r := range matched {
			for _, a := range r.Spec.Actions {
				w, ok := webhooks[a.Webhook]
				if !ok {
					continue
				}
				for _, i := range rules.ChooseInline(m.Attachments, l.inline[w.Name], int64(w.MaxInlineBytes)).Inline {
					chosen[i] = true
				}
			}
		}
		var out []message.Attachment
		for i, c := range chosen {
			if c {
				out = append(out, m.Attachments[i])
			}
		}
		return out
	}
}

// shipAttachments applies webhook wh's attachments mode to the payload of job id: none empties
// the list; inline puts a spool reference in the content_base64 of each chosen attachment the
// watcher spooled, links the files into the job's spool directory (before the job commits), and
// marks the payload truncated when a chosen attachment is shipped as metadata only.
func (p *pipeline) shipAttachments(ev *watcher.Event, wh config.Webhook, pl *payload.Payload, id string) error {
	switch wh.Attachments {
	case config.AttachmentsNone:
		pl.OmitAttachments()
		return nil
	case config.AttachmentsInline:
	default:
		return nil
	}
	m := ev.Message
	c := rules.ChooseInline(m.Attachments, p.inline[wh.Name], int64(wh.MaxInlineBytes))
	for _, err := range c.Errs {
		p.logger.Warn("attachments_when failed; attachment not inlined", "account", ev.Account, "mailbox", ev.Mailbox,
			"uid", ev.UID, "webhook", wh.Name, "err", err)
	}
	cut := len(c.Over) > 0
	files := map[string]string{}
	for _, i := range c.Inline {
		sec := m.Attachments[i].Section
		path, ok := ev.Spooled[sec]
		if !ok || p.spool == nil {
			cut = true // not fetched: beyond max_message_size, or no spool
			continue
		}
		files[sec] = path
		pl.InlineFromSpool(i, sec)
	}
	if cut {
		pl.MarkAttachmentsTruncated()
	}
	if len(files) == 0 {
		return nil
	}
	if err := p.spool.Attach(id, files); err != nil {
		return fmt.Errorf("uid %d webhook %q: %w", ev.UID, wh.Name, err)
	}
	return nil
}

// openDaemonSpool opens the attachment spool of state_dir for the daemon, which holds the state
// directory's lock (the spool empties the daemon's incoming directory, spooled for messages whose
// commit never happened; they are fetched again), and points the watchers at it.
func (l *loaded) openDaemonSpool(logger *slog.Logger) error {
	sp, err := spool.Open(l.cfg.StateDir, spool.Options{Logger: logger})
	if err != nil {
		return fmt.Errorf("open state: %w", err)
	}
	l.spool, l.incoming = sp, sp.Incoming()
	return nil
}

// spoolObserver chains the dispatcher's Observe hook next with the spool: a delivered job's files
// are removed once the outbox records it done.
func spoolObserver(sp *spool.Spool, next func(dispatch.Event)) func(dispatch.Event) {
	return func(e dispatch.Event) {
		if next != nil {
			next(e)
		}
		if e.State == store.StateDone {
			sp.Done(e.JobID)
		}
	}
}

// openToolSpool opens the attachment spool for a verb that queues webhooks beside a running
// daemon (replay), with an incoming directory of its own; the caller removes it when done (the
// daemon's sweep does, an hour later, if the tool dies first).
func (l *loaded) openToolSpool(logger *slog.Logger) (cleanup func(), err error) {
	sp, err := spool.Open(l.cfg.StateDir, spool.Options{Logger: logger, Shared: true})
	if err != nil {
		return nil, err
	}
	l.spool, l.incoming = sp, sp.Incoming()
	return func() { _ = sp.Close() }, nil
}
