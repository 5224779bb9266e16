package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/mailhook/mailhook/payload"
	"github.com/mailhook/mailhook/store"
	"github.com/mailhook/mailhook/watcher"
)

// This file is the webhook body formats in the configuration (format, template, template_file,
// content_type, event_type) and the pipeline step that renders a job's body once, at commit time.

// maxTemplateFileSize bounds template_file.
const maxTemplateFileSize = 1 << 20

// readTemplateFile reads template_file into Template (never expanded: a template may contain
// ${…} as text).
func readTemplateFile(p *problems, path string, w *Webhook) {
	if w.TemplateFile == "" {
		return
	}
	field := path + ".template_file"
	if w.Template != "" {
		p.add(field, "set both template and template_file; use one")
		return
	}
	f, err := os.Open(w.TemplateFile)
	if err != nil {
		p.add(field, "%s", err)
		return
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxTemplateFileSize+1))
	switch {
	case err != nil:
		p.add(field, "read %s: %s", w.TemplateFile, err)
	case len(b) > maxTemplateFileSize:
		p.add(field, "file %s is larger than %d bytes", w.TemplateFile, maxTemplateFileSize)
	default:
		w.Template = string(b)
	}
}

// formatOptions returns the webhook's body format for payload.NewFormatter.
func (w *Webhook) formatOptions() payload.FormatOptions {
	return payload.FormatOptions{Format: payload.Format(w.Format), Template: w.Template,
		ContentType: w.ContentType, EventType: w.EventType, Body: payload.BodyMode(w.Body)}
}

// validateFormat checks format and its options by building the formatter: a template is parsed and
// rendered over a sample message here, so its mistakes are configuration errors.
func (w *Webhook) validateFormat(p *problems, path string) {
	_, err := payload.NewFormatter(w.formatOptions())
	for _, e := range flatten(err) {
		var fe *payload.FormatError
		if !errors.As(e, &fe) {
			p.add(path+".format", "%s", e)
			continue
		}
		field := fe.Field
		if field == "template" && w.TemplateFile != "" {
			field = "template_file"
		}
		p.add(path+"."+field, "%s", fe.Err)
	}
	if w.Attachments == AttachmentsInline && w.Format != "" && w.Format != FormatJSON {
		p.add(path+".attachments", "inline needs format: json (the %s format carries no attachment content)", w.Format)
	}
}

// flatten returns the errors joined in err (errors.Join), or err alone.
func flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// compileFormats builds the formatter of every webhook, by name.
func compileFormats(cfg *Config) (map[string]*payload.Formatter, error) {
	out := make(map[string]*payload.Formatter, len(cfg.Webhooks))
	for i := range cfg.Webhooks {
		w := &cfg.Webhooks[i]
		f, err := payload.NewFormatter(w.formatOptions())
		if err != nil {
			return nil, fmt.Errorf("%s: %w", itemPath("webhooks", i, w.Name), err)
		}
		out[w.Name] = f
	}
	return out, nil
}

// endpointState is what the pipeline asks the store about a webhook; *store.Store implements it.
type endpointState interface {
	Endpoint(ctx context.Context, name string) (store.EndpointState, error)
}

var _ endpointState = (*store.Store)(nil)

// stateLookupTimeout bounds the pipeline's question whether an endpoint is disabled.
const stateLookupTimeout = 5 * time.Second

// renderBody fills in the body of job, webhook wh's job for payload pl, rendered once in the
// webhook's format: retries and restarts send these very bytes. A body that cannot be rendered
// (a template failing on this message) makes the job dead at once, with the reason as its last
// error, so the message is committed and the mailbox moves on; `mailhook outbox list --dead`
// shows it. A job of a disabled endpoint is committed held.
func (p *pipeline) renderBody(ctx context.Context, ev *watcher.Event, wh Webhook, pl *payload.Payload, job *store.Job) {
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
