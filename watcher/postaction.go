package watcher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailhook/mailhook/outbox"
	"github.com/mailhook/mailhook/store"
)

// Post-actions: mark_seen, flag, move and copy jobs of this watcher's mailbox. The outbox holds
// them until the same rule's webhook and reply jobs are done; the watcher claims them between IDLE
// cycles (go-imap admits no other command during IDLE) and runs them on its own connection, through
// the outbox's Drain and Due, so they cost no extra IMAP connection and never race the catch-up of
// the same mailbox.
//
// Guarantees:
//   - A job whose uidvalidity differs from the selected mailbox's is skipped (done, with a note
//     and a warning): its UID may now name another message (RFC 3501 §2.3.1.1).
//   - A job whose message is no longer in the mailbox (moved or expunged, for example by this same
//     job before a crash) is done, not an error: re-running a job is harmless, so a crash between
//     running it and recording it costs nothing. The one exception is copy, which a crash at that
//     exact point can run twice.
//   - Flags are set with STORE +FLAGS.SILENT; \Seen is set only by mark_seen (fetching FLAGS does
//     not set it, and nothing else here touches flags). mailhook never APPENDs.
//   - A server refusal (NO/BAD) is retried with backoff and dead-lettered after
//     maxPostActionAttempts; a move or copy to a missing mailbox creates it once ([TRYCREATE],
//     RFC 3501 §7.1). A connection failure puts the job back (pending) and ends the session.

// Post-action operations.
const (
	OpMarkSeen = "mark_seen" // STORE +FLAGS.SILENT (\Seen)
	OpFlag     = "flag"      // STORE +FLAGS.SILENT (Flags…)
	OpMove     = "move"      // MOVE (RFC 6851), or UID COPY, STORE \Deleted, UID EXPUNGE without it (see session.move)
	OpCopy     = "copy"      // COPY
)

// PostAction is the body of an outbox job of kind post_action (stored as JSON).
type PostAction struct {
	Op      string   `json:"op"`
	Flags   []string `json:"flags,omitempty"`   // OpFlag
	Mailbox string   `json:"mailbox,omitempty"` // OpMove, OpCopy
}

// Target is the job target shown in the outbox: "mark_seen", "flag:\Flagged $Label",
// "move:Archive", "copy:Archive".
func (p PostAction) Target() string {
	switch p.Op {
	case OpFlag:
		return OpFlag + ":" + strings.Join(p.Flags, " ")
	case OpMove, OpCopy:
		return p.Op + ":" + p.Mailbox
	}
	return p.Op
}

// Marshal encodes p as a job body.
func (p PostAction) Marshal() ([]byte, error) { return json.Marshal(p) }

// ParsePostAction decodes and checks a job body written by Marshal.
func ParsePostAction(body []byte) (PostAction, error) {
	var p PostAction
	if err := json.Unmarshal(body, &p); err != nil {
		return p, fmt.Errorf("post-action body: %w", err)
	}
	switch p.Op {
	case OpMarkSeen:
	case OpFlag:
		if len(p.Flags) == 0 {
			return p, errors.New("post-action body: flag without flags")
		}
	case OpMove, OpCopy:
		if p.Mailbox == "" {
			return p, fmt.Errorf("post-action body: %s without a mailbox", p.Op)
		}
	default:
		return p, fmt.Errorf("post-action body: unknown op %q", p.Op)
	}
	return p, nil
}

// maxPostActionAttempts is how often a job the server refuses is tried before it is dead-lettered.
const maxPostActionAttempts = 5

// selector selects this watcher's post-action jobs.
func (w *Watcher) postActionSelector() store.Selector {
	return store.Selector{Kind: store.KindPostAction, Account: w.cfg.Account, Mailbox: w.cfg.Mailbox}
}

