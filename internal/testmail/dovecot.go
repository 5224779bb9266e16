package testmail

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// RequireDovecotEnv names the environment variable that turns a missing or unusable Dovecot
// from a skipped test into a failed one. CI sets MAILHOOK_REQUIRE_DOVECOT=1.
const RequireDovecotEnv = "MAILHOOK_REQUIRE_DOVECOT"

// Timeouts of the Dovecot process lifecycle.
const (
	dovecotStartTimeout = 15 * time.Second
	dovecotStopTimeout  = 10 * time.Second
	dovecotPollInterval = 20 * time.Millisecond
)

// dovecotMailUID is the uid and gid that owns the mail folders (nobody/nogroup on Debian).
const dovecotMailUID = 65534

// dovecotAdminIP is the source address of the Dovecot's own administrative sessions. Dovecot logs
// the remote IP of every session, so LogoutBytes can leave these sessions out of its sums.
const dovecotAdminIP = "127.0.0.2"

// dovecotCapsWithoutIdle is Dovecot 2.3.19's post-login capability list without IDLE. It is set
// as imap_capability with DovecotOptions.NoIdle; Dovecot still accepts an IDLE command.
const dovecotCapsWithoutIdle = "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE SORT SORT=DISPLAY " +
	"THREAD=REFERENCES THREAD=REFS THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT " +
	"CHILDREN NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES " +
	"WITHIN CONTEXT=SEARCH LIST-STATUS BINARY MOVE SNIPPET=FUZZY PREVIEW=FUZZY PREVIEW STATUS=SIZE " +
	"SAVEDATE LITERAL+ NOTIFY"

// DovecotOptions configures a throwaway Dovecot. The zero value gives user DefaultUser with
// password DefaultPassword, an empty INBOX, IDLE, and "in=%i out=%o" logout lines.
type DovecotOptions struct {
	// User and Password are the credentials of the only passwd-file user; empty means DefaultUser
	// and DefaultPassword.
	User, Password string
	// Mailboxes are created empty at the first start, in addition to INBOX.
	Mailboxes []string
	// NoIdle sets imap_capability to Dovecot's list without IDLE, so a client must poll. Dovecot
	// still answers an IDLE command; only the advertisement goes.
	NoIdle bool
	// Capability, when set, is imap_capability: the post-login capability list Dovecot
	// advertises (it still accepts the commands left out; clients just do not use them).
	Capability string
	// LogoutFormat is imap_logout_format; empty means "in=%i out=%o" (bytes received and sent per
	// session), which LogoutBytes sums.
	LogoutFormat string
	// OAuth2IntrospectionURL, when set, enables XOAUTH2 and OAUTHBEARER checked against this
	// token introspection endpoint (RFC 7662, POST token=…), which must answer JSON with
	// "active": true and "email": the user. Password login keeps working.
	OAuth2IntrospectionURL string
}

// Dovecot is a throwaway Dovecot 2.3 IMAP server on a free 127.0.0.1 port, run unprivileged: its
// configuration, runtime, state, log and mail live in one folder, its mail processes run as uid
// 65534 and its login processes as dovenull. Starting it needs root (Dovecot drops privileges
// itself) and a `dovecot` binary.
//
// Administrative calls (Append, Flags, …) each use their own short IMAP connection with a
// deadline, from 127.0.0.2, so LogoutBytes can tell them from the clients under test.
type Dovecot struct {
	dir, runDir, conf string
	addr              string
	user, password    string
	dovecotBin        string

	mu      sync.Mutex // serialises Start, Stop and Close
	cmd     *exec.Cmd  // nil while stopped
	exited  chan struct{}
	closed  bool
	removed bool
}

// DovecotAvailable reports whether a Dovecot server can be started here, and why not.
func DovecotAvailable() error {
	if _, err := lookBinary("dovecot"); err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return errors.New("dovecot test server needs root to drop privileges to its mail and login users")
	}
	return nil
}

