package pipeline

import (
	"context"
	"fmt"
	"time"

	"github.com/mailhook/mailhook/payload"
	"github.com/mailhook/mailhook/rules"
	"github.com/mailhook/mailhook/store"
	"github.com/mailhook/mailhook/watcher"
)

// stateLookupTimeout bounds the question whether an endpoint is disabled.
const stateLookupTimeout = 5 * time.Second

// webhookJob returns the job of action number i (webhook name) of rule: the payload, with its
// attachments as the webhook ships them, rendered once in the webhook's format.
func (p *Pipeline) webhookJob(ctx context.Context, ev *watcher.Event, env *rules.Env, ex extracted, rule string, i int, name string) (store.Job, error) {
	wh := p.webhooks[name]
	if wh == nil {
		return store.Job{}, fmt.Errorf("rule %q: no webhook named %q", rule, name) // validation rules this out
	}
	id := p.jobID(ev.Account, ev.Mailbox, ev.UIDValidity, ev.UID, rule, i)
	pl := payload.New(id, rule, ev.Account, ev.Mailbox, ev.UIDValidity, ev.UID, ev.Message,
		env.Auth, wh.Body, wh.MaxBodyBytes) // auth parsed once, by rules.NewEnv
	pl.SetFields(ex.fields, ex.defects)
	if err := p.shipAttachments(ctx, ev, wh, pl, id); err != nil {
		return store.Job{}, err
	}
	job := store.Job{
		ID: id, Kind: store.KindWebhook, Target: wh.Name, Account: ev.Account, Mailbox: ev.Mailbox,
		UIDValidity: ev.UIDValidity, UID: ev.UID, Rule: rule,
	}
	p.renderBody(ctx, ev, wh, pl, &job)
	return job, nil
}

// renderBody fills in the body of job, webhook wh's job for payload pl, rendered once in the
// webhook's format: retries and restarts send these very bytes. A body that cannot be rendered
// (a template failing on this message) makes the job dead at once, with the reason as its last
// error, so the message is committed and the mailbox moves on; `mailhook outbox list --dead`
// shows it. A job of a disabled endpoint is committed held.
func (p *Pipeline) renderBody(ctx context.Context, ev *watcher.Event, wh *Webhook, pl *payload.Payload, job *store.Job) {
	var body []byte
	var err error
	if wh.Formatter == nil { // payload v1
		body, err = pl.Marshal()
	} else {
		body, err = wh.Formatter.Render(pl)
	}
	if err != nil {
		p.log.Error("webhook body cannot be rendered; job dead-lettered", "account", ev.Account,
			"mailbox", ev.Mailbox, "uid", ev.UID, "rule", job.Rule, "webhook", wh.Name, "job", job.ID, "err", err)
		job.State, job.LastError = store.StateDead, "render: "+err.Error()
		return
	}
	job.Body = body
	if p.states == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, stateLookupTimeout)
	defer cancel()
	st, err := p.states.Endpoint(ctx, wh.Name)
	switch {
	case err != nil:
		// The dispatcher holds the job if the endpoint is disabled after all.
		p.log.Warn("cannot read the webhook's state; job queued as pending", "webhook", wh.Name, "err", err)
	case st.Disabled():
		job.State, job.LastError = store.StateHeld, "endpoint disabled: "+st.Reason
	}
}
