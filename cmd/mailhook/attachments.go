package main

import (
	"fmt"

	"github.com/mailhook/mailhook/config"
	"github.com/mailhook/mailhook/dispatch"
	"github.com/mailhook/mailhook/rules"
	"github.com/mailhook/mailhook/spool"
	"github.com/mailhook/mailhook/store"
)

// Attachments shipped inline (webhooks[].attachments: inline; checked by package config): the
// compiled attachments_when filters, and the spool's part in the dispatcher. The per-message
// choice is the pipeline's (pipeline/attachments.go).

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

// spoolObserver chains the dispatcher's Observe hook next with the spool: a delivered job's files
// are removed once the outbox records it done. Only jobs that ship spooled content have files: the
// others cost the spool nothing.
func spoolObserver(sp *spool.Spool, next func(dispatch.Event)) func(dispatch.Event) {
	return func(e dispatch.Event) {
		if next != nil {
			next(e)
		}
		if e.State == store.StateDone && e.Inline {
			sp.Done(e.JobID)
		}
	}
}