// StartDovecot starts a Dovecot whose files live in t.TempDir() and stops it when the test ends.
// When Dovecot is unavailable it skips the test, or fails it if MAILHOOK_REQUIRE_DOVECOT=1.
func StartDovecot(t testing.TB, opts DovecotOptions) *Dovecot {
	t.Helper()
	if err := DovecotAvailable(); err != nil {
		if os.Getenv(RequireDovecotEnv) == "1" {
			t.Fatalf("%s=1 but: %v", RequireDovecotEnv, err)
		}
		t.Skipf("dovecot unavailable: %v", err)
	}
	dir := t.TempDir()
	// The auth process runs as user dovecot and must traverse every folder above the passwd
	// file; t.TempDir makes them 0700.
	for _, p := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatalf("start dovecot: %v", err)
		}
	}
	d, err := NewDovecot(dir, opts)
	if err != nil {
		t.Fatalf("start dovecot: %v", err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("stop dovecot: %v", err)
		}
	})
	return d
}

// NewDovecot writes a configuration into dir (which must exist and, with every folder above it,
// be traversable by user dovecot) and starts Dovecot. Call Close when done.
func NewDovecot(dir string, opts DovecotOptions) (*Dovecot, error) {
	if err := DovecotAvailable(); err != nil {
		return nil, err
	}
	dovecotBin, _ := lookBinary("dovecot")
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	// base_dir holds unix sockets, whose paths are limited to 108 bytes: keep it short.
	runDir, err := os.MkdirTemp("", "dovecot-")
	if err != nil {
		return nil, fmt.Errorf("create dovecot base_dir: %w", err)
	}
	d := &Dovecot{
		dir:        dir,
		runDir:     runDir,
		conf:       filepath.Join(dir, "dovecot.conf"),
		user:       cmp.Or(opts.User, DefaultUser),
		password:   cmp.Or(opts.Password, DefaultPassword),
		dovecotBin: dovecotBin,
	}
	if err := d.prepare(opts); err != nil {
		_ = os.RemoveAll(runDir)
		return nil, err
	}

	// The free port is found by binding and releasing it; another process may take it first, so
	// try a few.
	for attempt := 0; ; attempt++ {
		port, err := freePort()
		if err != nil {
			_ = os.RemoveAll(runDir)
			return nil, err
		}
		d.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if err := d.writeConfig(opts, port); err != nil {
			_ = os.RemoveAll(runDir)
			return nil, err
		}
		err = d.Start()
		if err == nil {
			break
		}
		if attempt < 3 && strings.Contains(err.Error(), "in use") {
			continue
		}
		_ = d.Close()
		return nil, err
	}

	for _, name := range opts.Mailboxes {
		if name == "INBOX" {
			continue
		}
		if err := d.CreateMailbox(name); err != nil {
			_ = d.Close()
			return nil, err
		}
	}
	return d, nil
}

// prepare creates the folders and the passwd file.
func (d *Dovecot) prepare(opts DovecotOptions) error {
	for _, sub := range []string{"state", "mail"} {
		if err := os.MkdirAll(filepath.Join(d.dir, sub), 0o755); err != nil {
			return fmt.Errorf("create dovecot folder: %w", err)
		}
	}
	for _, p := range []string{d.dir, d.runDir, filepath.Join(d.dir, "state")} {
		if err := os.Chmod(p, 0o755); err != nil {
			return fmt.Errorf("chmod dovecot folder: %w", err)
		}
	}
	if err := os.Chown(filepath.Join(d.dir, "mail"), dovecotMailUID, dovecotMailUID); err != nil {
		return fmt.Errorf("chown dovecot mail folder: %w", err)
	}
	if strings.ContainsAny(d.user+d.password, ":\n") {
		return errors.New("dovecot user and password must not contain ':' or newlines")
	}
	passwd := d.user + ":{PLAIN}" + d.password + "\n"
	if err := os.WriteFile(filepath.Join(d.dir, "passwd"), []byte(passwd), 0o644); err != nil {
		return fmt.Errorf("write dovecot passwd file: %w", err)
	}
	if opts.OAuth2IntrospectionURL != "" {
		oauth := "introspection_mode = post\n" +
			"introspection_url = " + opts.OAuth2IntrospectionURL + "\n" +
			"username_attribute = email\n" +
			"active_attribute = active\n" +
			"active_value = true\n"
		if err := os.WriteFile(filepath.Join(d.dir, "oauth2.conf"), []byte(oauth), 0o644); err != nil {
			return fmt.Errorf("write dovecot oauth2 file: %w", err)
		}
	}
	return nil
}

