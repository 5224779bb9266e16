package testmail

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

func TestDovecotAppendFlagsAndPush(t *testing.T) {
	t.Parallel()
	d := StartDovecot(t, DovecotOptions{Mailboxes: []string{"Archive"}})

	w := dialWatcher(t, d.Addr(), d.User(), d.Password(), "INBOX")
	if !w.Caps().Has(imap.CapIdle) {
		t.Fatalf("IDLE not advertised: %v", w.Caps())
	}
	idle, err := w.Idle()
	if err != nil {
		t.Fatal(err)
	}
	uid, err := d.Append("INBOX", SampleCIFailure(0))
	if err != nil {
		t.Fatal(err)
	}
	if uid != 1 {
		t.Errorf("first uid = %d, want 1", uid)
	}
	w.waitExists(t, 1) // Dovecot pushes it about 0.5 s later
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}

	if err := w.Store(imap.UIDSetNum(imap.UID(uid)), &imap.StoreFlags{
		Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagFlagged, "$Processed"},
	}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	flags, err := d.Flags("INBOX", uid)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"$Processed", `\Flagged`}; !slices.Equal(flags, want) {
		t.Errorf("flags %q, want %q", flags, want)
	}
	if uid, err := d.Append("Archive", SampleInvoice(0)); err != nil || uid != 1 {
		t.Errorf("append to Archive: uid %d, %v", uid, err)
	}
	if _, err := d.Append("Missing", SamplePersonal(0)); err == nil {
		t.Error("append to a missing mailbox succeeded")
	}
}

func TestDovecotDeleteCreateChangesUIDValidity(t *testing.T) {
	t.Parallel()
	d := StartDovecot(t, DovecotOptions{Mailboxes: []string{"Work"}})
	if _, err := d.Append("Work", SamplePersonal(0)); err != nil {
		t.Fatal(err)
	}
	before, err := d.UIDValidity("Work")
	if err != nil {
		t.Fatal(err)
	}
	if err := d.DeleteMailbox("Work"); err != nil {
		t.Fatal(err)
	}
	if err := d.CreateMailbox("Work"); err != nil {
		t.Fatal(err)
	}
	after, err := d.UIDValidity("Work")
	if err != nil {
		t.Fatal(err)
	}
	if after == before {
		t.Errorf("UIDVALIDITY %d unchanged after delete and create", after)
	}
	if uid, err := d.Append("Work", SamplePersonal(1)); err != nil || uid != 1 {
		t.Errorf("append to the new Work: uid %d, %v; want 1", uid, err)
	}
}

func TestDovecotStopStart(t *testing.T) {
	t.Parallel()
	d := StartDovecot(t, DovecotOptions{})
	if _, err := d.Append("INBOX", SamplePersonal(0)); err != nil {
		t.Fatal(err)
	}
	validity, err := d.UIDValidity("INBOX")
	if err != nil {
		t.Fatal(err)
	}
	w := dialWatcher(t, d.Addr(), d.User(), d.Password(), "INBOX")

	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-w.Closed():
	case <-time.After(testTimeout):
		t.Fatal("client connection survived Stop")
	}
	if c, err := net.DialTimeout("tcp", d.Addr(), time.Second); err == nil {
		_ = c.Close()
		t.Fatal("port still accepts connections after Stop")
	}
	if _, err := d.Append("INBOX", SamplePersonal(1)); err == nil {
		t.Error("append while stopped succeeded")
	}

	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	uid, err := d.Append("INBOX", SamplePersonal(2))
	if err != nil {
		t.Fatal(err)
	}
	if uid != 2 {
		t.Errorf("uid after restart = %d, want 2 (mail kept)", uid)
	}
	if v, err := d.UIDValidity("INBOX"); err != nil || v != validity {
		t.Errorf("UIDVALIDITY after restart = %d, %v; want %d", v, err, validity)
	}
	if err := d.Start(); err != nil {
		t.Errorf("Start while running: %v", err)
	}
}

