package config

import (
	"fmt"
	"slices"
	"strings"

	"github.com/mailhook/mailhook/dispatch"
	"github.com/mailhook/mailhook/outbox"
	"github.com/mailhook/mailhook/payload"
)

// Endpoints converts the webhooks: section for the dispatcher (dispatch.New): secrets decoded,
// each format's Content-Type and headers added.
func (cfg *Config) Endpoints() ([]dispatch.Endpoint, error) {
	eps := make([]dispatch.Endpoint, 0, len(cfg.Webhooks))
	for i, w := range cfg.Webhooks {
		ep := dispatch.Endpoint{
			Name: w.Name, URL: w.URL, Timeout: w.Timeout, Concurrency: w.Concurrency, AllowLinkLocal: w.AllowLinkLocal,
			Retry:        outbox.RetryPolicy{MaxAge: w.Retry.MaxAge, MinBackoff: w.Retry.MinBackoff, MaxBackoff: w.Retry.MaxBackoff},
			DisableAfter: w.DisableAfter,
			Unsigned:     len(w.Secrets) == 0, // a chat format without a secret (config allows no other)
		}
		for _, s := range w.Secrets {
			key, err := dispatch.ParseSecret(s)
			if err != nil {
				return nil, fmt.Errorf("webhooks[%d] %q.secrets: %w", i, w.Name, err)
			}
			ep.Secrets = append(ep.Secrets, key)
		}
		for _, h := range w.Headers {
			ep.Headers = append(ep.Headers, dispatch.Header{Name: h.Name, Value: h.Value})
		}
		f, err := payload.NewFormatter(w.FormatOptions())
		if err != nil {
			return nil, fmt.Errorf("webhooks[%d] %q: %w", i, w.Name, err)
		}
		ep.ContentType = f.ContentType()
		for _, fh := range f.Headers() { // e.g. GitHub's Accept, unless configured
			if !slices.ContainsFunc(w.Headers, func(h Header) bool { return strings.EqualFold(h.Name, fh.Name) }) {
				ep.Headers = append(ep.Headers, dispatch.Header{Name: fh.Name, Value: fh.Value})
			}
		}
		eps = append(eps, ep)
	}
	return eps, nil
}
