// Package ops is the operations side of a running mailhook: the http.listen listener serving
// /healthz, /readyz and /metrics, the health checks behind them and the metrics registry.
//
// Liveness (/healthz) answers "is the process stuck?", never "is Gmail up?": it fails only when a
// loop — a mailbox watcher or a dispatcher worker — has not gone round for 2 × idle_refresh + 60 s
// (longer while a loop sleeps on purpose: a reconnect backoff or a throttle, until its planned
// wake-up + 60 s). An upstream outage keeps the watchers going round their backoff loop, so
// liveness stays OK and a restart, which would not help, is never triggered.
//
// Readiness (/readyz) answers "is every mailbox being watched right now?": each watcher must be
// connected — waiting in IDLE, polling or fetching — with IMAP activity within the interval its
// state implies. Otherwise it answers 503 with a JSON body naming each failing mailbox and why
// (auth_failed, alert, over_quota, throttled, reconnecting, connecting, stale, stopped).
//
// Metrics (/metrics, the Prometheus exposition) are of two kinds:
//
//   - Counters of things that happen (messages seen and matched, delivery outcomes, retries, dead
//     letters, replies) are incremented where they happen: the pipeline through countingHandler,
//     the dispatcher through dispatch.Options.Observe.
//   - Everything that is state (outbox depth, IMAP bytes, sessions, last activity, IDLE state,
//     readiness) is read at scrape time from watcher.Status and store.Counts by stateCollector,
//     so no package pushes gauges and a scrape always sees the current truth.
//
// Every label value is a name the operator chose in the configuration (account, mailbox, webhook,
// rule) or one of a small fixed set (outcome, reason, state): never an address, URL, header value,
// subject or secret.
package ops
