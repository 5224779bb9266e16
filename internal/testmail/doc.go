// Package testmail provides loopback servers and fixtures for mailhook's tests and for the
// `mailhook demo` command:
//
//   - MemServer: an in-memory IMAP server (go-imap v2 imapserver + imapmemserver) with one user,
//     reliable IDLE pushes, optional absence of IDLE, a connection counter and limit;
//   - Dovecot: a throwaway, unprivileged Dovecot 2.3 on a free loopback port, for behaviour where real
//     servers differ from imapmemserver (UID SEARCH n:*, UIDVALIDITY, CONDSTORE, push delay, byte counts);
//   - Receiver: an HTTP webhook receiver that records every request and verifies Standard Webhooks
//     signatures, answering with scripted statuses;
//   - Proxy: a TCP fault proxy that can cut (reset) or freeze (blackhole) the connections it carries;
//   - Sample: realistic RFC 5322 messages (CI failure, invoice with PDF, personal note).
//
// Everything listens on 127.0.0.1 only. The Start* helpers take a testing.TB and register cleanup;
// the New* constructors do not depend on package testing and are what the demo uses. All types are
// safe for concurrent use.
package testmail
