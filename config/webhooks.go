package config

// The webhooks section: HTTP endpoints, their signing secrets, headers, bodies, attachments and
// retry schedules. The body formats are in formats.go.

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/mailhook/mailhook/dispatch"
	"github.com/mailhook/mailhook/payload"
	"github.com/mailhook/mailhook/rules"
)

// Webhook is one HTTP endpoint that receives signed Standard Webhooks deliveries.
type Webhook struct {
	Name string `mapstructure:"name"`
	// Fields are the extract names of the rules that send to this webhook, sorted, for the
	// template check (ApplyDefaults sets them; not a configuration key).
	Fields []string `mapstructure:"-"`
	URL    string   `mapstructure:"url"` // http(s); plain http to a non-loopback host needs Insecure
	// Secret, Secrets and SecretFile are mutually exclusive ways to give the whsec_ signing
	// secret(s). After Load, Secrets holds them all (secret and secret_file are folded into
	// it and Secret is ""); on a Config built in code, SigningSecrets reads either form.
	Secret          string        `mapstructure:"secret"`
	Secrets         []string      `mapstructure:"secrets"`
	SecretFile      string        `mapstructure:"secret_file"`
	Headers         []Header      `mapstructure:"headers"`
	Format          string        `mapstructure:"format"`           // json | slack | discord | teams | github | template; default json
	Body            string        `mapstructure:"body"`             // none | text | html | both; default text
	MaxBodyBytes    ByteSize      `mapstructure:"max_body_bytes"`   // per body part; default 256KiB
	Attachments     string        `mapstructure:"attachments"`      // none | metadata | inline; default metadata
	AttachmentsWhen string        `mapstructure:"attachments_when"` // with inline: which ones (expr over filename, content_type, size)
	MaxInlineBytes  ByteSize      `mapstructure:"max_inline_bytes"` // with inline: per message; default 10MB
	Timeout         time.Duration `mapstructure:"timeout"`          // per attempt; default 15s, at most 30s
	Retry           RetryConfig   `mapstructure:"retry"`
	// Insecure allows a plain http URL to a host that is not loopback (accepted, and logged at
	// startup as a warning).
	Insecure bool `mapstructure:"insecure"`
	// AllowLinkLocal allows the URL to resolve to link-local or cloud-metadata addresses, which
	// are refused at dial time otherwise.
	AllowLinkLocal bool `mapstructure:"allow_link_local"`
	Concurrency    int  `mapstructure:"concurrency"` // deliveries in flight at once; default 4
	// Template is the Go text/template of format: template (or TemplateFile, read into it by
	// Load); ContentType its Content-Type (default application/json, which requires the
	// output to be valid JSON). EventType is the repository_dispatch event_type of format: github
	// (default the rule's name). See formats.go.
	Template     string `mapstructure:"template"`
	TemplateFile string `mapstructure:"template_file"`
	ContentType  string `mapstructure:"content_type"`
	EventType    string `mapstructure:"event_type"`
	// DisableAfter disables the endpoint (its jobs are held) once it has failed without a single
	// success for this long (it is reported when disabled); default 120h. HTTP 410 disables it at once.
	DisableAfter time.Duration `mapstructure:"disable_after"`
}

// SigningSecrets returns the whsec_ secrets to sign with, in order: Secrets, or Secret alone.
func (w *Webhook) SigningSecrets() []string {
	if len(w.Secrets) > 0 {
		return w.Secrets
	}
	if w.Secret != "" {
		return []string{w.Secret}
	}
	return nil
}

// Header is one extra request header sent with every delivery of a webhook. Its value is never
// logged; ValueFile (read into Value by Load, never expanded) keeps a token out of the file.
type Header struct {
	Name      string `mapstructure:"name"`
	Value     string `mapstructure:"value"`
	ValueFile string `mapstructure:"value_file"`
}

// RetryConfig is a webhook's retry schedule: exponential backoff with jitter between MinBackoff and
// MaxBackoff until the job is MaxAge old, then dead-lettered.
type RetryConfig struct {
	MaxAge     time.Duration `mapstructure:"max_age"`     // default 72h
	MinBackoff time.Duration `mapstructure:"min_backoff"` // default 5s
	MaxBackoff time.Duration `mapstructure:"max_backoff"` // default 1h
}

