package testmail

import (
	"bytes"
	"cmp"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
)

// Default credentials of the MemServer's single user.
const (
	DefaultUser     = "demo@example.test"
	DefaultPassword = "demo"
)

// idlePollInterval is how often an idling MemServer session looks for updates to push.
const idlePollInterval = 10 * time.Millisecond

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

// MemServer is an in-memory IMAP4rev1 server (go-imap imapserver with imapmemserver) on a
// loopback port, with one user. It advertises IMAP4rev1, IDLE (unless NoIdle), NAMESPACE,
// UIDPLUS, MOVE, UNSELECT, ENABLE, SASL-IR, LITERAL-; it has no CONDSTORE and no ID (use Dovecot
// for those). Plain-text LOGIN is allowed without TLS.
//
// Unlike imapmemserver's own IDLE, which in v2.0.0-beta.8 can miss an update queued just before
// IDLE starts, an idling MemServer session checks for updates every 10 ms, so an EXISTS for an
// appended message always reaches an idling client.
//
// Administrative calls (Append, Flags, …) do not open TCP connections: Connections and
// MaxConnections count only the clients under test.
type MemServer struct {
	user, password string
	opts           MemOptions

	mem     *imapmemserver.User
	srv     *imapserver.Server
	ln      net.Listener
	admin   *pipeListener
	tracker *connTracker
	serving sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

// NewMemServer starts a MemServer on 127.0.0.1 on a free port. Call Close when done.
func NewMemServer(opts MemOptions) (*MemServer, error) {
	s := &MemServer{
		user:     cmp.Or(opts.User, DefaultUser),
		password: cmp.Or(opts.Password, DefaultPassword),
		opts:     opts,
		admin:    newPipeListener(),
		tracker:  newConnTracker(),
	}
	s.mem = imapmemserver.NewUser(s.user, s.password)
	for i, name := range append([]string{"INBOX"}, opts.Mailboxes...) {
		if i > 0 && name == "INBOX" {
			continue
		}
		if err := s.mem.Create(name, nil); err != nil {
			return nil, fmt.Errorf("create mailbox %q: %w", name, err)
		}
	}

	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s.srv = imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return &memSession{server: s}, nil, nil
		},
		Caps: imap.CapSet{
			imap.CapIMAP4rev1: {},
			imap.CapNamespace: {},
			imap.CapUIDPlus:   {},
			imap.CapMove:      {},
		},
		Logger:       slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
		InsecureAuth: true,
	})

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for imap: %w", err)
	}
	s.ln = &trackingListener{Listener: ln, tracker: s.tracker, noIdle: opts.NoIdle}
	// imapserver.Server.Close races with a Serve that has not reached its accept loop yet
	// (beta.8 adds to a WaitGroup that Close may already be waiting on), so return only once
	// both listeners are being accepted on.
	for _, l := range []net.Listener{s.ln, s.admin} {
		sl := &signalListener{Listener: l, accepting: make(chan struct{})}
		s.serving.Add(1)
		go func() {
			defer s.serving.Done()
			_ = s.srv.Serve(sl)
		}()
		<-sl.accepting
	}
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

// Addr returns the server's "127.0.0.1:port".
func (s *MemServer) Addr() string { return s.ln.Addr().String() }

// User returns the login name of the server's only user.
func (s *MemServer) User() string { return s.user }

// Password returns the password of the server's only user.
func (s *MemServer) Password() string { return s.password }

// Append stores raw in mailbox, as an APPEND from another client would, and returns its UID.
// Clients that selected the mailbox learn of it through EXISTS (pushed during IDLE, otherwise
// with their next command).
func (s *MemServer) Append(mailbox string, raw []byte) (uint32, error) {
	data, err := s.mem.Append(mailbox, bytes.NewReader(raw), &imap.AppendOptions{})
	if err != nil {
		return 0, fmt.Errorf("append to %q: %w", mailbox, err)
	}
	return uint32(data.UID), nil
}

// CreateMailbox creates an empty mailbox. A mailbox that was deleted and is created again gets a
// new UIDVALIDITY (RFC 3501 §2.3.1.1).
func (s *MemServer) CreateMailbox(name string) error {
	if err := s.mem.Create(name, nil); err != nil {
		return fmt.Errorf("create mailbox %q: %w", name, err)
	}
	return nil
}

// DeleteMailbox deletes a mailbox and its messages.
func (s *MemServer) DeleteMailbox(name string) error {
	if err := s.mem.Delete(name); err != nil {
		return fmt.Errorf("delete mailbox %q: %w", name, err)
	}
	return nil
}

// UIDValidity returns the mailbox's UIDVALIDITY.
func (s *MemServer) UIDValidity(mailbox string) (uint32, error) {
	data, err := s.mem.Status(mailbox, &imap.StatusOptions{UIDValidity: true})
	if err != nil {
		return 0, fmt.Errorf("status %q: %w", mailbox, err)
	}
	return data.UIDValidity, nil
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

// Close stops the server and closes every connection. It is safe to call more than once.
func (s *MemServer) Close() error {
	s.closeOnce.Do(func() {
		s.closeErr = s.srv.Close()
		_ = s.admin.Close()
		s.serving.Wait()
	})
	return s.closeErr
}

func (s *MemServer) adminSession(fn func(*imapclient.Client) error) error {
	conn, err := s.admin.dial()
	if err != nil {
		return fmt.Errorf("connect to in-memory server: %w", err)
	}
	return withAdminSession(conn, s.user, s.password, fn)
}

// memSession is an imapmemserver session with a connection limit at LOGIN and an IDLE that
// polls. The embedded UserSession is nil until LOGIN succeeds; imapserver calls no other method
// before that.
type memSession struct {
	*imapmemserver.UserSession
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
	if err := s.server.mem.Login(username, password); err != nil {
		return err
	}
	s.UserSession = imapmemserver.NewUserSession(s.server.mem)
	return nil
}

// Idle pushes updates (EXISTS, EXPUNGE, FETCH FLAGS) to the client until stop is closed. It
// polls instead of waiting on imapmemserver's update signal, which beta.8 can lose when the
// update is queued just before IDLE begins.
//
// With MemOptions.NoIdle, a client that sends IDLE anyway gets a tagged NO after its DONE.
func (s *memSession) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	if s.server.opts.NoIdle {
		return errIdleNotAdvertised
	}
	return pollIdle(s.UserSession, w, stop)
}

// pollIdle serves IDLE for an imapmemserver session by polling every idlePollInterval until stop
// is closed, so an update queued just before IDLE began is still pushed.
func pollIdle(us *imapmemserver.UserSession, w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	ticker := time.NewTicker(idlePollInterval)
	defer ticker.Stop()
	for {
		if err := us.Poll(w, true); err != nil {
			return err
		}
		select {
		case <-stop:
			return nil
		case <-ticker.C:
		}
	}
}

// Close releases the session's mailbox view, if any.
func (s *memSession) Close() error {
	if s.UserSession == nil {
		return nil
	}
	return s.UserSession.Close()
}

// signalListener closes accepting when Accept is first called.
type signalListener struct {
	net.Listener
	accepting chan struct{}
	once      sync.Once
}

func (l *signalListener) Accept() (net.Conn, error) {
	l.once.Do(func() { close(l.accepting) })
	return l.Listener.Accept()
}
