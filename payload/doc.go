// Package payload is mailhook's webhook payload, version 1, and the request bodies rendered from
// it.
//
// New builds the Payload of one matched message: every string valid UTF-8 without NUL, lists
// empty rather than null, bodies and headers cut at their caps with the cut named in Defects.
// A Formatter renders it in a webhook's format — payload v1 itself (json), a Slack, Discord or
// Teams message, a GitHub repository_dispatch request, or the output of a Go template — and the
// bytes are stored once in the outbox job: every attempt sends them unchanged, so a signature
// over them holds whatever the format. Renderers escape and cut everything that comes from mail
// so that a message cannot inject markup, mentions or links into a chat service, and stay within
// each service's limits.
//
// Attachments shipped inline are stored as references into the attachment spool, not as content
// (InlineFromSpool, SplitInline); the sender streams the content in their place.
//
// Payload fields are added within a version, never removed, renamed or given another meaning:
// receivers must ignore fields they do not know.
package payload