// writeConfig writes dovecot.conf for the given port; see LIBRARIES.md, "Dovecot as a real test
// server", for why each setting is there.
func (d *Dovecot) writeConfig(opts DovecotOptions, port int) error {
	var b strings.Builder
	set := func(k, v string) { fmt.Fprintf(&b, "%s = %s\n", k, v) }
	set("base_dir", d.runDir)
	set("state_dir", filepath.Join(d.dir, "state"))
	set("log_path", filepath.Join(d.dir, "dovecot.log"))
	set("protocols", "imap")
	set("listen", "127.0.0.1")
	set("ssl", "no")
	set("disable_plaintext_auth", "no")
	mechs := "plain login"
	if opts.OAuth2IntrospectionURL != "" {
		mechs += " xoauth2 oauthbearer"
	}
	set("auth_mechanisms", mechs)
	// A failed login is answered at once instead of after Dovecot's default 2 s, to keep tests
	// fast; the answer itself (NO [AUTHENTICATIONFAILED]) is unchanged.
	set("auth_failure_delay", "0")
	set("first_valid_uid", "0")
	set("default_login_user", "dovenull")
	set("default_internal_user", "dovecot")
	set("mail_location", "maildir:"+filepath.Join(d.dir, "mail", "%u"))
	set("mail_max_userip_connections", "1000")
	set("imap_logout_format", cmp.Or(opts.LogoutFormat, "in=%i out=%o"))
	// The remote IP in every mail process log line lets LogoutBytes skip admin sessions.
	set("mail_log_prefix", `"%s(%u)<%{pid}><%{session}><%r>: "`)
	switch {
	case opts.Capability != "":
		set("imap_capability", opts.Capability)
	case opts.NoIdle:
		set("imap_capability", dovecotCapsWithoutIdle)
	}
	// No login penalty per client IP after a failed login (up to 15 s in Dovecot 2.3): the auth
	// process cannot reach anvil's penalty socket, which disables the penalty.
	fmt.Fprintf(&b, "service anvil {\n  unix_listener anvil-auth-penalty {\n    mode = 0\n  }\n}\n")
	fmt.Fprintf(&b, `service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = %d
  }
  inet_listener imaps {
    port = 0
  }
}
`, port)
	if opts.OAuth2IntrospectionURL != "" {
		fmt.Fprintf(&b, "passdb {\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  args = %s\n}\n",
			filepath.Join(d.dir, "oauth2.conf"))
	}
	fmt.Fprintf(&b, "passdb {\n  driver = passwd-file\n  args = scheme=PLAIN username_format=%%u %s\n}\n",
		filepath.Join(d.dir, "passwd"))
	fmt.Fprintf(&b, "userdb {\n  driver = static\n  args = uid=%d gid=%d home=%s\n}\n",
		dovecotMailUID, dovecotMailUID, filepath.Join(d.dir, "mail", "%u"))
	if err := os.WriteFile(d.conf, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("write dovecot config: %w", err)
	}
	return nil
}

// Addr returns the server's "127.0.0.1:port"; it stays the same across Stop and Start.
func (d *Dovecot) Addr() string { return d.addr }

// User returns the login name of the server's only user.
func (d *Dovecot) User() string { return d.user }

// Password returns the password of the server's only user.
func (d *Dovecot) Password() string { return d.password }

