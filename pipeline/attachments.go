package pipeline

import (
	"context"
	"fmt"

	"github.com/mailhook/mailhook/message"
	"github.com/mailhook/mailhook/payload"
	"github.com/mailhook/mailhook/rules"
	"github.com/mailhook/mailhook/watcher"
)

// Attachments shipped inline (webhooks with attachments: inline): the choice made once per
// message from the one match (Match.Inline: what the watcher fetches) and the payload side
// (shipAttachments). Both call rules.ChooseInline with the same arguments, so what is fetched is
// exactly what the payload ships.

// inlineChoice collects, over the matched rules' webhooks with attachments: inline, the
// attachments each would ship. So attachment content is fetched only for a message some rule
// sends inline, and only the attachments chosen and fitting under max_inline_bytes.
func (p *Pipeline) inlineChoice(m *message.Message, matched []*rules.Rule) []message.Attachment {
	if m == nil || len(m.Attachments) == 0 {
		return nil
	}
	var chosen []bool
	for _, r := range matched {
		for _, a := range r.Spec.Actions {
			w := p.webhooks[a.Webhook]
			if w == nil || w.Attachments != AttachmentsInline {
				continue
			}
			if chosen == nil {
				chosen = make([]bool, len(m.Attachments))
			}
			for _, i := range rules.ChooseInline(m.Attachments, w.AttachmentsWhen, w.MaxInlineBytes).Inline {
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

// shipAttachments applies webhook wh's attachments mode to the payload of job id: none empties
// the list; inline puts a spool reference in the content_base64 of each chosen attachment the
// watcher spooled, links the files into the job's spool directory (before the job commits), and
// marks the payload truncated when a chosen attachment is shipped as metadata only.
func (p *Pipeline) shipAttachments(ctx context.Context, ev *watcher.Event, wh *Webhook, pl *payload.Payload, id string) error {
	switch wh.Attachments {
	case AttachmentsNone:
		pl.OmitAttachments()
		return nil
	case AttachmentsInline:
	default:
		return nil
	}
	m := ev.Message
	c := rules.ChooseInline(m.Attachments, wh.AttachmentsWhen, wh.MaxInlineBytes)
	for _, err := range c.Errs {
		p.log.Warn("attachments_when failed; attachment not inlined", "account", ev.Account, "mailbox", ev.Mailbox,
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
	if err := p.spool.Attach(ctx, id, files); err != nil {
		return fmt.Errorf("uid %d webhook %q: %w", ev.UID, wh.Name, err)
	}
	return nil
}
