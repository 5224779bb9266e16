package spool

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mailhook/mailhook/store"
)

// Spool is the attachment spool of one state directory. Its methods are safe for concurrent use.
type Spool struct {
	dir      string
	incoming *Incoming // the daemon's, or a tool's own (Options.Shared)
	shared   bool
	grace    time.Duration
	every    time.Duration
	now      func() time.Time
	log      *slog.Logger
	done     chan string
	blobs    store.Blobs // where jobs' files live when the store is shared (Options.Blobs); nil: jobs/
}

// Jobs is the part of the outbox a Spool consults (of store.OutboxAdmin).
type Jobs interface {
	// Job returns the job with the given id, or an error wrapping store.ErrNotFound.
	Job(ctx context.Context, id string) (store.Job, []store.Attempt, error)
}

var _ Jobs = store.OutboxAdmin(nil)

// Defaults of Options.
const (
	// DefaultGrace is how old an unreferenced spool directory must be before Sweep removes it:
	// far longer than any fetch-to-commit, so a directory being written is never taken.
	DefaultGrace = time.Hour
	// DefaultSweep is how often Run sweeps the whole spool.
	DefaultSweep = 10 * time.Minute
)

// The layout under the state directory.
const (
	spoolDir       = "spool"    // the spool itself
	jobsDir        = "jobs"     // jobs/<job id>/<section>
	incomingDir    = "incoming" // incoming/<owner>/<message>/<section>
	daemonIncoming = "daemon"   // the daemon's own owner directory
	toolIncoming   = "tool-"    // prefix of a tool's owner directory
)

// Options tune a Spool; zero fields take the defaults.
type Options struct {
	// Shared opens the spool for a tool that runs beside the daemon (`mailhook replay`): its
	// incoming directory is a fresh one of its own, which Close removes, and the daemon's is left
	// alone. Without Shared the caller must hold the state directory's lock: Open empties the
	// daemon's incoming directory.
	Shared     bool
	Grace      time.Duration    // DefaultGrace
	SweepEvery time.Duration    // DefaultSweep
	Now        func() time.Time // time.Now
	Logger     *slog.Logger     // nil discards
	// Blobs, when set (a store shared by replicas), keeps the jobs' files in the store instead of
	// the state directory's jobs/, so any replica can deliver any job; incoming files stay local.
	Blobs store.Blobs
}

// validJobID reports whether a job id can name a spool directory (store.JobID and
// store.ReplayJobID produce such ids).
func validJobID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for _, c := range []byte(id) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// validSection reports whether sec is an IMAP part number (RFC 3501 §6.4.5), e.g. "2" or "1.3".
func validSection(sec string) bool {
	if sec == "" || len(sec) > 256 {
		return false
	}
	for f := range strings.SplitSeq(sec, ".") {
		if f == "" || len(f) > 9 || f[0] == '0' {
			return false
		}
		for _, c := range []byte(f) {
			if c < '0' || c > '9' {
				return false
			}
		}
	}
	return true
}

// Open opens (creating it with mode 0700) the attachment spool of the state directory stateDir.
// Without Options.Shared it empties the daemon's incoming directory: what is there was fetched for
// messages whose commit never happened (the process died), and those messages are fetched again.
func Open(stateDir string, opts Options) (*Spool, error) {
	s := &Spool{dir: filepath.Join(stateDir, spoolDir), shared: opts.Shared, grace: opts.Grace,
		every: opts.SweepEvery, now: opts.Now, log: opts.Logger, done: make(chan string, 1024),
		blobs: opts.Blobs}
	if s.grace <= 0 {
		s.grace = DefaultGrace
	}
	if s.every <= 0 {
		s.every = DefaultSweep
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	for _, d := range []string{filepath.Join(s.dir, jobsDir), filepath.Join(s.dir, incomingDir)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("attachment spool: %w", err)
		}
	}
	if s.shared {
		d, err := os.MkdirTemp(filepath.Join(s.dir, incomingDir), toolIncoming)
		if err != nil {
			return nil, fmt.Errorf("attachment spool: %w", err)
		}
		s.incoming = &Incoming{dir: d}
		return s, nil
	}
	s.incoming = &Incoming{dir: filepath.Join(s.dir, incomingDir, daemonIncoming)}
	if err := s.incoming.remove(); err != nil {
		return nil, err
	}
	return s, nil
}

// Incoming is where this process's watchers stream attachment content before a commit: the
// daemon's incoming directory, or with Options.Shared the tool's own.
func (s *Spool) Incoming() *Incoming { return s.incoming }

