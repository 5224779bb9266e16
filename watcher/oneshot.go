package watcher

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/mailhook/mailhook/store"
)

// Selection picks the messages FetchMessages fetches. Its criteria combine: a message must be in
// the UID range and on or after Since; then Last keeps only the highest UIDs.
type Selection struct {
	// UIDMin and UIDMax bound the UIDs, inclusive; UIDMax 0 means no upper bound. The zero
	// range selects every message.
	UIDMin, UIDMax uint32
	// Since, when not zero, keeps messages whose INTERNALDATE is at or after it. The server is
	// asked for SEARCH SINCE the day before (IMAP compares dates only, in the server's time
	// zone); the exact cut is made on the fetched INTERNALDATE.
	Since time.Time
	// Last, when positive, keeps only the Last highest UIDs of the selection.
	Last int
}

// FetchMessages opens one connection as cfg says, EXAMINEs (RFC 3501 §6.3.2: read-only, so
// neither flags nor \Recent change) cfg.Mailbox, and fetches the selected messages in ascending
// UID order exactly as the watcher would — two passes, always BODY.PEEK, the body parts of
// cfg.Plan only, every byte charged to cfg.Budget and every FETCH admitted by it — calling fn
// with each one as it is built. It commits nothing and needs no State: it is how `mailhook test`
// and `mailhook replay` see mail that the daemon has (or has not yet) processed.
//
// It returns fn's first error, or a connection, protocol or budget error: when cfg.Budget
// refuses a fetch, FetchMessages stops with an error saying until when, having called fn for the
// messages before. Events carry the mailbox's current UIDVALIDITY. Each message is matched by h
// as in Run, and fn gets the match; attachment content it ships inline is spooled into
// cfg.Incoming as in Run (Event.Spooled) and removed when fn returns. A nil h matches nothing.
func FetchMessages(ctx context.Context, cfg Config, sel Selection, h Handler, fn func(ctx context.Context, ev *Event, d Matched) error) error {
	if fn == nil {
		return errors.New("watcher: FetchMessages needs a callback")
	}
	if h == nil {
		h = HandlerFunc(func(context.Context, *Event) ([]store.Job, error) { return nil, nil })
	}
	w, err := New(cfg, noState{}, h)
	if err != nil {
		return err
	}
	_, err = w.sessionWith(ctx, func(s *session, ctx context.Context, conn net.Conn) error {
		return s.oneShot(ctx, conn, sel, fn)
	})
	return err
}

// oneShot is the body of FetchMessages' connection.
func (s *session) oneShot(ctx context.Context, conn net.Conn, sel Selection, fn func(context.Context, *Event, Matched) error) error {
	w := s.w
	cfg := &w.cfg
	if err := s.connect(ctx, conn); err != nil {
		return err
	}
	if err := s.login(ctx); err != nil {
		return err
	}
	s.begin()
	data, err := s.c.Select(cfg.Mailbox, &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		return fmt.Errorf("examine %q: %w", cfg.Mailbox, err)
	}
	s.validity = data.UIDValidity

	uids, err := s.selectUIDs(sel)
	if err != nil {
		return err
	}
	// Batches grow as in the daemon's catch-up: from BatchSize, doubling after each batch that
	// was fetched whole, up to MaxBatchSize (fewer round trips for `replay` of a long range).
	batch := cfg.BatchSize
	for len(uids) > 0 {
		n, err := s.admitFirstPass(ctx, min(len(uids), batch))
		if err != nil {
			return err
		}
		if n == 0 {
			return s.throttledErr()
		}
		got, kept, err := s.fetchFirstPass(ctx, uids[:n])
		s.endFetch()
		if err != nil {
			return err
		}
		if kept == batch {
			batch = min(2*batch, cfg.MaxBatchSize)
		}
		fetched := uids[:kept]
		uids = uids[kept:]
		for _, uid := range fetched {
			f, ok := got[uid]
			if !ok {
				continue // expunged meanwhile
			}
			if !sel.Since.IsZero() && !f.date.IsZero() && f.date.Before(sel.Since) {
				continue
			}
			m, err := s.build(ctx, f)
			if errors.Is(err, errThrottled) {
				return s.throttledErr()
			}
			if err != nil {
				return err
			}
			ev := s.event(uid, m)
			d := w.h.Match(ev)
			sp, err := s.spool(ctx, f, m, d.Inline())
			if errors.Is(err, errThrottled) {
				return s.throttledErr()
			}
			if err != nil {
				return err
			}
			s.dog.set(dogOff) // nothing is owed by the server while fn runs
			ev.Spooled = sp.Files()
			err = fn(ctx, ev, d)
			w.removeSpool(sp)
			if err != nil {
				return err
			}
		}
	}
	s.begin()
	if err := s.c.Logout().Wait(); err != nil {
		w.log.Debug("logout failed", "err", err)
	}
	return nil
}

