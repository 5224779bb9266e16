package demo

import (
	"bytes"
	"cmp"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
)

// Default credentials of the IMAPServer's single user.
const (
	DefaultUser     = "demo@example.test"
	DefaultPassword = "demo"
)

// idlePollInterval is how often an idling session looks for updates to push.
const idlePollInterval = 10 * time.Millisecond

// IMAPOptions configures an IMAPServer. The zero value is a server on a new 127.0.0.1 port with
// user DefaultUser, password DefaultPassword and an empty INBOX.
type IMAPOptions struct {
	// User and Password are the credentials of the only account; empty means DefaultUser and
	// DefaultPassword.
	User, Password string
	// Mailboxes are created empty in addition to INBOX, which always exists.
	Mailboxes []string
	// Logger receives the server's internal errors at debug level; nil discards them.
	Logger *slog.Logger
	// Listener, when set, is served instead of a new listener on 127.0.0.1 (a test wraps one to
	// count, cut or rewrite connections). The server owns it from then on: Close closes it, and
	// so does a failing NewIMAPServer.
	Listener net.Listener
	// NewSession, when set, builds each connection's session around the standard one (for
	// instance to refuse some logins); it should embed base. Nil serves base as it is.
	NewSession func(base *Session) imapserver.Session
}

// IMAPServer is an in-memory IMAP4rev1 server (go-imap imapserver with imapmemserver) with one
// user. It advertises IMAP4rev1, IDLE, NAMESPACE, UIDPLUS, MOVE, UNSELECT, ENABLE, SASL-IR and
// LITERAL-; it has no CONDSTORE and no ID. Plain-text LOGIN is allowed without TLS, which is why
// it listens on loopback only.
//
// Unlike imapmemserver's own IDLE, which in v2.0.0-beta.8 can miss an update queued just before
// IDLE starts, an idling session checks for updates every 10 ms (see PollIdle), so an EXISTS for
// an appended message always reaches an idling client.
//
// Administrative calls (Append, CreateMailbox, …) act on the mail store directly and open no
// connection. All methods are safe for concurrent use.
type IMAPServer struct {
	user, password string

	mem     *imapmemserver.User
	srv     *imapserver.Server
	ln      net.Listener
	serving sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

// NewIMAPServer starts an IMAPServer and returns once it accepts connections. Call Close when
// done.
func NewIMAPServer(opts IMAPOptions) (*IMAPServer, error) {
	s := &IMAPServer{
		user:     cmp.Or(opts.User, DefaultUser),
		password: cmp.Or(opts.Password, DefaultPassword),
	}
	s.mem = imapmemserver.NewUser(s.user, s.password)
	for i, name := range append([]string{"INBOX"}, opts.Mailboxes...) {
		if i > 0 && name == "INBOX" {
			continue
		}
		if err := s.mem.Create(name, nil); err != nil {
			if opts.Listener != nil {
				_ = opts.Listener.Close()
			}
			return nil, fmt.Errorf("create mailbox %q: %w", name, err)
		}
	}

	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s.srv = imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			base := &Session{user: s.mem}
			if opts.NewSession != nil {
				return opts.NewSession(base), nil, nil
			}
			return base, nil, nil
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

	s.ln = opts.Listener
	if s.ln == nil {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("listen for imap: %w", err)
		}
		s.ln = ln
	}
	s.Serve(s.ln)
	return s, nil
}

// Serve serves l as well, until Close, and returns once l is being accepted on: the server
// answers on every listener it serves. Close closes l. Serve must not be called once Close has
// begun.
func (s *IMAPServer) Serve(l net.Listener) {
	// imapserver.Server.Close races with a Serve that has not reached its accept loop yet (beta.8
	// adds to a WaitGroup that Close may already be waiting on), so wait until it accepts, or
	// until it returned without ever accepting.
	sl := &signalListener{Listener: l, accepting: make(chan struct{})}
	returned := make(chan struct{})
	s.serving.Add(1)
	go func() {
		defer s.serving.Done()
		defer close(returned)
		_ = s.srv.Serve(sl)
	}()
	select {
	case <-sl.accepting:
	case <-returned:
	}
}