// Values of webhooks[].format, body and attachments.
const (
	FormatJSON = "json"

	BodyNone = "none"
	BodyText = "text"
	BodyHTML = "html"
	BodyBoth = "both"

	AttachmentsNone     = "none"
	AttachmentsMetadata = "metadata"
	AttachmentsInline   = "inline"
)

// Defaults and bounds of a webhook. Where the dispatch and payload packages have a default, it is
// theirs.
const (
	defaultWebhookBody        = BodyText
	defaultWebhookAttachments = AttachmentsMetadata
	defaultMaxBodyBytes       = ByteSize(payload.DefaultMaxBodyBytes)
	defaultMaxInlineBytes     = 10 * MB
	defaultWebhookTimeout     = dispatch.DefaultTimeout
	maxWebhookTimeout         = dispatch.MaxTimeout
	defaultRetryMaxAge        = dispatch.DefaultMaxAge
	defaultRetryMinBackoff    = dispatch.DefaultMinBackoff
	defaultRetryMaxBackoff    = dispatch.DefaultMaxBackoff
	defaultConcurrency        = dispatch.DefaultConcurrency
	maxConcurrency            = 64
	defaultDisableAfter       = dispatch.DefaultDisableAfter
)

func (w *Webhook) applyDefaults(path string, warnings *[]string) {
	setDefault(&w.Format, FormatJSON)
	setDefault(&w.Body, defaultWebhookBody)
	setDefault(&w.MaxBodyBytes, defaultMaxBodyBytes)
	setDefault(&w.Attachments, defaultWebhookAttachments)
	setDefault(&w.MaxInlineBytes, defaultMaxInlineBytes)
	setDefault(&w.Timeout, defaultWebhookTimeout)
	setDefault(&w.Retry.MaxAge, defaultRetryMaxAge)
	setDefault(&w.Retry.MinBackoff, defaultRetryMinBackoff)
	setDefault(&w.Retry.MaxBackoff, defaultRetryMaxBackoff)
	setDefault(&w.Concurrency, defaultConcurrency)
	setDefault(&w.DisableAfter, defaultDisableAfter)
	if w.Insecure {
		if u, err := url.Parse(w.URL); err == nil && strings.EqualFold(u.Scheme, "http") && u.Hostname() != "" && !isLoopback(u.Hostname()) {
			// Accepted, and logged at startup. The host only: the URL may carry a token.
			*warnings = append(*warnings, fmt.Sprintf("%s.url: plain http to %s (insecure: true): payloads and signatures travel unencrypted",
				path, u.Hostname()))
		}
	}
}

func (w *Webhook) validate(p *problems, path string) {
	validateWebhookURL(p, path+".url", w.URL, w.Insecure)
	w.validateSecrets(p, path)
	w.validateHeaders(p, path)
	w.validateFormat(p, path) // formats.go
	oneOf(p, path+".body", w.Body, BodyNone, BodyText, BodyHTML, BodyBoth)
	if w.MaxBodyBytes <= 0 {
		p.add(path+".max_body_bytes", "must be positive")
	}
	w.validateAttachments(p, path)
	if w.Timeout <= 0 || w.Timeout > maxWebhookTimeout {
		p.add(path+".timeout", "%s is outside (0, %s]", w.Timeout, maxWebhookTimeout)
	}
	w.Retry.validate(p, path+".retry")
	if w.Concurrency < 1 || w.Concurrency > maxConcurrency {
		p.add(path+".concurrency", "%d is outside 1–%d", w.Concurrency, maxConcurrency)
	}
	positive(p, path+".disable_after", w.DisableAfter)
}

// chatFormat reports a format whose destination checks no signature (Slack, Discord, Teams): a
// secret is optional there, and when given it is still validated and still signs.
func (w *Webhook) chatFormat() bool {
	switch w.Format {
	case "slack", "discord", "teams":
		return true
	}
	return false
}

