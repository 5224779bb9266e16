package demo

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// testTimeout bounds every wait in these tests.
const testTimeout = 10 * time.Second

// An EXISTS for a message appended right after the client sent IDLE reaches the client: the window
// in which imapmemserver's own IDLE (beta.8) loses the update. Repeated, since a race shows only
// sometimes.
func TestIMAPServerIdlePushesAppend(t *testing.T) {
	for run := range 40 {
		s, err := NewIMAPServer(IMAPOptions{})
		if err != nil {
			t.Fatal(err)
		}
		exists := make(chan uint32, 16)
		c, err := imapclient.DialInsecure(s.Addr(), &imapclient.Options{
			UnilateralDataHandler: &imapclient.UnilateralDataHandler{
				Mailbox: func(d *imapclient.UnilateralDataMailbox) {
					if d.NumMessages != nil {
						select {
						case exists <- *d.NumMessages:
						default:
						}
					}
				},
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		watchdog := time.AfterFunc(testTimeout, func() { _ = c.Close() })
		if err := c.Login(DefaultUser, DefaultPassword).Wait(); err != nil {
			t.Fatalf("run %d: login with the default credentials: %v", run, err)
		}
		if _, err := c.Select("INBOX", nil).Wait(); err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		idle, err := c.Idle()
		if err != nil {
			t.Fatalf("run %d: idle: %v", run, err)
		}
		if uid, err := s.Append("INBOX", Sample(run, SampleOptions{})); err != nil || uid != 1 {
			t.Fatalf("run %d: append: uid %d, %v", run, uid, err)
		}
		deadline := time.After(testTimeout)
		for n := uint32(0); n < 1; {
			select {
			case n = <-exists:
			case <-deadline:
				t.Fatalf("run %d: no EXISTS 1 within %v of the append", run, testTimeout)
			}
		}
		if err := idle.Close(); err != nil {
			t.Fatalf("run %d: idle done: %v", run, err)
		}
		if err := idle.Wait(); err != nil {
			t.Fatalf("run %d: idle: %v", run, err)
		}

		// Close ends the client's connection and stops accepting.
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		select {
		case <-c.Closed():
		case <-time.After(testTimeout):
			t.Fatalf("run %d: client still open after Close", run)
		}
		watchdog.Stop()
		if conn, err := net.DialTimeout("tcp", s.Addr(), time.Second); err == nil {
			_ = conn.Close()
			t.Fatalf("run %d: server still accepts connections after Close", run)
		}
	}
}

func TestIMAPServerRefusesWrongPassword(t *testing.T) {
	s, err := NewIMAPServer(IMAPOptions{User: "u@example.test", Password: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.User() != "u@example.test" || s.Password() != "pw" {
		t.Errorf("credentials %q/%q, want the configured ones", s.User(), s.Password())
	}
	c, err := imapclient.DialInsecure(s.Addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	watchdog := time.AfterFunc(testTimeout, func() { _ = c.Close() })
	defer watchdog.Stop()
	defer c.Close()
	err = c.Login("u@example.test", "wrong").Wait()
	var imapErr *imap.Error
	if !errors.As(err, &imapErr) || imapErr.Code != imap.ResponseCodeAuthenticationFailed {
		t.Fatalf("login with a wrong password: %v, want NO [AUTHENTICATIONFAILED]", err)
	}
}

// A mailbox that cannot be created fails the constructor and closes the listener it was given.
func TestIMAPServerBadMailboxClosesListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewIMAPServer(IMAPOptions{Listener: ln, Mailboxes: []string{"Work", "Work"}}); err == nil {
		t.Fatal("a duplicate mailbox was accepted")
	}
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("listener after a failed start: Accept = %v, want net.ErrClosed", err)
	}
}
