package watcher

import (
	"errors"
	"time"

	"github.com/emersion/go-imap/v2"
)

// authFailure is implemented by errors that mean "the credentials were refused": a session
// ending with one waits at least Backoff.AuthMin and calls Config.OnAuthFailure. The oauth
// package's refused-refresh error implements it.
type authFailure interface{ AuthFailure() bool }

// retryAfterer is implemented by errors that know how long retrying is pointless (the oauth
// package holds off a refused refresh for up to an hour): the backoff waits at least that long.
type retryAfterer interface{ RetryAfter() time.Duration }

// refusedAuth marks a NO to AUTHENTICATE as an authentication failure even without an
// [AUTHENTICATIONFAILED] code: Microsoft 365 answers a bad XOAUTH2 token with a bare
// "NO AUTHENTICATE failed.".
type refusedAuth struct{ error }

func (e refusedAuth) Unwrap() error   { return e.error }
func (refusedAuth) AuthFailure() bool { return true }

// markRefused wraps err as an authentication failure when it is the server's tagged answer.
func markRefused(err error) error {
	var ie *imap.Error
	if errors.As(err, &ie) {
		return refusedAuth{err}
	}
	return err
}

// isAuthFailure reports whether err carries an authFailure that says so.
func isAuthFailure(err error) bool {
	var af authFailure
	return errors.As(err, &af) && af.AuthFailure()
}

// retryAfter returns the wait an error asks for, if any.
func retryAfter(err error) (time.Duration, bool) {
	var ra retryAfterer
	if errors.As(err, &ra) {
		return ra.RetryAfter(), true
	}
	return 0, false
}
