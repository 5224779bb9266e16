package testmail

import (
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// testTimeout bounds every wait in these tests.
const testTimeout = 10 * time.Second

// existsWatcher is an IMAP client whose unilateral EXISTS counts arrive on a channel.
type existsWatcher struct {
	*imapclient.Client
	exists chan uint32
}

// dialWatcher connects to addr, logs in and selects mailbox. The watchdog closes the client when
// the test ends or after testTimeout, so no Wait can hang the test.
func dialWatcher(t *testing.T, addr, user, password, mailbox string) *existsWatcher {
	t.Helper()
	w := &existsWatcher{exists: make(chan uint32, 64)}
	c, err := imapclient.DialInsecure(addr, &imapclient.Options{
		UnilateralDataHandler: &imapclient.UnilateralDataHandler{
			Mailbox: func(d *imapclient.UnilateralDataMailbox) {
				if d.NumMessages != nil {
					select {
					case w.exists <- *d.NumMessages:
					default:
					}
				}
			},
		},
	})
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	watchdog := time.AfterFunc(testTimeout, func() { _ = c.Close() })
	t.Cleanup(func() {
		watchdog.Stop()
		_ = c.Close()
	})
	w.Client = c
	if err := c.Login(user, password).Wait(); err != nil {
		t.Fatalf("login: %v", err)
	}
	if _, err := c.Select(mailbox, nil).Wait(); err != nil {
		t.Fatalf("select %s: %v", mailbox, err)
	}
	return w
}

// waitExists waits for an EXISTS of at least want.
func (w *existsWatcher) waitExists(t *testing.T, want uint32) {
	t.Helper()
	deadline := time.After(testTimeout)
	for {
		select {
		case n := <-w.exists:
			if n >= want {
				return
			}
		case <-deadline:
			t.Fatalf("no EXISTS %d within %v", want, testTimeout)
		}
	}
}

func TestMemServerAppendFetch(t *testing.T) {
	s := StartMemServer(t, MemOptions{User: "u@example.test", Password: "pw", Mailboxes: []string{"Archive"}})
	for i, mbox := range []string{"INBOX", "Archive", "INBOX"} {
		uid, err := s.Append(mbox, SamplePersonal(i))
		if err != nil {
			t.Fatal(err)
		}
		if want := map[int]uint32{0: 1, 1: 1, 2: 2}[i]; uid != want {
			t.Errorf("append %d to %s: uid %d, want %d", i, mbox, uid, want)
		}
	}
	if _, err := s.Append("Nope", SamplePersonal(0)); err == nil {
		t.Error("append to a missing mailbox succeeded")
	}

	w := dialWatcher(t, s.Addr(), "u@example.test", "pw", "INBOX")
	msgs, err := w.Fetch(imap.UIDSetNum(1, 2), &imap.FetchOptions{
		UID:         true,
		Flags:       true,
		BodySection: []*imap.FetchItemBodySection{{Peek: true}},
	}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 2 {
		t.Fatalf("fetched %d messages, want 2", len(msgs))
	}
	for i, m := range msgs {
		if got, want := string(m.FindBodySection(&imap.FetchItemBodySection{})), string(SamplePersonal(i*2)); got != want {
			t.Errorf("uid %d: body differs from what was appended", m.UID)
		}
	}

	if err := w.Store(imap.UIDSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagSeen, "$Processed"}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	flags, err := s.Flags("INBOX", 2)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"$processed", `\Seen`}; !slices.Equal(flags, want) {
		t.Errorf("flags %q, want %q (imapmemserver lower-cases keywords)", flags, want)
	}
	if flags, err := s.Flags("INBOX", 1); err != nil || len(flags) != 0 {
		t.Errorf("flags of uid 1 = %q, %v; want none", flags, err)
	}
	if _, err := s.Flags("INBOX", 99); err == nil {
		t.Error("flags of a missing uid: no error")
	}
}

func TestMemServerUIDValidityChanges(t *testing.T) {
	s := StartMemServer(t, MemOptions{Mailboxes: []string{"Work"}})
	before, err := s.UIDValidity("Work")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteMailbox("Work"); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateMailbox("Work"); err != nil {
		t.Fatal(err)
	}
	after, err := s.UIDValidity("Work")
	if err != nil {
		t.Fatal(err)
	}
	if after == before {
		t.Errorf("UIDVALIDITY %d unchanged after delete and create", after)
	}
}

func TestMemServerCapabilities(t *testing.T) {
	for _, tc := range []struct {
		name     string
		noIdle   bool
		wantIdle bool
	}{
		{"idle", false, true},
		{"no idle", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := StartMemServer(t, MemOptions{NoIdle: tc.noIdle})
			// Before LOGIN: the greeting's capabilities; after: the LOGIN response code and an
			// explicit CAPABILITY command.
			c, err := imapclient.DialInsecure(s.Addr(), nil)
			if err != nil {
				t.Fatal(err)
			}
			watchdog := time.AfterFunc(testTimeout, func() { _ = c.Close() })
			defer watchdog.Stop()
			defer c.Close()
			if err := c.WaitGreeting(); err != nil {
				t.Fatal(err)
			}
			if err := c.Login(s.User(), s.Password()).Wait(); err != nil {
				t.Fatal(err)
			}
			afterLogin := c.Caps()
			caps, err := c.Capability().Wait()
			if err != nil {
				t.Fatal(err)
			}
			for _, set := range []imap.CapSet{afterLogin, caps} {
				if got := set.Has(imap.CapIdle); got != tc.wantIdle {
					t.Errorf("IDLE advertised = %v, want %v (caps %v)", got, tc.wantIdle, set)
				}
				for _, want := range []imap.Cap{imap.CapIMAP4rev1, imap.CapUIDPlus, imap.CapMove} {
					if !set.Has(want) {
						t.Errorf("%s not advertised (caps %v)", want, set)
					}
				}
			}
			// Message bodies pass through untouched, even lines that look like capabilities.
			raw := []byte("Subject: caps\r\n\r\n* CAPABILITY IMAP4rev1 IDLE\r\n[CAPABILITY IDLE]\r\n")
			if _, err := s.Append("INBOX", raw); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Select("INBOX", nil).Wait(); err != nil {
				t.Fatal(err)
			}
			msgs, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
			if err != nil {
				t.Fatal(err)
			}
			if len(msgs) != 1 || string(msgs[0].FindBodySection(&imap.FetchItemBodySection{})) != string(raw) {
				t.Errorf("body changed in transit")
			}
		})
	}
}

