package spool

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Incoming is an incoming directory: where a watcher streams the attachment content of a message
// before the message commits, one directory per message (Message). The daemon has one
// (incoming/daemon), each tool running beside it another; Sweep removes what a crash left there.
type Incoming struct {
	dir string
}

// Message creates the directory of one message's attachment content; the prefix of its name (the
// UIDVALIDITY and UID) is for people looking at the spool.
func (in *Incoming) Message(uidvalidity, uid uint32) (*Message, error) {
	if err := os.MkdirAll(in.dir, 0o700); err != nil {
		return nil, fmt.Errorf("attachment spool: %w", err)
	}
	dir, err := os.MkdirTemp(in.dir, fmt.Sprintf("%d-%d-", uidvalidity, uid))
	if err != nil {
		return nil, fmt.Errorf("attachment spool: %w", err)
	}
	return &Message{dir: dir, files: map[string]string{}}, nil
}

// remove deletes the incoming directory with everything in it.
func (in *Incoming) remove() error {
	if err := os.RemoveAll(in.dir); err != nil {
		return fmt.Errorf("attachment spool: %w", err)
	}
	return nil
}

// Message is the incoming directory of one message: one file per IMAP section, holding the
// part's content decoded from its transfer encoding. It is used by one goroutine.
type Message struct {
	dir   string
	files map[string]string // section → file
}

// Create creates the file of section sec (an IMAP part number such as "2" or "1.3"), which must not
// exist yet. The caller writes the content, fsyncs and closes the file, and calls Sync once every
// file is written. The file counts among Files until Discard.
func (m *Message) Create(sec string) (*os.File, error) {
	if !validSection(sec) {
		return nil, fmt.Errorf("attachment spool: %q is not an IMAP section", sec)
	}
	path := filepath.Join(m.dir, sec)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("attachment spool: %w", err)
	}
	m.files[sec] = path
	return f, nil
}

// Discard removes the file of section sec (its content could not be decoded).
func (m *Message) Discard(sec string) {
	if path, ok := m.files[sec]; ok {
		_ = os.Remove(path)
		delete(m.files, sec)
	}
}

// Files returns the files by section, for Spool.Attach: nil for a nil Message.
func (m *Message) Files() map[string]string {
	if m == nil {
		return nil
	}
	return m.files
}

// Sync fsyncs the message's directory, making its files' entries durable: a job may then commit
// referring to them.
func (m *Message) Sync() error {
	if err := syncDir(m.dir); err != nil {
		return fmt.Errorf("attachment spool: %w", err)
	}
	return nil
}

// Remove deletes the message's directory once the message is committed or abandoned: the jobs
// that ship its files have linked them (Spool.Attach). A nil Message has nothing to remove.
func (m *Message) Remove() error {
	if m == nil {
		return nil
	}
	if err := os.RemoveAll(m.dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("attachment spool: %w", err)
	}
	return nil
}