// selectUIDs runs the UID SEARCH of sel and returns the UIDs it selects, ascending.
func (s *session) selectUIDs(sel Selection) ([]uint32, error) {
	crit := &imap.SearchCriteria{}
	if sel.UIDMin > 0 || sel.UIDMax > 0 {
		// RFC 3501 §6.4.8: "n:*" matches the highest UID even below n; filtered below.
		crit.UID = []imap.UIDSet{{{Start: imap.UID(max(sel.UIDMin, 1)), Stop: imap.UID(sel.UIDMax)}}}
	}
	if !sel.Since.IsZero() {
		crit.Since = sel.Since.AddDate(0, 0, -1)
	}
	s.begin()
	data, err := s.c.UIDSearch(crit, nil).Wait()
	if err != nil {
		return nil, fmt.Errorf("uid search: %w", err)
	}
	all, err := searchUIDs(data, 0, searchLimit(s.c.Mailbox()))
	if err != nil {
		return nil, fmt.Errorf("uid search: %w", err)
	}
	var uids []uint32
	for _, u := range all {
		if u >= sel.UIDMin && (sel.UIDMax == 0 || u <= sel.UIDMax) {
			uids = append(uids, u)
		}
	}
	slices.Sort(uids)
	uids = slices.Compact(uids)
	if sel.Last > 0 && len(uids) > sel.Last {
		uids = uids[len(uids)-sel.Last:]
	}
	return uids, nil
}

// throttledErr says why the budget refused the fetch FetchMessages needed.
func (s *session) throttledErr() error {
	th := s.throttle
	return fmt.Errorf("download budget of account %q exhausted until %s: %s",
		s.w.cfg.Account, th.Until.Format(time.RFC3339), th.Reason)
}

// noState is the State of a one-shot Watcher, which never reads or commits progress.
type noState struct{}

var _ State = noState{}

var errNoState = errors.New("one-shot fetch keeps no state")

func (noState) Checkpoint(context.Context) (store.Checkpoint, bool, error) {
	return store.Checkpoint{}, false, errNoState
}
func (noState) ResetCheckpoint(context.Context, store.Checkpoint) error {
	return errNoState
}
func (noState) Commit(context.Context, []store.Commit) error {
	return errNoState
}
func (noState) Seen(context.Context, string) (bool, error) { return false, errNoState }

// The one-shot fetch (and the probe) keeps no fetch records: they are the daemon's.
func (noState) BeginFetch(context.Context, store.FetchRange) error { return nil }
func (noState) EndFetch(context.Context) error                     { return nil }
func (noState) UnfinishedFetch(context.Context) (store.FetchRange, bool, error) {
	return store.FetchRange{}, false, nil
}
func (noState) StrikeFetch(context.Context, uint32, uint32, string) (int, error) { return 0, nil }
func (noState) FetchStrikes(context.Context, uint32, uint32) (int, error)        { return 0, nil }
