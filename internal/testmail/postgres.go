package testmail

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// RequirePostgresEnv names the environment variable that turns a missing or unusable PostgreSQL
// from a skipped test into a failed one. CI sets MAILHOOK_REQUIRE_POSTGRES=1.
const RequirePostgresEnv = "MAILHOOK_REQUIRE_POSTGRES"

// Timeouts of the PostgreSQL process lifecycle.
const (
	postgresInitTimeout  = 60 * time.Second
	postgresStartTimeout = 30 * time.Second
	postgresStopTimeout  = 15 * time.Second
	postgresPollInterval = 20 * time.Millisecond
	postgresAdminTimeout = 15 * time.Second
)

// postgresSuperuser is the bootstrap superuser initdb creates (-U), trusted on loopback.
const postgresSuperuser = "postgres"

// PostgresOptions configures a throwaway PostgreSQL cluster. The zero value gives a cluster tuned
// for tests: fsync, synchronous_commit and full_page_writes off (a crash of the machine loses the
// cluster, which the test throws away anyway).
type PostgresOptions struct {
	// Durable keeps PostgreSQL's defaults for fsync, synchronous_commit and full_page_writes, for
	// benchmarks that compare commit latencies with a durable SQLite.
	Durable bool
	// MaxConnections is max_connections; 0 means 200.
	MaxConnections int
}

// Postgres is a throwaway PostgreSQL cluster (Debian's postgresql package) on a free 127.0.0.1
// port: initdb into a folder, trust authentication on loopback only, no unix socket. Run as root,
// its processes run as the postgres user (initdb refuses to run as root); otherwise as the
// current user. Tests get a fresh database each with [Postgres.NewDatabase].
type Postgres struct {
	dir, data string
	bin       string // folder with initdb and postgres
	addr      string
	cred      *syscall.Credential // nil: run as ourselves
	opts      PostgresOptions

	dbSeq atomic.Int64 // names fresh databases

	mu     sync.Mutex // serialises Start, Stop and Close
	cmd    *exec.Cmd  // nil while stopped
	exited chan struct{}
	closed bool
}

// postgresBinDir finds the folder holding initdb and postgres: Debian keeps them in
// /usr/lib/postgresql/<major>/bin (the newest major wins), elsewhere they are on PATH.
func postgresBinDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return postgresMajor(dirs[i]) > postgresMajor(dirs[j]) })
	for _, d := range dirs {
		if isExecutable(filepath.Join(d, "initdb")) && isExecutable(filepath.Join(d, "postgres")) {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		d := filepath.Dir(p)
		if isExecutable(filepath.Join(d, "postgres")) {
			return d, nil
		}
	}
	return "", errors.New("initdb and postgres not found (apt-get install postgresql)")
}

// postgresMajor is the major version in a /usr/lib/postgresql/<major>/bin path, 0 if none.
func postgresMajor(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// postgresCredential is who the cluster runs as: the postgres user when we are root, else nil.
func postgresCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root needs a postgres user to run the cluster as: %w", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("postgres user has a non-numeric uid %q or gid %q", u.Uid, u.Gid)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// PostgresAvailable reports whether a PostgreSQL cluster can be started here, and why not.
func PostgresAvailable() error {
	if _, err := postgresBinDir(); err != nil {
		return err
	}
	_, err := postgresCredential()
	return err
}

// StartPostgres starts a cluster whose files live in t.TempDir() and stops it when the test ends.
// When PostgreSQL is unavailable it skips the test, or fails it if MAILHOOK_REQUIRE_POSTGRES=1.
func StartPostgres(t testing.TB, opts PostgresOptions) *Postgres {
	t.Helper()
	SkipUnlessPostgres(t)
	dir := t.TempDir()
	p, err := NewPostgres(dir, opts)
	if err != nil {
		t.Fatalf("start postgres: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("stop postgres: %v", err)
		}
	})
	return p
}

