// Package outbox is the consumer of the outbox: the one loop that claims due jobs from the state
// store, has a Worker do each one's work, records the outcome and sleeps until the next job is
// due. Webhook delivery (package dispatch), auto-replies (package reply) and the watcher's
// mailbox post-actions are its Workers; it declares the narrow Store it drives and imports none
// of them.
//
// A Consumer runs lanes: one claim loop each, with a selector (the jobs of one webhook endpoint,
// of one account's replies, or of any target), a Gate bounding the jobs it holds at once, and the
// Worker that works them. Every loop takes its capacity first, claims up to that many due jobs in
// one transaction, works them (in turn, or each in its own goroutine) and records each Result
// with Store.Finish — retrying a failing store for a while, and going on while shutdown cancels
// the context, so that an outcome reached is not lost. With nothing claimable it sleeps until
// the next job falls due, a commit wakes it (Store.Wake), or 30 s have passed (another process
// may change the outbox). Loops report heartbeats for the liveness check (Consumer.Heartbeat),
// and Run renews the store's claims (Store.Heartbeat) so that jobs being worked are not taken
// for abandoned.
//
// The retry schedule of temporary failures is RetryPolicy: exponential backoff with full jitter,
// honouring Retry-After, until a maximum age; each worker decides what is temporary.
//
// Where jobs must run on a connection that admits one command at a time (post-actions, on the
// watcher's IMAP connection between IDLE cycles), the owner of the connection drains them itself
// through the same Store (Drain), and Due tells it when one is due.
//
// Delivery is at least once: a job is recorded done only after its worker succeeded, so a crash
// in between works it again; workers that must not repeat an attempt (replies) record an
// ambiguous outcome as unknown instead of retrying it.
package outbox