// Close removes a shared spool's own incoming directory (a tool that dies first leaves it to the
// daemon's sweep, once it is older than Options.Grace). It does nothing for the daemon's spool.
func (s *Spool) Close() error {
	if !s.shared {
		return nil
	}
	return s.incoming.remove()
}

// jobDir returns the directory of a job's files, or an error for an id unfit for a file name.
func (s *Spool) jobDir(id string) (string, error) {
	if !validJobID(id) {
		return "", fmt.Errorf("attachment spool: job id %q cannot name a directory", id)
	}
	return filepath.Join(s.dir, jobsDir, id), nil
}

// Attach makes the spooled files (IMAP section → file, as watcher.Event.Spooled gives them) the
// files of job id, by hard link (by copy where links fail), replacing files the job already had
// (a message processed again after a failed commit), and fsyncs the directories, so the job may
// commit referring to them. The source files are left in place. With Options.Blobs the files are
// streamed into the store's blobs instead.
func (s *Spool) Attach(ctx context.Context, id string, files map[string]string) error {
	dir, err := s.jobDir(id)
	if err != nil {
		return err
	}
	if s.blobs != nil {
		return s.attachBlobs(ctx, id, files)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("attachment spool: %w", err)
	}
	for sec, src := range files {
		if !validSection(sec) {
			return fmt.Errorf("attachment spool: %q is not an IMAP section", sec)
		}
		dst := filepath.Join(dir, sec)
		if err := os.Remove(dst); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("attachment spool: %w", err)
		}
		if err := os.Link(src, dst); err != nil {
			if err := copyFile(src, dst); err != nil {
				return fmt.Errorf("attachment spool: %w", err)
			}
		}
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("attachment spool: %w", err)
	}
	if err := syncDir(filepath.Dir(dir)); err != nil {
		return fmt.Errorf("attachment spool: %w", err)
	}
	return nil
}

// OpenFile opens the file of section sec of job id, for reading at any offset (an error wrapping
// fs.ErrNotExist when there is none). The sender opens it on every attempt and never changes it;
// ctx bounds the reads of a file in the store's blobs.
func (s *Spool) OpenFile(ctx context.Context, id, sec string) (store.Blob, error) {
	dir, err := s.jobDir(id)
	if err != nil {
		return nil, err
	}
	if !validSection(sec) {
		return nil, fmt.Errorf("attachment spool: %q is not an IMAP section", sec)
	}
	if s.blobs != nil {
		return s.blobs.OpenBlob(ctx, id+"/"+sec)
	}
	f, err := os.Open(filepath.Join(dir, sec))
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &file{File: f, size: fi.Size()}, nil
}

// file is a job's file in the state directory, as a store.Blob.
type file struct {
	*os.File
	size int64
}

func (f *file) Size() int64 { return f.size }

// attachBlobs streams the spooled files into the store's blobs of job id (Attach).
func (s *Spool) attachBlobs(ctx context.Context, id string, files map[string]string) error {
	for sec, src := range files {
		if !validSection(sec) {
			return fmt.Errorf("attachment spool: %q is not an IMAP section", sec)
		}
		f, err := os.Open(src)
		if err != nil {
			return fmt.Errorf("attachment spool: %w", err)
		}
		_, err = s.blobs.PutBlob(ctx, id+"/"+sec, f)
		f.Close()
		if err != nil {
			return fmt.Errorf("attachment spool: %w", err)
		}
	}
	return nil
}

// Remove deletes the files of job id (nothing when it has none).
func (s *Spool) Remove(ctx context.Context, id string) error {
	dir, err := s.jobDir(id)
	if err != nil {
		return err
	}
	if s.blobs != nil {
		if _, err := s.blobs.DeleteBlobs(ctx, id+"/"); err != nil {
			return fmt.Errorf("attachment spool: %w", err)
		}
		return nil
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("attachment spool: %w", err)
	}
	return nil
}

// Done tells Run that job id was delivered, so its files go as soon as the outbox says it is
// done. It never blocks: when Run is behind, the next full sweep removes them.
func (s *Spool) Done(id string) {
	select {
	case s.done <- id:
	default:
	}
}

