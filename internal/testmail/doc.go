// Package testmail provides loopback servers and fixtures for mailhook's tests:
//
//   - MemServer: the demo's in-memory IMAP server (internal/demo) with what tests add — optional
//     absence of IDLE, a connection counter and limit, dropping every connection, reading flags;
//   - OAuthMemServer, TokenServer: an in-memory IMAP server reached only through XOAUTH2 or
//     OAUTHBEARER, and an OAuth 2.0 token endpoint, for the OAuth flows;
//   - Dovecot: a throwaway, unprivileged Dovecot 2.3 on a free loopback port, for behaviour where real
//     servers differ from imapmemserver (UID SEARCH n:*, UIDVALIDITY, CONDSTORE, push delay, byte counts);
//   - Postgres: a throwaway PostgreSQL cluster on a free loopback port, with a fresh database per test,
//     that can be stopped and started again (the PostgreSQL store backend, replicas, outages);
//   - Receiver: the demo's webhook receiver (Standard Webhooks verification) with scripted statuses
//     and a record of every request;
//   - SMTPSink: an SMTP server that records what it is sent and can inject faults;
//   - Proxy: a TCP fault proxy that can cut (reset) or freeze (blackhole) the connections it carries,
//     and, built with NewDelayProxy, a latency proxy (a fixed delay per direction, order kept, no
//     bandwidth limit) for measuring round trips;
//   - Sample: the demo's realistic RFC 5322 messages (CI failure, invoice with PDF, personal note).
//
// Everything listens on 127.0.0.1 only. The Start* helpers take a testing.TB and register cleanup;
// the New* constructors leave closing to the caller. All types are safe for concurrent use. Only
// tests import this package: what the shipped binary needs lives in internal/demo.
package testmail