// SkipUnlessPostgres skips the test when no PostgreSQL cluster can be started here, or fails it
// if MAILHOOK_REQUIRE_POSTGRES=1.
func SkipUnlessPostgres(t testing.TB) {
	t.Helper()
	if err := PostgresAvailable(); err != nil {
		if os.Getenv(RequirePostgresEnv) == "1" {
			t.Fatalf("%s=1 but: %v", RequirePostgresEnv, err)
		}
		t.Skipf("postgres unavailable: %v", err)
	}
}

// NewPostgres creates a cluster in dir/data (dir must exist) and starts it. Run as root, dir
// and every folder above it are made traversable for the postgres user. Call Close when done.
func NewPostgres(dir string, opts PostgresOptions) (*Postgres, error) {
	bin, err := postgresBinDir()
	if err != nil {
		return nil, err
	}
	cred, err := postgresCredential()
	if err != nil {
		return nil, err
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	p := &Postgres{dir: dir, data: filepath.Join(dir, "data"), bin: bin, cred: cred, opts: opts}
	if err := p.initdb(); err != nil {
		return nil, err
	}
	// The free port is found by binding and releasing it; another process may take it first, so
	// try a few.
	for attempt := 0; ; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		p.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		err = p.Start()
		if err == nil {
			return p, nil
		}
		if attempt < 3 && strings.Contains(p.Log(), "in use") {
			continue
		}
		_ = p.Close()
		return nil, err
	}
}

