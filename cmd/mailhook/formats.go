package main

import (
	"context"
	"fmt"
	"time"

	"github.com/mailhook/mailhook/config"
	"github.com/mailhook/mailhook/payload"
	"github.com/mailhook/mailhook/store"
	"github.com/mailhook/mailhook/watcher"
)

// This file compiles the webhook body formats of the configuration (format, template,
// content_type, event_type; checked by package config) and is the pipeline step that renders a
// job's body once, at commit time.

// compileFormats builds the formatter of every webhook, by name.
func compileFormats(cfg *config.Config) (map[string]*payload.Formatter, error) {
	out := make(map[string]*payload.Formatter, len(cfg.Webhooks))
	for i := range cfg.Webhooks {
		w := &cfg.Webhooks[i]
		f, err := payload.NewFormatter(w.FormatOptions())
		if err != nil {
			return nil, fmt.Errorf("%s: %w", config.ItemPath("webhooks", i, w.Name), err)
		}
		out[w.Name] = f
	}
	return out, nil
}

// endpointState is what the pipeline asks the store about a webhook.
type endpointState interface {
	Endpoint(ctx context.Context, name string) (store.EndpointState, error)
}

var _ endpointState = store.Backend(nil)

// stateLookupTimeout bounds the pipeline's question whether an endpoint is disabled.
const stateLookupTimeout = 5 * time.Second

// renderBody fills in the body of job, webhook wh's job for payload pl, rendered once in the
// webhook's format: retries and restarts send these very bytes. A body that cannot be rendered
// (a template failing on this message) makes the job dead at once, with the reason as its last
// error, so the message is committed and the mailbox moves on; `mailhook outbox list --dead`
// shows it. A job of a disabled endpoint is committed held.
func (p *pipeline) renderBody(ctx context.Context, ev *watcher.Event, wh config.Webhook, pl *payload.Payload, job *store.Job) {
	f := p.formats[wh.Name]
	var body []byte
	var err error
	if f == nil { // a pipeline built without formats (tests): payload v1
		body, err = pl.Marshal()
	} else {
		body, err = f.Render(pl)
	}
	if err != nil {
		p.logger.Error("webhook body cannot be rendered; job dead-lettered", "account", ev.Account,
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
		p.logger.Warn("cannot read the webhook's state; job queued as pending", "webhook", wh.Name, "err", err)
	case st.Disabled():
		job.State, job.LastError = store.StateHeld, "endpoint disabled: "+st.Reason
	}
}
