package oauth_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/mailhook/mailhook/internal/testmail"
	"github.com/mailhook/mailhook/oauth"
	"github.com/mailhook/mailhook/watcher"
)

// TestDovecotXOAuth2: a real Dovecot with its oauth2 passdb asks the token server's introspection
// endpoint about every XOAUTH2 and OAUTHBEARER login: a live token is accepted, an expired one
// refused with NO [AUTHENTICATIONFAILED] after the error challenge, and the refusal invalidates the
// token so the next login refreshes and is accepted.
func TestDovecotXOAuth2(t *testing.T) {
	for _, mech := range []string{oauth.MechXOAuth2, oauth.MechOAuthBearer} {
		t.Run(mech, func(t *testing.T) {
			e := newEnv(t, testmail.TokenOptions{User: testmail.DefaultUser}, nil)
			d := testmail.StartDovecot(t, testmail.DovecotOptions{OAuth2IntrospectionURL: e.ts.IntrospectionURL()})
			au, err := e.src.Authenticator(mech, d.User(), "127.0.0.1", 0)
			if err != nil {
				t.Fatal(err)
			}
			login := func() error {
				sc, err := au.SASL(context.Background())
				if err != nil {
					return err
				}
				c := dialIMAP(t, d.Addr())
				if err := c.Authenticate(sc); err != nil {
					return err
				}
				_, err = c.Select("INBOX", nil).Wait()
				return err
			}
			if err := login(); err != nil {
				t.Fatalf("login with a live token: %v", err)
			}
			e.ts.ExpireAccessTokens()
			err = login()
			// OAUTHBEARER gets NO [AUTHENTICATIONFAILED]. For XOAUTH2 our empty answer is sent by
			// go-imap beta.8 as "=" (the SASL-IR spelling, RFC 4959), which Dovecot rejects with
			// "BAD Invalid base64 data in continued response": still a tagged failure, and the
			// watcher counts any tagged answer to AUTHENTICATE as an authentication failure.
			var ie *imap.Error
			if !errors.As(err, &ie) || (ie.Code != imap.ResponseCodeAuthenticationFailed && ie.Type != imap.StatusResponseTypeBad) {
				t.Fatalf("login with an expired token: %v, want NO [AUTHENTICATIONFAILED] (or BAD)", err)
			}
			if err := login(); err != nil {
				t.Fatalf("login after the refusal: %v (the refused token was not invalidated?)", err)
			}
			if n := e.ts.Refreshes(); n != 2 {
				t.Errorf("%d refreshes, want 2", n)
			}
			if !strings.Contains(e.logs.String(), "server refused the bearer token") {
				t.Error("the error challenge was not seen (Refused not called)")
			}
		})
	}
}

// TestDovecotTokenExpiresDuringRestart: the watcher runs on a real Dovecot with XOAUTH2; Dovecot
// is stopped, the access token expires meanwhile, mail arrives, Dovecot comes back. The watcher
// reconnects, is refused once, refreshes the token, logs in and delivers the new mail: nothing is
// lost, and the token endpoint saw one refresh for the refusal.
func TestDovecotTokenExpiresDuringRestart(t *testing.T) {
	e := newEnv(t, testmail.TokenOptions{User: testmail.DefaultUser}, nil)
	d := testmail.StartDovecot(t, testmail.DovecotOptions{OAuth2IntrospectionURL: e.ts.IntrospectionURL()})
	if _, err := d.Append("INBOX", testmail.SampleCIFailure(1)); err != nil {
		t.Fatal(err)
	}
	w, h := startWatcher(t, e, d.Addr(), d.User(),
		watcher.Backoff{Min: 10 * time.Millisecond, Max: 50 * time.Millisecond, AuthMin: 100 * time.Millisecond})
	eventually(t, "the first message", func() bool { return h.count() == 1 })
	eventually(t, "idle", func() bool { return w.Status().State == watcher.StateIdle })

	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	e.ts.ExpireAccessTokens()
	eventually(t, "the watcher to notice", func() bool { return w.Status().State == watcher.StateBackoff })
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	for i := 2; i <= 3; i++ {
		if _, err := d.Append("INBOX", testmail.SampleCIFailure(i)); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "both new messages", func() bool { return h.count() == 3 })
	if n := e.ts.Refreshes(); n != 2 {
		t.Errorf("%d refreshes, want 2 (start, and once after the refusal)", n)
	}
	if !strings.Contains(e.logs.String(), "server refused the bearer token") {
		t.Error("no refusal seen: the test did not exercise an expired token")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, uid := range h.uids {
		if uid != uint32(i+1) {
			t.Errorf("delivered UIDs %v, want 1, 2, 3", h.uids)
			break
		}
	}
}
