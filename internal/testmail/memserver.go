package testmail

import (
	"fmt"
	"log/slog"
	"net"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/mailhook/mailhook/internal/demo"
)

// Default credentials of the MemServer's single user (those of the demo's server).
const (
	DefaultUser     = demo.DefaultUser
	DefaultPassword = demo.DefaultPassword
)

// MemOptions configures a MemServer. The zero value is a server with user DefaultUser, password
// DefaultPassword, an empty INBOX and IDLE.
type MemOptions struct {
	// User and Password are the credentials of the only account; empty means DefaultUser and
	// DefaultPassword.
	User, Password string
	// Mailboxes are created empty in addition to INBOX, which always exists.
	Mailboxes []string
	// NoIdle hides IDLE from every CAPABILITY list, so a client must poll (RFC 2177 §3: a client
	// uses IDLE only when the server advertises it).
	NoIdle bool
	// ConnLimit, when positive, makes LOGIN fail with
	// "NO [ALERT] Too many simultaneous connections. (Failure)" (Gmail's wording) while more than
	// ConnLimit client connections are open, counting the one logging in.
	ConnLimit int
	// Logger receives the server's internal errors at debug level; nil discards them.
	Logger *slog.Logger
}

// MemServer is the demo's in-memory IMAP server (demo.IMAPServer: one user, IMAP4rev1, IDLE
// that never misses an update, NAMESPACE, UIDPLUS, MOVE; no CONDSTORE and no ID — use Dovecot for
// those) with what tests add: connection counts and a limit, dropping every connection, hiding
// IDLE, and reading a message's flags.
//
// Administrative calls (Append, Flags, …) do not open TCP connections: Connections and
// MaxConnections count only the clients under test.
type MemServer struct {
	*demo.IMAPServer
	opts    MemOptions
	admin   *pipeListener
	tracker *connTracker
}

// NewMemServer starts a MemServer on 127.0.0.1 on a free port. Call Close when done.
func NewMemServer(opts MemOptions) (*MemServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for imap: %w", err)
	}
	s := &MemServer{opts: opts, admin: newPipeListener(), tracker: newConnTracker()}
	srv, err := demo.NewIMAPServer(demo.IMAPOptions{
		User:      opts.User,
		Password:  opts.Password,
		Mailboxes: opts.Mailboxes,
		Logger:    opts.Logger,
		Listener:  &trackingListener{Listener: ln, tracker: s.tracker, noIdle: opts.NoIdle},
		NewSession: func(base *demo.Session) imapserver.Session {
			return &memSession{Session: base, server: s}
		},
	})
	if err != nil {
		return nil, err
	}
	s.IMAPServer = srv
	srv.Serve(s.admin) // administrative sessions, outside the counts
	return s, nil
}

// StartMemServer starts a MemServer and closes it when the test ends.
func StartMemServer(t testing.TB, opts MemOptions) *MemServer {
	t.Helper()
	s, err := NewMemServer(opts)
	if err != nil {
		t.Fatalf("start in-memory IMAP server: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// Flags returns the sorted flags of the message with the given UID, read without changing them.
// imapmemserver stores keywords lower-cased.
func (s *MemServer) Flags(mailbox string, uid uint32) ([]string, error) {
	var flags []string
	err := s.adminSession(func(c *imapclient.Client) error {
		var err error
		flags, err = fetchFlags(c, mailbox, uid)
		return err
	})
	return flags, err
}

// Connections returns the number of client connections open now.
func (s *MemServer) Connections() int {
	open, _, _ := s.tracker.counts()
	return open
}

// MaxConnections returns the largest number of client connections that were open at once.
func (s *MemServer) MaxConnections() int {
	_, peak, _ := s.tracker.counts()
	return peak
}

// TotalConnections returns how many client connections the server has accepted.
func (s *MemServer) TotalConnections() int {
	_, _, total := s.tracker.counts()
	return total
}

// DropConnections closes every open client connection without a BYE, as a crashed server or a
// reset would, and returns how many it closed. The server keeps accepting new connections.
func (s *MemServer) DropConnections() int { return s.tracker.closeAll() }

func (s *MemServer) adminSession(fn func(*imapclient.Client) error) error {
	conn, err := s.admin.dial()
	if err != nil {
		return fmt.Errorf("connect to in-memory server: %w", err)
	}
	return withAdminSession(conn, s.User(), s.Password(), fn)
}

// memSession is the demo's session with a connection limit at LOGIN and, with NoIdle, an IDLE
// that is refused.
type memSession struct {
	*demo.Session
	server *MemServer
}

var _ imapserver.Session = (*memSession)(nil)

var errTooManyConnections = &imap.Error{
	Type: imap.StatusResponseTypeNo,
	Code: imap.ResponseCodeAlert,
	Text: "Too many simultaneous connections. (Failure)",
}

var errIdleNotAdvertised = &imap.Error{
	Type: imap.StatusResponseTypeNo,
	Code: imap.ResponseCodeCannot,
	Text: "IDLE is not advertised by this server",
}

func (s *memSession) Login(username, password string) error {
	if limit := s.server.opts.ConnLimit; limit > 0 && s.server.Connections() > limit {
		return errTooManyConnections
	}
	return s.Session.Login(username, password)
}

// Idle pushes updates like the demo's session. With MemOptions.NoIdle, a client that sends IDLE
// anyway gets a tagged NO after its DONE.
func (s *memSession) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	if s.server.opts.NoIdle {
		return errIdleNotAdvertised
	}
	return s.Session.Idle(w, stop)
}
