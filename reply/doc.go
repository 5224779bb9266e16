// Package reply sends mailhook's RFC 3834 auto-replies.
//
// At commit time the pipeline applies the loop guards (Check, a pure function of the message and
// the Policy: never answer automated or list mail, bounces, mailer daemons, ourselves, or mail not
// addressed to us) and renders the reply once (Template, NewJob): the job body holds the finished
// reply, so a retry sends the same message under the same Message-ID. Compose writes it as an
// RFC 5322 message with Auto-Submitted: auto-replied and our loop marker (LoopHeader).
//
// The Worker sends reply jobs as an outbox.Worker, one at a time per account, through the
// account's Sender (SMTPSender, go-smtp: implicit TLS or STARTTLS, never a credential in the
// clear). Replies are at most once: right before sending, the reply is reserved in the ledger
// (once per account, sender and reply within once_per, and under the account's rolling daily cap);
// a connection lost after the final dot records the job as unknown and never sends it again.
//
// Nothing this package logs or records carries a password, a token or a message body.
package reply