// Dir returns the folder holding the configuration (dovecot.conf), log, state and mail.
func (d *Dovecot) Dir() string { return d.dir }

// Start starts a stopped server again, on the same port with the same mail, and returns once it
// greets clients. Starting a running server does nothing.
func (d *Dovecot) Start() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return errors.New("start dovecot: closed")
	}
	if d.cmd != nil {
		return nil
	}
	// The master's output goes to a file, not a pipe: its children inherit the descriptor, and
	// exec.Cmd.Wait would wait for every one of them to close a pipe.
	outPath := filepath.Join(d.dir, "dovecot.stderr")
	out, err := os.Create(outPath)
	if err != nil {
		return fmt.Errorf("start dovecot: %w", err)
	}
	defer out.Close() // the child has its own copy
	// -F keeps the master in the foreground as our child, so Stop can always reap or kill it.
	cmd := exec.Command(d.dovecotBin, "-F", "-c", d.conf)
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = dovecotSysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start dovecot: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	d.cmd, d.exited = cmd, exited
	stderr := func() string {
		b, _ := os.ReadFile(outPath)
		return strings.TrimSpace(string(b))
	}

	deadline := time.Now().Add(dovecotStartTimeout)
	for {
		if err := d.greets(); err == nil {
			return nil
		}
		select {
		case <-exited:
			d.cmd = nil
			return fmt.Errorf("start dovecot: exited: %s%s", stderr(), d.logTail())
		case <-time.After(dovecotPollInterval):
		}
		if time.Now().After(deadline) {
			d.stopLocked()
			return fmt.Errorf("start dovecot: no greeting on %s within %v%s", d.addr, dovecotStartTimeout, d.logTail())
		}
	}
}

// greets reports whether the server answers a connection with an untagged OK greeting.
func (d *Dovecot) greets() error {
	conn, err := net.DialTimeout("tcp", d.addr, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "* OK") {
		return fmt.Errorf("unexpected greeting %q", line)
	}
	return nil
}

// Stop stops the server (SIGTERM to all Dovecot processes, as `doveadm stop` does for the
// master, then SIGKILL if it has not exited within 10 s) and waits
// until its port refuses connections. Clients see their connections closed. Stopping a stopped
// server does nothing.
func (d *Dovecot) Stop() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stopLocked()
}

func (d *Dovecot) stopLocked() error {
	if d.cmd == nil {
		return nil
	}
	cmd, exited := d.cmd, d.exited
	d.cmd = nil

	ctx, cancel := context.WithTimeout(context.Background(), dovecotStopTimeout)
	defer cancel()
	// SIGTERM to the master is what `doveadm stop` does. It goes to the whole process group:
	// a mail process whose client is connected outlives the master otherwise, and an outage
	// test needs every client connection to end.
	var stopErr error
	if err := signalGroup(cmd.Process, syscall.SIGTERM); err != nil {
		stopErr = fmt.Errorf("signal dovecot: %w", err)
	}
	select {
	case <-exited:
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		<-exited
		stopErr = errors.Join(stopErr, errors.New("dovecot did not exit after SIGTERM; killed"))
	}
	_ = signalGroup(cmd.Process, syscall.SIGKILL) // stragglers; the group is usually empty by now
	// The master is gone; its login and mail processes follow it. Wait for the port to close so
	// that a Start right after does not find it in use.
	deadline := time.Now().Add(dovecotStopTimeout)
	for {
		conn, err := net.DialTimeout("tcp", d.addr, time.Second)
		if err != nil {
			break
		}
		_ = conn.Close()
		if time.Now().After(deadline) {
			return errors.Join(stopErr, fmt.Errorf("stop dovecot: %s still accepts connections", d.addr))
		}
		time.Sleep(dovecotPollInterval) // polling a port with a deadline; nothing to wait on
	}
	if stopErr != nil {
		return fmt.Errorf("stop dovecot: %w", stopErr)
	}
	return nil
}