// Addr returns the address of the server's listener, "127.0.0.1:port" unless
// IMAPOptions.Listener says otherwise.
func (s *IMAPServer) Addr() string { return s.ln.Addr().String() }

// User returns the login name of the server's only user.
func (s *IMAPServer) User() string { return s.user }

// Password returns the password of the server's only user.
func (s *IMAPServer) Password() string { return s.password }

// Append stores raw in mailbox, as an APPEND from another client would, and returns its UID.
// Clients that selected the mailbox learn of it through EXISTS (pushed during IDLE, otherwise
// with their next command).
func (s *IMAPServer) Append(mailbox string, raw []byte) (uint32, error) {
	data, err := s.mem.Append(mailbox, bytes.NewReader(raw), &imap.AppendOptions{})
	if err != nil {
		return 0, fmt.Errorf("append to %q: %w", mailbox, err)
	}
	return uint32(data.UID), nil
}

// CreateMailbox creates an empty mailbox. A mailbox that was deleted and is created again gets a
// new UIDVALIDITY (RFC 3501 §2.3.1.1).
func (s *IMAPServer) CreateMailbox(name string) error {
	if err := s.mem.Create(name, nil); err != nil {
		return fmt.Errorf("create mailbox %q: %w", name, err)
	}
	return nil
}

// DeleteMailbox deletes a mailbox and its messages.
func (s *IMAPServer) DeleteMailbox(name string) error {
	if err := s.mem.Delete(name); err != nil {
		return fmt.Errorf("delete mailbox %q: %w", name, err)
	}
	return nil
}

// UIDValidity returns the mailbox's UIDVALIDITY.
func (s *IMAPServer) UIDValidity(mailbox string) (uint32, error) {
	data, err := s.mem.Status(mailbox, &imap.StatusOptions{UIDValidity: true})
	if err != nil {
		return 0, fmt.Errorf("status %q: %w", mailbox, err)
	}
	return data.UIDValidity, nil
}

// Close stops the server, closing every listener it serves and every connection. It is safe to
// call more than once.
func (s *IMAPServer) Close() error {
	s.closeOnce.Do(func() {
		s.closeErr = s.srv.Close()
		s.serving.Wait()
	})
	return s.closeErr
}

// Session is the standard session of an IMAPServer connection: LOGIN against the server's only
// user, then imapmemserver's mailbox operations, with an IDLE that polls (see PollIdle).
type Session struct {
	// UserSession is nil until LOGIN succeeds; imapserver calls no mailbox method before that.
	*imapmemserver.UserSession
	user *imapmemserver.User
}

var _ imapserver.Session = (*Session)(nil)

// Login checks the credentials against the server's only user.
func (s *Session) Login(username, password string) error {
	if err := s.user.Login(username, password); err != nil {
		return err
	}
	s.UserSession = imapmemserver.NewUserSession(s.user)
	return nil
}

// Idle pushes updates (EXISTS, EXPUNGE, FETCH FLAGS) to the client until stop is closed.
func (s *Session) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	return PollIdle(s.UserSession, w, stop)
}

// Close releases the session's mailbox view, if any.
func (s *Session) Close() error {
	if s.UserSession == nil {
		return nil
	}
	return s.UserSession.Close()
}

// PollIdle serves IDLE for an imapmemserver session: it pushes pending updates every 10 ms until
// stop is closed. imapmemserver's own Idle waits on an update signal that beta.8 can lose when
// the update is queued just before IDLE begins; polling cannot miss it.
func PollIdle(us *imapmemserver.UserSession, w *imapserver.UpdateWriter, stop <-chan struct{}) error {
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
