package watcher

import (
	"errors"
	"fmt"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailhook/mailhook/store"
)

// preSearch is the first catch-up's UID SEARCH, written right behind SELECT: on a link with a
// long round trip a session then reaches its first FETCH one round trip sooner. It is only a
// guess at where the catch-up starts — the stored checkpoint, or 0 for `start: all` on a first
// run — made before SELECT says whether UIDVALIDITY still matches; catchUp uses its answer only
// when the checkpoint that reconcile settled on is the one it searched from.
type preSearch struct {
	cmd      *imapclient.SearchCommand
	validity uint32 // the UIDVALIDITY the guess belongs to; 0: the first run's, whatever SELECT says
	last     uint32 // searched UID last+1:*
}

// sendPreSearch writes the UID SEARCH of the first catch-up when its start is known from the
// stored checkpoint cp (stored: there is one) or from `start: all`; nil otherwise (a first run
// with `start: new` or a date needs SELECT's answer first).
func (s *session) sendPreSearch(cp store.Checkpoint, stored bool) *preSearch {
	p := &preSearch{}
	switch {
	case stored:
		p.validity, p.last = cp.UIDValidity, cp.LastUID
	case s.w.cfg.Start == StartAll:
	default:
		return nil
	}
	p.cmd = s.c.UIDSearch(&imap.SearchCriteria{UID: []imap.UIDSet{{{Start: imap.UID(p.last + 1), Stop: 0}}}}, nil)
	return p
}

// takePreSearch reads the answer of p (nil: none was sent) and keeps it for the first catch-up
// if the session's checkpoint is the one it searched from. A server's NO only means the
// catch-up searches again; a broken connection ends the session.
func (s *session) takePreSearch(p *preSearch) error {
	if p == nil {
		return nil
	}
	s.begin()
	data, err := p.cmd.Wait()
	if err != nil {
		var ie *imap.Error
		if !errors.As(err, &ie) {
			return fmt.Errorf("uid search %d:*: %w", p.last+1, err)
		}
		s.w.log.Debug("uid search sent with select refused; searching again", "err", err)
		return nil
	}
	if (p.validity == 0 || p.validity == s.validity) && p.last == s.cp.LastUID {
		s.searched = data
	}
	return nil
}