// validateSecrets checks that there is one way of giving the signing secrets, and every secret.
func (w *Webhook) validateSecrets(p *problems, path string) {
	switch {
	case w.Secret != "" && len(w.Secrets) > 0:
		p.add(path+".secrets", "set both secret and secrets; use one")
	case w.Secret == "" && len(w.Secrets) == 0 && !w.chatFormat():
		p.add(path+".secrets", "a signing secret is required (secret, secrets or secret_file)")
	case w.Secret != "":
		field := path + ".secret"
		if w.SecretFile != "" {
			field = path + ".secret_file"
		}
		if _, err := dispatch.ParseSecret(w.Secret); err != nil {
			p.add(field, "%s", err)
		}
	default:
		for j, s := range w.Secrets {
			if _, err := dispatch.ParseSecret(s); err != nil {
				p.add(fmt.Sprintf("%s.secrets[%d]", path, j), "%s", err)
			}
		}
	}
}

func (w *Webhook) validateHeaders(p *problems, path string) {
	for j, h := range w.Headers {
		hp := fmt.Sprintf("%s.headers[%d]", path, j)
		switch {
		case h.Name == "":
			p.add(hp+".name", "required")
		case !validToken(h.Name):
			p.add(hp+".name", "%q is not a valid header name", h.Name)
		case reservedHeader(h.Name):
			p.add(hp+".name", "%s is set by mailhook and cannot be overridden", h.Name)
		}
		if strings.ContainsAny(h.Value, "\r\n\x00") {
			p.add(hp+".value", "must not contain CR, LF or NUL")
		}
	}
}

// validateAttachments checks attachments, attachments_when and max_inline_bytes of a webhook.
func (w *Webhook) validateAttachments(p *problems, path string) {
	switch w.Attachments {
	case AttachmentsNone, AttachmentsMetadata, AttachmentsInline: // inline needs format json: formats.go
	default:
		p.add(path+".attachments", "%q is not one of none, metadata, inline", w.Attachments)
	}
	if w.AttachmentsWhen != "" {
		if w.Attachments != AttachmentsInline {
			p.add(path+".attachments_when", "applies only to attachments: inline")
		} else if _, err := rules.CompileAttachmentFilter(w.AttachmentsWhen); err != nil {
			p.add(path+".attachments_when", "%s", err)
		}
	}
	if w.MaxInlineBytes <= 0 {
		p.add(path+".max_inline_bytes", "must be positive")
	}
}

func (r RetryConfig) validate(p *problems, path string) {
	positive(p, path+".max_age", r.MaxAge)
	positive(p, path+".min_backoff", r.MinBackoff)
	if r.MaxBackoff < r.MinBackoff {
		p.add(path+".max_backoff", "%s is less than min_backoff %s", r.MaxBackoff, r.MinBackoff)
	}
}

// validateWebhookURL checks a webhook URL without ever echoing it: it may carry a token.
func validateWebhookURL(p *problems, field, raw string, insecure bool) {
	if raw == "" {
		p.add(field, "required")
		return
	}
	u, err := url.Parse(raw)
	if err != nil {
		p.add(field, "not a valid URL")
		return
	}
	switch u.Scheme {
	case "https":
	case "http":
		// Plain http is accepted to a loopback host, elsewhere only with an explicit insecure: true.
		if u.Hostname() != "" && !isLoopback(u.Hostname()) && !insecure {
			p.add(field, "plain http to a non-loopback host needs insecure: true (use https)")
		}
	default:
		p.add(field, "scheme must be http or https")
	}
	if u.Hostname() == "" {
		p.add(field, "has no host")
	}
	if u.Fragment != "" {
		p.add(field, "must not have a #fragment")
	}
}

// validToken reports whether s is an HTTP field name (RFC 9110 §5.1: a token).
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// reservedHeader reports whether mailhook sets the header itself (Standard Webhooks and framing).
func reservedHeader(name string) bool {
	switch strings.ToLower(name) {
	case "webhook-id", "webhook-timestamp", "webhook-signature", "idempotency-key",
		"content-type", "content-length", "content-encoding", "transfer-encoding", "host", "connection":
		return true
	}
	return false
}