// initdb creates the cluster's data folder.
func (p *Postgres) initdb() error {
	if p.cred != nil {
		// t.TempDir makes its folders 0700; the postgres user must reach dir and own it.
		for _, d := range []string{filepath.Dir(p.dir), p.dir} {
			if err := os.Chmod(d, 0o755); err != nil {
				return fmt.Errorf("initdb: %w", err)
			}
		}
		if err := os.Chown(p.dir, int(p.cred.Uid), int(p.cred.Gid)); err != nil {
			return fmt.Errorf("initdb: %w", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), postgresInitTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(p.bin, "initdb"),
		"-D", p.data, "-U", postgresSuperuser, "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	cmd.Dir = p.dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Addr returns the host:port the cluster listens on.
func (p *Postgres) Addr() string { return p.addr }

// Dir returns the folder holding the cluster (data/ and the server log).
func (p *Postgres) Dir() string { return p.dir }

// DSN returns a connection URL for the superuser to database (sslmode=disable: the cluster has no
// certificate).
func (p *Postgres) DSN(database string) string {
	return p.DSNAs(postgresSuperuser, "", database)
}

// DSNAs returns a connection URL for role (with password, if not empty) to database.
func (p *Postgres) DSNAs(role, password, database string) string {
	u := url.URL{Scheme: "postgres", Host: p.addr, Path: "/" + database, RawQuery: "sslmode=disable"}
	if password != "" {
		u.User = url.UserPassword(role, password)
	} else {
		u.User = url.User(role)
	}
	return u.String()
}

// Exec runs sql as the superuser in database (e.g. to create roles or revoke grants).
func (p *Postgres) Exec(database, sql string, args ...any) error {
	ctx, cancel := context.WithTimeout(context.Background(), postgresAdminTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.DSN(database))
	if err != nil {
		return fmt.Errorf("postgres admin connect: %w", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		return fmt.Errorf("postgres admin exec: %w", err)
	}
	return nil
}

// CreateDatabase creates an empty database with a fresh name and returns its name.
func (p *Postgres) CreateDatabase() (string, error) {
	name := fmt.Sprintf("test_%d", p.dbSeq.Add(1))
	if err := p.Exec("postgres", "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", err
	}
	return name, nil
}

// DropDatabase drops database, ending its sessions first.
func (p *Postgres) DropDatabase(name string) error {
	return p.Exec("postgres", "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
}

// NewDatabase creates an empty database for the test, dropped when the test ends (if the cluster
// still runs), and returns the superuser's DSN for it.
func (p *Postgres) NewDatabase(t testing.TB) string {
	t.Helper()
	name, err := p.CreateDatabase()
	if err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		if !p.Running() {
			return
		}
		if err := p.DropDatabase(name); err != nil {
			t.Errorf("drop database: %v", err)
		}
	})
	return p.DSN(name)
}

// Running reports whether the server process runs (it may be stopped with Stop).
func (p *Postgres) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil
}

// Start starts the server (again, after Stop) and waits until it accepts queries. The data is
// kept across Stop and Start.
func (p *Postgres) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errors.New("start postgres: closed")
	}
	if p.cmd != nil {
		return nil
	}
	_, port, _ := net.SplitHostPort(p.addr)
	args := []string{"-D", p.data, "-p", port,
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories=",
		"-c", "max_connections=" + strconv.Itoa(cmp.Or(p.opts.MaxConnections, 200)),
		"-c", "log_min_messages=warning",
	}
	if !p.opts.Durable {
		args = append(args, "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	}
	// The log goes to a file, not a pipe: the backends inherit the descriptor, and
	// exec.Cmd.Wait would wait for every one of them to close a pipe.
	logf, err := os.OpenFile(p.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	defer logf.Close() // the child has its own copy
	// The postmaster runs in the foreground as our child, so Stop can always reap or kill it.
	cmd := exec.Command(filepath.Join(p.bin, "postgres"), args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = p.dir
	cmd.SysProcAttr = postgresSysProcAttr(p.cred)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	p.cmd, p.exited = cmd, exited

	deadline := time.Now().Add(postgresStartTimeout)
	for {
		if err := p.ping(); err == nil {
			return nil
		}
		select {
		case <-exited:
			p.cmd = nil
			return fmt.Errorf("start postgres: exited: %s", p.logTail())
		case <-time.After(postgresPollInterval): // polling a starting server with a deadline
		}
		if time.Now().After(deadline) {
			_ = p.stopLocked()
			return fmt.Errorf("start postgres: not accepting queries on %s within %v: %s", p.addr, postgresStartTimeout, p.logTail())
		}
	}
}

// ping connects as the superuser and runs a query.
func (p *Postgres) ping() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.DSN("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return conn.Ping(ctx)
}

// Stop shuts the server down (fast shutdown: sessions are ended, nothing is lost) and waits for
// it to exit. Start brings it back with the same data.
func (p *Postgres) Stop() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stopLocked()
}

func (p *Postgres) stopLocked() error {
	if p.cmd == nil {
		return nil
	}
	cmd, exited := p.cmd, p.exited
	p.cmd = nil
	// SIGINT is the postmaster's fast shutdown; SIGQUIT its immediate one.
	var stopErr error
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		stopErr = fmt.Errorf("signal postgres: %w", err)
	}
	select {
	case <-exited:
	case <-time.After(postgresStopTimeout):
		_ = cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-exited:
		case <-time.After(postgresStopTimeout):
			_ = cmd.Process.Kill()
			<-exited
		}
		stopErr = errors.Join(stopErr, fmt.Errorf("postgres did not exit after SIGINT within %v", postgresStopTimeout))
	}
	if stopErr != nil {
		return fmt.Errorf("stop postgres: %w", stopErr)
	}
	return nil
}

// Close stops the server; the folder belongs to the caller. It is safe to call more than once.
func (p *Postgres) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	return p.stopLocked()
}

func (p *Postgres) logPath() string { return filepath.Join(p.dir, "postgres.log") }

// Log returns the server's log (warnings and errors only).
func (p *Postgres) Log() string {
	b, _ := os.ReadFile(p.logPath())
	return string(b)
}

// logTail is the end of the server log, for error messages.
func (p *Postgres) logTail() string {
	s := strings.TrimSpace(p.Log())
	if len(s) > 2000 {
		s = "…" + s[len(s)-2000:]
	}
	return s
}