// Sweep removes the files of jobs that are done or no longer in the outbox (the latter only once
// older than Grace, as a job's files are linked just before it commits), and incoming
// directories older than Grace. It returns how many directories it removed; it goes on past
// errors and returns the first.
func (s *Spool) Sweep(ctx context.Context, jobs Jobs) (int, error) {
	var first error
	keep := func(err error) {
		if first == nil {
			first = err
		}
	}
	removed := 0
	cut := s.now().Add(-s.grace)
	if s.blobs != nil {
		n, err := s.blobs.SweepJobBlobs(ctx, cut)
		if err != nil {
			keep(fmt.Errorf("attachment spool: %w", err))
		}
		removed += int(n)
	}
	entries, err := os.ReadDir(filepath.Join(s.dir, jobsDir))
	if err != nil {
		keep(fmt.Errorf("attachment spool: %w", err))
	}
	for _, e := range entries {
		if ctx.Err() != nil {
			return removed, ctx.Err()
		}
		path := filepath.Join(s.dir, jobsDir, e.Name())
		j, _, err := jobs.Job(ctx, e.Name())
		switch {
		case errors.Is(err, store.ErrNotFound):
			if !newerThan(path, cut) {
				removed += s.removeDir(path, "job not in the outbox", &first)
			}
		case err != nil:
			keep(err)
		case j.State == store.StateDone:
			removed += s.removeDir(path, "job done", &first)
		}
	}
	entries, err = os.ReadDir(filepath.Join(s.dir, incomingDir))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		keep(fmt.Errorf("attachment spool: %w", err))
	}
	for _, e := range entries {
		path := filepath.Join(s.dir, incomingDir, e.Name())
		if e.Name() == daemonIncoming {
			sub, _ := os.ReadDir(path)
			for _, m := range sub {
				if p := filepath.Join(path, m.Name()); !newerThan(p, cut) {
					removed += s.removeDir(p, "message never committed", &first)
				}
			}
			continue
		}
		if !newerThan(path, cut) {
			removed += s.removeDir(path, "message never committed", &first)
		}
	}
	return removed, first
}

func (s *Spool) removeDir(path, why string, first *error) int {
	if err := os.RemoveAll(path); err != nil {
		if *first == nil {
			*first = fmt.Errorf("attachment spool: %w", err)
		}
		return 0
	}
	s.log.Debug("attachment spool removed", "dir", filepath.Base(path), "reason", why)
	return 1
}

// newerThan reports whether path or anything directly in it was modified after cut (a spool
// directory is one level deep). An unreadable entry counts as new: it is left alone.
func newerThan(path string, cut time.Time) bool {
	fi, err := os.Stat(path)
	if err != nil {
		return !errors.Is(err, fs.ErrNotExist)
	}
	if fi.ModTime().After(cut) {
		return true
	}
	if !fi.IsDir() {
		return false
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return true
	}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil || info.ModTime().After(cut) {
			return true
		}
	}
	return false
}

// Run sweeps the spool at once and then every SweepEvery, and removes the files of each job
// reported by Done as soon as the outbox records it done (checking again every second for up to
// a minute, for an outbox that records outcomes a little later). It returns nil when ctx is done.
func (s *Spool) Run(ctx context.Context, jobs Jobs) error {
	sweep := func() {
		n, err := s.Sweep(ctx, jobs)
		if err != nil && ctx.Err() == nil {
			s.log.Warn("attachment spool sweep failed; will retry", "err", err)
		}
		if n > 0 {
			s.log.Info("attachment spool swept", "removed", n)
		}
	}
	sweep()
	tick := time.NewTicker(s.every)
	defer tick.Stop()
	recheck := time.NewTicker(time.Second)
	defer recheck.Stop()
	pending := map[string]int{} // job id → checks left
	check := func(id string) {
		j, _, err := jobs.Job(ctx, id)
		switch {
		case errors.Is(err, store.ErrNotFound) || (err == nil && j.State == store.StateDone):
			if err := s.Remove(ctx, id); err != nil {
				s.log.Warn("cannot remove a delivered job's attachment spool; the sweep will retry", "job", id, "err", err)
			}
			delete(pending, id)
		case err == nil && j.State != store.StateInFlight && j.State != store.StatePending:
			delete(pending, id) // dead or held after all: kept
		default:
			if pending[id]--; pending[id] <= 0 {
				delete(pending, id)
			}
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case id := <-s.done:
			pending[id] = 60
			check(id)
		case <-recheck.C:
			for id := range pending {
				check(id)
			}
		case <-tick.C:
			sweep()
		}
	}
}

// ForReading returns the spool of the state directory stateDir for reading jobs' files only
// (OpenFile), as a tool that shows jobs needs: it creates nothing and empties nothing. blobs is
// Options.Blobs.
func ForReading(stateDir string, blobs store.Blobs) *Spool {
	return &Spool{dir: filepath.Join(stateDir, spoolDir), shared: true, blobs: blobs}
}
