package config

// The body formats of a webhook (format, template, template_file, content_type, event_type): a
// format is checked by building its payload.Formatter, so a template's mistakes are configuration
// errors.

import (
	"errors"
	"io"
	"os"

	"github.com/mailhook/mailhook/payload"
)

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

// FormatOptions returns the webhook's body format for payload.NewFormatter: Validate builds the
// formatter from it, so the daemon's formatter is the one checked.
func (w *Webhook) FormatOptions() payload.FormatOptions {
	return payload.FormatOptions{Format: payload.Format(w.Format), Template: w.Template,
		ContentType: w.ContentType, EventType: w.EventType, Body: payload.BodyMode(w.Body), Fields: w.Fields}
}

// validateFormat checks format and its options by building the formatter: a template is parsed and
// rendered over a sample message here, so its mistakes are configuration errors.
func (w *Webhook) validateFormat(p *problems, path string) {
	_, err := payload.NewFormatter(w.FormatOptions())
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