func TestDovecotLogoutBytes(t *testing.T) {
	t.Parallel()
	d := StartDovecot(t, DovecotOptions{})
	raw := SampleInvoice(0)
	if _, err := d.Append("INBOX", raw); err != nil {
		t.Fatal(err)
	}
	// Admin sessions are left out.
	if in, out := d.LogoutBytes(); in != 0 || out != 0 {
		t.Fatalf("LogoutBytes() = %d, %d before any client session; want 0, 0", in, out)
	}

	c, err := imapclient.DialInsecure(d.Addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	watchdog := time.AfterFunc(testTimeout, func() { _ = c.Close() })
	defer watchdog.Stop()
	defer c.Close()
	if err := c.Login(d.User(), d.Password()).Wait(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "one open session", func() bool { return d.OpenSessions() == 1 })
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Fetch(imap.UIDSetNum(1), &imap.FetchOptions{
		BodySection: []*imap.FetchItemBodySection{{Peek: true}},
	}).Collect(); err != nil {
		t.Fatal(err)
	}
	if err := c.Logout().Wait(); err != nil {
		t.Fatal(err)
	}
	// The logout line is written as the session ends, just after the client saw BYE.
	var in, out int64
	waitUntil(t, "the logout line is logged", func() bool {
		in, out = d.LogoutBytes()
		return out > 0
	})
	if out < int64(len(raw)) || out > int64(len(raw))+4096 {
		t.Errorf("out = %d, want the %d-byte message plus protocol overhead", out, len(raw))
	}
	if in <= 0 || in > 1024 {
		t.Errorf("in = %d, want a few commands' worth", in)
	}
	if !strings.Contains(d.Log(), "Logged out in=") {
		t.Errorf("log lacks the logout line:\n%s", d.Log())
	}
	if n := d.OpenSessions(); n != 0 {
		t.Errorf("OpenSessions() = %d after the logout; want 0", n)
	}
}

func TestDovecotNoIdle(t *testing.T) {
	t.Parallel()
	d := StartDovecot(t, DovecotOptions{NoIdle: true})
	c, err := imapclient.DialInsecure(d.Addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	watchdog := time.AfterFunc(testTimeout, func() { _ = c.Close() })
	defer watchdog.Stop()
	defer c.Close()
	if err := c.WaitGreeting(); err != nil {
		t.Fatal(err)
	}
	greeting := c.Caps()
	if err := c.Login(d.User(), d.Password()).Wait(); err != nil {
		t.Fatal(err)
	}
	caps, err := c.Capability().Wait()
	if err != nil {
		t.Fatal(err)
	}
	for name, set := range map[string]imap.CapSet{"greeting": greeting, "after login": caps} {
		if set.Has(imap.CapIdle) {
			t.Errorf("%s: IDLE advertised: %v", name, set)
		}
	}
	for _, want := range []imap.Cap{imap.CapIMAP4rev1, imap.CapUIDPlus, imap.CapCondStore, imap.CapMove, imap.CapID} {
		if !caps.Has(want) {
			t.Errorf("%s missing: %v", want, caps)
		}
	}
}

func TestDovecotWrongPassword(t *testing.T) {
	t.Parallel()
	d := StartDovecot(t, DovecotOptions{User: "ci@example.test", Password: "s3cret"})
	c, err := imapclient.DialInsecure(d.Addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	watchdog := time.AfterFunc(testTimeout, func() { _ = c.Close() })
	defer watchdog.Stop()
	defer c.Close()
	err = c.Login("ci@example.test", "wrong").Wait()
	var imapErr *imap.Error
	if !errors.As(err, &imapErr) || imapErr.Code != imap.ResponseCodeAuthenticationFailed {
		t.Fatalf("login with a wrong password: %v, want NO [AUTHENTICATIONFAILED]", err)
	}
	if err := c.Login("ci@example.test", "s3cret").Wait(); err != nil {
		t.Fatalf("login with the right password: %v", err)
	}
}

// xoauth2 is a SASL XOAUTH2 client (Google's mechanism; go-sasl has none).
type xoauth2 struct{ user, token string }

func (x xoauth2) Start() (string, []byte, error) {
	return "XOAUTH2", []byte("user=" + x.user + "\x01auth=Bearer " + x.token + "\x01\x01"), nil
}

func (x xoauth2) Next([]byte) ([]byte, error) { return []byte{}, nil }

func TestDovecotOAuth2(t *testing.T) {
	t.Parallel()
	introspect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		w.Header().Set("Content-Type", "application/json")
		if r.PostForm.Get("token") == "good-token" {
			_, _ = io.WriteString(w, `{"active": true, "email": "demo@example.test"}`)
			return
		}
		_, _ = io.WriteString(w, `{"active": false}`)
	}))
	defer introspect.Close()
	d := StartDovecot(t, DovecotOptions{OAuth2IntrospectionURL: introspect.URL + "/introspect"})

	for _, tc := range []struct {
		token  string
		wantOK bool
	}{{"good-token", true}, {"bad-token", false}} {
		c, err := imapclient.DialInsecure(d.Addr(), nil)
		if err != nil {
			t.Fatal(err)
		}
		watchdog := time.AfterFunc(testTimeout, func() { _ = c.Close() })
		err = c.Authenticate(xoauth2{d.User(), tc.token})
		watchdog.Stop()
		_ = c.Close()
		if (err == nil) != tc.wantOK {
			t.Errorf("XOAUTH2 with %s: %v, want ok=%v", tc.token, err, tc.wantOK)
		}
	}
}