// runPostActions runs every claimable post-action job of the mailbox, on this session's connection
// (outbox.Drain). It returns an error only when the connection failed (the session must end);
// store errors are logged and left for the next cycle.
func (s *session) runPostActions(ctx context.Context) error {
	w := s.w
	pa := w.cfg.PostActions
	if pa == nil {
		return nil
	}
	err := outbox.Drain(ctx, pa, w.postActionSelector(), &postActions{s: s}, outbox.DrainOptions{Logger: w.log})
	if ce, ok := errors.AsType[*outbox.ClaimError](err); ok {
		if ctx.Err() == nil {
			w.log.Warn("cannot claim post-actions; will try again", "err", ce.Err)
		}
		return nil
	}
	return err
}

// postActions is the outbox.Worker of one drain of a session's post-actions. Once the connection
// failed, it puts the jobs still claimed back without running them.
type postActions struct {
	s    *session
	lost error // the connection failure, once one job met it
}

var _ outbox.Worker = (*postActions)(nil)

// Work runs one claimed job on the session's connection.
func (p *postActions) Work(ctx context.Context, j store.Job) outbox.Result {
	if p.lost != nil {
		return outbox.Result{State: store.StatePending, NextAt: time.Now(),
			Attempt: store.Attempt{Status: "canceled", Error: "session ended before it ran"}}
	}
	r := p.s.postAction(ctx, j)
	p.lost = r.Stop
	return r
}

// postAction runs one claimed job and returns its outcome; a connection failure is the Result's
// Stop.
func (s *session) postAction(ctx context.Context, j store.Job) outbox.Result {
	w := s.w
	log := w.log.With("job", j.ID, "uid", j.UID, "rule", j.Rule, "action", j.Target, "attempt", j.Attempts)
	result := func(state string, next time.Time, a store.Attempt) outbox.Result {
		return outbox.Result{State: state, NextAt: next, Attempt: a, Log: log}
	}
	p, err := ParsePostAction(j.Body)
	if err != nil {
		log.Error("post-action unreadable; dead-lettered", "err", err)
		return result(store.StateDead, time.Time{}, store.Attempt{Status: "bad_job", Error: err.Error()})
	}
	if j.UIDValidity != s.validity {
		note := fmt.Sprintf("skipped: uidvalidity changed from %d to %d", j.UIDValidity, s.validity)
		log.Warn("post-action skipped: the mailbox's uidvalidity changed, the uid may name another message",
			"job_uidvalidity", j.UIDValidity, "uidvalidity", s.validity)
		return result(store.StateDone, time.Time{}, store.Attempt{Status: "skipped", Error: note})
	}
	uids := imap.UIDSetNum(imap.UID(j.UID))
	s.begin()
	msgs, err := s.c.Fetch(uids, &imap.FetchOptions{UID: true, Flags: true}).Collect()
	if err == nil && !slices.ContainsFunc(msgs, func(m *imapclient.FetchMessageBuffer) bool { return uint32(m.UID) == j.UID }) {
		log.Info("post-action skipped: the message is no longer in the mailbox")
		return result(store.StateDone, time.Time{}, store.Attempt{Status: "skipped", Error: "skipped: message no longer in the mailbox"})
	}
	if err == nil {
		err = s.applyPostAction(p, uids)
	}
	if err == nil {
		log.Info("post-action done")
		return result(store.StateDone, time.Time{}, store.Attempt{Status: "ok"})
	}
	var ie *imap.Error
	if !errors.As(err, &ie) {
		// The connection failed: the job goes back, the session ends and reconnects.
		r := result(store.StatePending, time.Now(), store.Attempt{Status: "network", Error: err.Error()})
		r.Stop = fmt.Errorf("post-action %s uid %d: %w", j.Target, j.UID, err)
		return r
	}
	a := store.Attempt{Status: "imap " + strings.ToLower(string(ie.Type)), Error: err.Error()}
	if j.Attempts >= maxPostActionAttempts {
		log.Error("post-action refused by the server; dead-lettered", "err", err)
		return result(store.StateDead, time.Time{}, a)
	}
	next := time.Now().Add(min(time.Minute<<min(j.Attempts-1, 6), time.Hour))
	log.Warn("post-action refused by the server; will retry", "err", err, "next_at", next)
	return result(store.StatePending, next, a)
}