// Close stops the server and removes its runtime folder (dir itself belongs to the caller).
// It is safe to call more than once.
func (d *Dovecot) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	err := d.stopLocked()
	d.closed = true
	if !d.removed {
		d.removed = true
		if rmErr := os.RemoveAll(d.runDir); rmErr != nil && err == nil {
			err = fmt.Errorf("remove dovecot base_dir: %w", rmErr)
		}
	}
	return err
}

// Log returns the contents of the server's log file.
func (d *Dovecot) Log() string {
	b, _ := os.ReadFile(filepath.Join(d.dir, "dovecot.log"))
	return string(b)
}

// logoutLine matches the end-of-session line of an IMAP process with the default logout format:
// `imap(user)<pid><session><rip>: Info: Disconnected: Logged out in=64 out=1017`.
var logoutLine = regexp.MustCompile(`imap\([^)]*\)<\d+><[^>]*><([^>]*)>: .*\bin=(\d+) out=(\d+)`)

// LogoutBytes returns the bytes received (in) and sent (out) by Dovecot over all finished IMAP
// sessions, from the logout lines in its log, leaving out the administrative sessions of this
// type (Append, Flags, …). A session counts once it has ended. It needs the in= and out= of the
// default LogoutFormat.
func (d *Dovecot) LogoutBytes() (in, out int64) {
	for _, m := range logoutLine.FindAllStringSubmatch(d.Log(), -1) {
		if m[1] == dovecotAdminIP {
			continue
		}
		i, _ := strconv.ParseInt(m[2], 10, 64)
		o, _ := strconv.ParseInt(m[3], 10, 64)
		in += i
		out += o
	}
	return in, out
}

// loginLine matches the login line of an IMAP session: `imap-login: Info: Login: user=<u>, …,
// rip=127.0.0.1, …`.
var loginLine = regexp.MustCompile(`imap-login: .*\bLogin: user=<[^>]*>.*\brip=([^,\s]+)`)

// OpenSessions returns how many IMAP sessions are open now, from the log: logins minus ended
// sessions, leaving out the administrative sessions of this type (Append, Flags, …). A session
// counts from its login line until its logout line.
func (d *Dovecot) OpenSessions() int {
	log := d.Log()
	n := 0
	for _, m := range loginLine.FindAllStringSubmatch(log, -1) {
		if m[1] != dovecotAdminIP {
			n++
		}
	}
	for _, m := range logoutLine.FindAllStringSubmatch(log, -1) {
		if m[1] != dovecotAdminIP {
			n--
		}
	}
	return n
}

// Append stores raw in mailbox with an APPEND and returns its UID (UIDPLUS). Dovecot pushes the
// EXISTS to idling clients about 0.5 s later.
func (d *Dovecot) Append(mailbox string, raw []byte) (uint32, error) {
	var uid uint32
	err := d.adminSession(func(c *imapclient.Client) error {
		var err error
		uid, err = appendMessage(c, mailbox, raw)
		return err
	})
	return uid, err
}

// AppendMany appends messages to mailbox in order, 100 to a session (each session has the
// administrative time limit), and returns their UIDs.
func (d *Dovecot) AppendMany(mailbox string, raws [][]byte) ([]uint32, error) {
	uids := make([]uint32, 0, len(raws))
	for chunk := range slices.Chunk(raws, 100) {
		err := d.adminSession(func(c *imapclient.Client) error {
			for _, raw := range chunk {
				uid, err := appendMessage(c, mailbox, raw)
				if err != nil {
					return err
				}
				uids = append(uids, uid)
			}
			return nil
		})
		if err != nil {
			return uids, err
		}
	}
	return uids, nil
}

// CreateMailbox creates a mailbox. After DeleteMailbox, the new mailbox has a new UIDVALIDITY.
func (d *Dovecot) CreateMailbox(name string) error {
	return d.adminSession(func(c *imapclient.Client) error {
		if err := c.Create(name, nil).Wait(); err != nil {
			return fmt.Errorf("create mailbox %q: %w", name, err)
		}
		return nil
	})
}

