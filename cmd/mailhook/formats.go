package main

import (
	"fmt"

	"github.com/mailhook/mailhook/config"
	"github.com/mailhook/mailhook/payload"
)

// This file compiles the webhook body formats of the configuration (format, template,
// content_type, event_type; checked by package config) for the pipeline, which renders a job's
// body once, at commit time (pipeline/webhooks.go).

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