func TestMemServerConnectionCounts(t *testing.T) {
	s := StartMemServer(t, MemOptions{})
	var clients []*existsWatcher
	for range 3 {
		clients = append(clients, dialWatcher(t, s.Addr(), s.User(), s.Password(), "INBOX"))
	}
	if got := s.Connections(); got != 3 {
		t.Errorf("Connections() = %d, want 3", got)
	}
	// Administrative calls are not counted.
	if _, err := s.Append("INBOX", SampleInvoice(0)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Flags("INBOX", 1); err != nil {
		t.Fatal(err)
	}
	if got := s.MaxConnections(); got != 3 {
		t.Errorf("MaxConnections() = %d, want 3", got)
	}
	for _, c := range clients[:2] {
		if err := c.Logout().Wait(); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, "connections drop to 1", func() bool { return s.Connections() == 1 })

	if got := s.DropConnections(); got != 1 {
		t.Errorf("DropConnections() = %d, want 1", got)
	}
	select {
	case <-clients[2].Closed():
	case <-time.After(testTimeout):
		t.Fatal("client not closed after DropConnections")
	}
	waitUntil(t, "connections drop to 0", func() bool { return s.Connections() == 0 })
	if got, want := s.MaxConnections(), 3; got != want {
		t.Errorf("MaxConnections() = %d, want %d", got, want)
	}
	if got, want := s.TotalConnections(), 3; got != want {
		t.Errorf("TotalConnections() = %d, want %d", got, want)
	}
}

func TestMemServerConnLimit(t *testing.T) {
	s := StartMemServer(t, MemOptions{ConnLimit: 2})
	dialWatcher(t, s.Addr(), s.User(), s.Password(), "INBOX")
	dialWatcher(t, s.Addr(), s.User(), s.Password(), "INBOX")

	c, err := imapclient.DialInsecure(s.Addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	watchdog := time.AfterFunc(testTimeout, func() { _ = c.Close() })
	defer watchdog.Stop()
	defer c.Close()
	err = c.Login(s.User(), s.Password()).Wait()
	var imapErr *imap.Error
	if !errors.As(err, &imapErr) || imapErr.Code != imap.ResponseCodeAlert ||
		!strings.Contains(imapErr.Text, "Too many simultaneous connections") {
		t.Fatalf("third login: %v, want NO [ALERT] Too many simultaneous connections", err)
	}
}

func TestMemServerCloseClosesClients(t *testing.T) {
	s, err := NewMemServer(MemOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w := dialWatcher(t, s.Addr(), s.User(), s.Password(), "INBOX")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-w.Closed():
	case <-time.After(testTimeout):
		t.Fatal("client still open after Close")
	}
	if _, err := net.DialTimeout("tcp", s.Addr(), time.Second); err == nil {
		t.Error("server still accepts connections after Close")
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// waitUntil polls cond every few milliseconds until it holds, failing after testTimeout.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
