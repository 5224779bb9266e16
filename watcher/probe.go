package watcher

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/mailhook/mailhook/store"
)

// MailboxProbe is what Probe found out about one mailbox or folder.
type MailboxProbe struct {
	Name string
	// UIDValidity and Messages come from EXAMINE; both are zero for a folder only checked to exist.
	UIDValidity uint32
	Messages    uint32
	// Err says why the mailbox cannot be used (not found, not selectable, refused); nil when fine.
	Err error
}

// ProbeReport is the result of Probe.
type ProbeReport struct {
	Idle bool // the server advertises IDLE (RFC 2177) or is IMAP4rev2
	// MoveRemoves: a move: takes the original out of the mailbox (MOVE, or UID EXPUNGE from
	// UIDPLUS or IMAP4rev2); without, the original stays flagged \Deleted (see session.move).
	MoveRemoves bool
	Mailboxes   []MailboxProbe // in the order asked
	Folders     []MailboxProbe // in the order asked
}

// Probe checks that a Watcher with cfg could work, without changing anything on the server or in
// any State: it connects and authenticates exactly as Run does, EXAMINEs (the read-only SELECT of
// RFC 3501 §6.3.2, which leaves \Recent alone) each of mailboxes, checks with LIST that each of
// folders exists and can be selected (a move: or copy: target), and logs out. cfg.Mailbox is not
// used. The returned error is a connection or authentication failure, after which nothing else
// was tried; a problem with one mailbox or folder is reported in its entry instead. Every command
// is bounded by cfg.CommandTimeout, and ctx cancels the whole probe. Errors never carry the
// password.
func Probe(ctx context.Context, cfg Config, mailboxes, folders []string) (ProbeReport, error) {
	var rep ProbeReport
	if cfg.Mailbox == "" {
		cfg.Mailbox = "INBOX" // New requires one; Probe never selects it
	}
	w, err := New(cfg, noState{}, HandlerFunc(probeHandler)) // Probe never reads or writes progress
	if err != nil {
		return rep, err
	}
	dial := w.cfg.Dial
	if dial == nil {
		dial = dialTCP
	}
	raw, err := dial(ctx, "tcp", w.cfg.Addr)
	if err != nil {
		return rep, fmt.Errorf("dial %s: %w", w.cfg.Addr, err)
	}
	s := &session{w: w, wake: make(chan struct{}, 1)}
	s.dog = newWatchdog(&w.cfg, func() { raw.Close() })
	conn := &countingConn{Conn: raw, onRead: func(_ int, at time.Time) { s.dog.read(at) }}
	defer conn.Close()
	s.dog.set(dogCommand)
	stopDog := s.dog.start()
	defer stopDog()
	stopAfter := context.AfterFunc(ctx, func() { conn.Close() })
	defer stopAfter()

	fail := func(err error) (ProbeReport, error) {
		if why := s.dog.reason(); why != "" {
			err = fmt.Errorf("watchdog closed the connection (%s): %w", why, err)
		}
		if ctx.Err() != nil {
			err = fmt.Errorf("%w: %w", ctx.Err(), err)
		}
		return rep, err
	}
	if err := s.connect(ctx, conn); err != nil {
		return fail(err)
	}
	defer s.c.Close()
	if err := s.login(ctx); err != nil {
		return fail(err)
	}
	caps := s.c.Caps()
	rep.Idle = caps.Has(imap.CapIdle) || caps.Has(imap.CapIMAP4rev2)
	rep.MoveRemoves = caps.Has(imap.CapMove) || caps.Has(imap.CapUIDPlus) || caps.Has(imap.CapIMAP4rev2)

	for _, mb := range mailboxes {
		p := MailboxProbe{Name: mb}
		s.begin()
		sel, err := s.c.Select(mb, &imap.SelectOptions{ReadOnly: true}).Wait()
		if err != nil {
			p.Err = fmt.Errorf("examine %q: %w", mb, err)
		} else {
			p.UIDValidity, p.Messages = sel.UIDValidity, sel.NumMessages
		}
		rep.Mailboxes = append(rep.Mailboxes, p)
		if err != nil && !isIMAPError(err) { // the connection is gone
			return fail(err)
		}
	}
	for _, f := range folders {
		p := MailboxProbe{Name: f}
		s.begin()
		list, err := s.c.List("", f, nil).Collect()
		switch {
		case err != nil:
			p.Err = fmt.Errorf("list %q: %w", f, err)
		default:
			p.Err = selectable(f, list)
		}
		rep.Folders = append(rep.Folders, p)
		if err != nil && !isIMAPError(err) {
			return fail(err)
		}
	}
	s.begin()
	if err := s.c.Logout().Wait(); err != nil && ctx.Err() != nil {
		return fail(err)
	}
	return rep, nil
}

// selectable checks a LIST answer for name: present, and neither \Noselect nor \NonExistent
// (RFC 3501 §7.2.2, RFC 5258 §3). INBOX is case-insensitive (RFC 3501 §5.1).
func selectable(name string, list []*imap.ListData) error {
	for _, l := range list {
		if l.Mailbox != name && !(strings.EqualFold(name, "INBOX") && strings.EqualFold(l.Mailbox, "INBOX")) {
			continue
		}
		for _, a := range l.Attrs {
			if a == imap.MailboxAttrNoSelect || a == imap.MailboxAttrNonExistent {
				return fmt.Errorf("folder %q exists but cannot hold messages (%s)", name, a)
			}
		}
		return nil
	}
	return fmt.Errorf("folder %q does not exist", name)
}

func isIMAPError(err error) bool {
	var ie *imap.Error
	return errors.As(err, &ie)
}

// errProbeState is what probeHandler answers: Probe never fetches a message.
var errProbeState = errors.New("probe: no state")

// probeHandler satisfies New; Probe never fetches a message.
func probeHandler(context.Context, *Event) ([]store.Job, error) { return nil, errProbeState }