// applyPostAction sends the command(s) of p for uids.
func (s *session) applyPostAction(p PostAction, uids imap.UIDSet) error {
	switch p.Op {
	case OpMarkSeen, OpFlag:
		flags := []imap.Flag{imap.FlagSeen}
		if p.Op == OpFlag {
			flags = flags[:0]
			for _, f := range p.Flags {
				flags = append(flags, imap.Flag(f))
			}
		}
		s.begin()
		return s.c.Store(uids, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: flags}, nil).Close()
	case OpMove, OpCopy:
		run := func() error {
			if p.Op == OpMove {
				return s.move(uids, p.Mailbox)
			}
			s.begin()
			_, err := s.c.Copy(uids, p.Mailbox).Wait()
			return err
		}
		err := run()
		var ie *imap.Error
		if errors.As(err, &ie) && ie.Code == imap.ResponseCodeTryCreate {
			s.w.log.Info("creating the target mailbox of a post-action", "target", p.Mailbox)
			s.begin()
			if cerr := s.c.Create(p.Mailbox, nil).Wait(); cerr != nil {
				return fmt.Errorf("create %q: %w", p.Mailbox, cerr)
			}
			err = run()
		}
		if err != nil {
			return fmt.Errorf("%s to %q: %w", p.Op, p.Mailbox, err)
		}
		return nil
	}
	return fmt.Errorf("unknown post-action %q", p.Op)
}

// move moves uids to mailbox: with MOVE (RFC 6851) when the server has it, else by hand, one
// command at a time, each waiting for the previous one's OK: UID COPY, then UID STORE
// +FLAGS.SILENT (\Deleted), then UID EXPUNGE of just these UIDs (UIDPLUS, RFC 4315, or
// IMAP4rev2). go-imap's own fallback pipelines the three, so a failed COPY (a missing target
// mailbox) still deleted the message, and without UIDPLUS it sends a plain EXPUNGE, which also
// removes every other message a user had flagged \Deleted. mailhook never sends a plain EXPUNGE:
// without UID EXPUNGE the original stays in the mailbox, flagged \Deleted, for the user's client
// to expunge. A crash between COPY and the end leaves at most one extra copy, never a loss.
func (s *session) move(uids imap.UIDSet, mailbox string) error {
	s.begin()
	caps := s.c.Caps()
	if caps.Has(imap.CapMove) {
		s.begin()
		_, err := s.c.Move(uids, mailbox).Wait()
		return err
	}
	s.begin()
	if _, err := s.c.Copy(uids, mailbox).Wait(); err != nil {
		return err
	}
	s.begin()
	if err := s.c.Store(uids, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		return fmt.Errorf("store \\Deleted after the copy: %w", err)
	}
	if !caps.Has(imap.CapUIDPlus) && !caps.Has(imap.CapIMAP4rev2) {
		s.w.log.Info("move: copied and flagged \\Deleted, not expunged: the server has neither MOVE nor UIDPLUS, "+
			"and a plain EXPUNGE would remove every message flagged \\Deleted", "target", mailbox)
		return nil
	}
	s.begin()
	if err := s.c.UIDExpunge(uids).Close(); err != nil {
		return fmt.Errorf("uid expunge after the copy: %w", err)
	}
	return nil
}

// postActionsDue returns a channel that is closed once a post-action job of the mailbox is due
// (pending, due, its dependencies done), for the IDLE and poll waits to end on; stop ends the
// goroutine behind it. Without Config.PostActions the channel is nil (never ready).
func (s *session) postActionsDue(ctx context.Context) (due <-chan struct{}, stop func()) {
	pa := s.w.cfg.PostActions
	if pa == nil {
		return nil, func() {}
	}
	return outbox.Due(ctx, pa, s.w.postActionSelector())
}
