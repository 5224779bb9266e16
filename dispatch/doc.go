// Package dispatch delivers mailhook's webhook jobs from the outbox.
//
// The pipeline turns a matched message into a payload and renders it in the webhook's format
// (package payload); the bytes are committed as the body of an outbox job, stored once and never
// rebuilt. A Dispatcher runs
// workers per configured Endpoint that claim due jobs, POST the stored body signed per attempt
// following the Standard Webhooks specification (webhook-id, webhook-timestamp, webhook-signature),
// and record the outcome:
//
//   - 2xx: done.
//   - 408, 425, 429, 5xx and network errors: retried, first a couple of times in process, then on a
//     durable schedule kept in the outbox (exponential backoff with full jitter between
//     RetryPolicy.MinBackoff and MaxBackoff, never sooner than a Retry-After), until
//     RetryPolicy.MaxAge after the job was created; then dead.
//   - 3xx (redirects are never followed) and any other 4xx: dead at once. 410 also disables the
//     endpoint, as does failing without a success for Endpoint.DisableAfter (health.go): its jobs
//     are then held, in the store (EndpointStates), until it is enabled again.
//
// Delivery is at least once: a job is marked done only after the receiver answered 2xx, so a crash
// in between sends it again, with the same webhook-id, which receivers use to deduplicate.
//
// Replies are the other kind of outbox job: a ReplyDispatcher sends them through each account's
// Sender (SMTPSender, go-smtp), at most once per sender and period (see ReplyDispatcher).
// CheckReply holds the RFC 3834 loop guards, ParseReplyTemplate the templates and ReplyJob the
// reply as rendered at commit time; Compose writes it as an RFC 5322 message.
//
// Nothing this package logs or records carries an endpoint URL (its path or query may hold a
// token), a header value or a secret: endpoints are named by Endpoint.Name, and errors from
// net/http are stripped of the URL.
package dispatch
