package testmail

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// adminTimeout bounds every administrative IMAP session (Append, Flags, …). go-imap has no
// command deadlines, so a watchdog closes the connection when it expires.
const adminTimeout = 10 * time.Second

// errAdminTimeout is reported when the watchdog had to close an administrative session.
var errAdminTimeout = errors.New("testmail: administrative IMAP session timed out")

// withAdminSession logs in on conn, runs fn and logs out, all within adminTimeout. It always
// closes conn.
func withAdminSession(conn net.Conn, user, password string, fn func(*imapclient.Client) error) error {
	c := imapclient.New(conn, nil)
	timedOut := make(chan struct{})
	watchdog := time.AfterFunc(adminTimeout, func() {
		close(timedOut)
		_ = c.Close()
	})
	defer watchdog.Stop()
	defer c.Close()

	err := c.Login(user, password).Wait()
	if err != nil {
		err = fmt.Errorf("login: %w", err)
	} else {
		err = fn(c)
		if err == nil {
			err = c.Logout().Wait()
		}
	}
	select {
	case <-timedOut:
		return errAdminTimeout
	default:
		return err
	}
}

// appendMessage appends raw to mailbox and returns the UID the server assigned (UIDPLUS,
// RFC 4315 APPENDUID).
func appendMessage(c *imapclient.Client, mailbox string, raw []byte) (uint32, error) {
	cmd := c.Append(mailbox, int64(len(raw)), nil)
	if _, err := cmd.Write(raw); err != nil {
		_ = cmd.Close()
		return 0, fmt.Errorf("append to %q: %w", mailbox, err)
	}
	if err := cmd.Close(); err != nil {
		return 0, fmt.Errorf("append to %q: %w", mailbox, err)
	}
	data, err := cmd.Wait()
	if err != nil {
		return 0, fmt.Errorf("append to %q: %w", mailbox, err)
	}
	if data.UID == 0 {
		return 0, fmt.Errorf("append to %q: server returned no APPENDUID", mailbox)
	}
	return uint32(data.UID), nil
}

// fetchFlags returns the flags of the message with the given UID, sorted, without changing
// them (EXAMINE opens the mailbox read-only, RFC 3501 §6.3.2).
func fetchFlags(c *imapclient.Client, mailbox string, uid uint32) ([]string, error) {
	if _, err := c.Select(mailbox, &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		return nil, fmt.Errorf("examine %q: %w", mailbox, err)
	}
	msgs, err := c.Fetch(imap.UIDSetNum(imap.UID(uid)), &imap.FetchOptions{UID: true, Flags: true}).Collect()
	if err != nil {
		return nil, fmt.Errorf("fetch flags of uid %d in %q: %w", uid, mailbox, err)
	}
	for _, m := range msgs {
		if uint32(m.UID) != uid {
			continue // RFC 3501 §6.4.8: a server may return more than was asked for
		}
		flags := make([]string, 0, len(m.Flags))
		for _, f := range m.Flags {
			flags = append(flags, string(f))
		}
		slices.Sort(flags)
		return flags, nil
	}
	return nil, fmt.Errorf("fetch flags of uid %d in %q: no such message", uid, mailbox)
}

// statusUIDValidity returns the UIDVALIDITY of mailbox (RFC 3501 §6.3.10).
func statusUIDValidity(c *imapclient.Client, mailbox string) (uint32, error) {
	data, err := c.Status(mailbox, &imap.StatusOptions{UIDValidity: true}).Wait()
	if err != nil {
		return 0, fmt.Errorf("status %q: %w", mailbox, err)
	}
	return data.UIDValidity, nil
}

// searchMessageID returns the UID of a message in mailbox whose Message-ID header contains id,
// 0 when there is none.
func searchMessageID(c *imapclient.Client, mailbox, id string) (uint32, error) {
	if _, err := c.Select(mailbox, &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		return 0, fmt.Errorf("examine %q: %w", mailbox, err)
	}
	data, err := c.UIDSearch(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Message-Id", Value: id}}}, nil).Wait()
	if err != nil {
		return 0, fmt.Errorf("search %q for %s: %w", mailbox, id, err)
	}
	if uids := data.AllUIDs(); len(uids) > 0 {
		return uint32(uids[0]), nil
	}
	return 0, nil
}
