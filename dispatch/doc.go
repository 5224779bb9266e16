// Package dispatch delivers mailhook's webhook jobs, as a Worker of the outbox consumer (package
// outbox).
//
// A job's body was rendered once, when the message was committed (package payload), and is
// stored in the outbox; it is never rebuilt. A Dispatcher has one claim lane per configured
// Endpoint (Lanes), plus one for jobs of any endpoint; each POSTs the stored body signed per
// attempt following the Standard Webhooks specification (webhook-id, webhook-timestamp,
// webhook-signature) and returns the outcome for the consumer to record:
//
//   - 2xx: done.
//   - 408, 425, 429, 5xx and network errors: retried, first a couple of times in process, then on a
//     durable schedule kept in the outbox (outbox.RetryPolicy: exponential backoff with full
//     jitter between MinBackoff and MaxBackoff, never sooner than a Retry-After), until MaxAge
//     after the job was created; then dead.
//   - 3xx (redirects are never followed) and any other 4xx: dead at once. 410 also disables the
//     endpoint, as does failing without a success for Endpoint.DisableAfter (health.go): its jobs
//     are then held, in the store (EndpointStates), until it is enabled again.
//
// Delivery is at least once: a job is recorded done only after the receiver answered 2xx, so a
// crash in between sends it again, with the same webhook-id, which receivers use to deduplicate.
// A job whose endpoint is no longer configured is dead-lettered with "webhook_removed".
// Attachments shipped inline are streamed from the attachment spool on every attempt
// (stream.go); link-local and cloud metadata addresses are refused at dial time unless the
// endpoint allows them.
//
// Nothing this package logs or records carries an endpoint URL (its path or query may hold a
// token), a header value or a secret: endpoints are named by Endpoint.Name, and errors from
// net/http are stripped of the URL.
package dispatch
