// Package demo is what `mailhook demo` serves, so that the pipeline can be tried with nothing
// else running:
//
//   - IMAPServer: an in-memory IMAP4rev1 server (go-imap v2 imapserver + imapmemserver) with one
//     user, plain LOGIN and IDLE that never misses an update (PollIdle works around imapmemserver's
//     IDLE race);
//   - Receiver: an HTTP webhook receiver that verifies Standard Webhooks signatures and reports
//     every request it answered;
//   - Sample: realistic RFC 5322 messages (CI failure, invoice with PDF, personal note).
//
// Everything listens on 127.0.0.1 only, and all types are safe for concurrent use. The package is
// linked into the shipped binary, so it must never import testing or net/http/httptest (a test in
// cmd/mailhook checks the binary's dependencies); the test harness, internal/testmail, builds its
// fault-injecting variants on top of these pieces.
package demo
