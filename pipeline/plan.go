package pipeline

import (
	"github.com/mailhook/mailhook/payload"
	"github.com/mailhook/mailhook/watcher"
)

// Plan says which body parts the watcher of (account, mailbox) must fetch: those the rules read,
// those a webhook of an applicable rule ships (its body mode; a webhook that ships a body also
// ships bounce, complaint and calendar, whose small parts are then fetched for the messages that
// have them), and whether attachment content may be needed — when an applicable rule has a
// webhook with attachments: inline; Match.Inline then says, per message, which attachments.
func (p *Pipeline) Plan(account, mailbox string) watcher.Plan {
	reads := p.rules.Reads(account, mailbox)
	pl := watcher.Plan{Text: reads.Text, HTML: reads.HTML, ReplyText: reads.ReplyText, Reports: reads.Reports, Calendar: reads.Calendar}
	for _, r := range p.rules.Rules() {
		if !r.AppliesTo(account, mailbox) {
			continue
		}
		for _, a := range r.Actions {
			w := p.webhooks[a.Webhook]
			if w == nil {
				continue // another kind of action
			}
			pl.Text = pl.Text || w.Body == payload.BodyText || w.Body == payload.BodyBoth
			pl.HTML = pl.HTML || w.Body == payload.BodyHTML || w.Body == payload.BodyBoth
			pl.Reports = pl.Reports || w.Body != payload.BodyNone
			pl.Calendar = pl.Calendar || w.Body != payload.BodyNone
			pl.Inline = pl.Inline || w.Attachments == AttachmentsInline
		}
	}
	return pl
}