// DeleteMailbox deletes a mailbox and its messages. Dovecot refuses to delete INBOX.
func (d *Dovecot) DeleteMailbox(name string) error {
	return d.adminSession(func(c *imapclient.Client) error {
		if err := c.Delete(name).Wait(); err != nil {
			return fmt.Errorf("delete mailbox %q: %w", name, err)
		}
		return nil
	})
}

// UIDValidity returns the mailbox's UIDVALIDITY.
func (d *Dovecot) UIDValidity(mailbox string) (uint32, error) {
	var v uint32
	err := d.adminSession(func(c *imapclient.Client) error {
		var err error
		v, err = statusUIDValidity(c, mailbox)
		return err
	})
	return v, err
}

// AppendRecreated appends raw to a mailbox that was just deleted and created again while a
// session (the watcher's) still had the old one selected. Dovecot may then answer "NO Mailbox was
// deleted under us" while it tears the old one down, having appended the message or not (both
// were seen); a test is not about that race. So on that answer it looks for the message by its
// Message-ID and appends again only when it is missing, within 10 s, and returns its UID.
func (d *Dovecot) AppendRecreated(mailbox string, raw []byte) (uint32, error) {
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return 0, fmt.Errorf("append to %q: %w", mailbox, err)
	}
	id := strings.Trim(m.Header.Get("Message-Id"), "<> ")
	deadline := time.Now().Add(10 * time.Second)
	for {
		uid, err := d.Append(mailbox, raw)
		if err == nil || id == "" || !strings.Contains(err.Error(), "deleted under us") || time.Now().After(deadline) {
			return uid, err
		}
		time.Sleep(50 * time.Millisecond)
		var found uint32
		if ferr := d.adminSession(func(c *imapclient.Client) error {
			var err error
			found, err = searchMessageID(c, mailbox, id)
			return err
		}); ferr == nil && found != 0 {
			return found, nil
		}
	}
}

// Flags returns the sorted flags of the message with the given UID, read without changing them.
func (d *Dovecot) Flags(mailbox string, uid uint32) ([]string, error) {
	var flags []string
	err := d.adminSession(func(c *imapclient.Client) error {
		var err error
		flags, err = fetchFlags(c, mailbox, uid)
		return err
	})
	return flags, err
}

// AddFlags adds flags to the message with the given UID, as a user's client would.
func (d *Dovecot) AddFlags(mailbox string, uid uint32, flags ...string) error {
	return d.adminSession(func(c *imapclient.Client) error {
		if _, err := c.Select(mailbox, nil).Wait(); err != nil {
			return fmt.Errorf("select %q: %w", mailbox, err)
		}
		fl := make([]imap.Flag, len(flags))
		for i, f := range flags {
			fl[i] = imap.Flag(f)
		}
		err := c.Store(imap.UIDSetNum(imap.UID(uid)), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: fl}, nil).Close()
		if err != nil {
			return fmt.Errorf("store flags of uid %d in %q: %w", uid, mailbox, err)
		}
		return nil
	})
}

func (d *Dovecot) adminSession(fn func(*imapclient.Client) error) error {
	dialer := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(dovecotAdminIP)}}
	conn, err := dialer.Dial("tcp", d.addr)
	if err != nil {
		return fmt.Errorf("connect to dovecot: %w", err)
	}
	return withAdminSession(conn, d.user, d.password, fn)
}

// logTail returns the last lines of the log, to explain a failed start.
func (d *Dovecot) logTail() string {
	lines := strings.Split(strings.TrimSpace(d.Log()), "\n")
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	if len(lines) == 1 && lines[0] == "" {
		return ""
	}
	return "; log: " + strings.Join(lines, " | ")
}

// lookBinary finds a Dovecot binary on PATH or in /usr/sbin and /usr/bin, which a non-login
// PATH may lack.
func lookBinary(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found (apt-get install dovecot-imapd)", name)
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
