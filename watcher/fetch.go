package watcher

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailhook/mailhook/internal/failpoint"
	"github.com/mailhook/mailhook/message"
	"github.com/mailhook/mailhook/spool"
	"github.com/mailhook/mailhook/store"
)

// fetched is what the first pass (and, later, the second) returned for one UID.
type fetched struct {
	uid       uint32
	flags     []string
	size      int64
	date      time.Time
	structure imap.BodyStructure
	header    []byte
	parts     map[string][]byte
	// partsDone: the second pass ran for this message (in a batch); partial lists the sections
	// it cut at their cap.
	partsDone bool
	partial   map[string]bool
}

// catchUp processes every message above the checkpoint, in ascending UID order: UID
// SEARCH (or the answer of the one sent with SELECT), then per batch one first-pass UID FETCH and the second pass of the
// whole batch (processBatch).
func (s *session) catchUp(ctx context.Context) error {
	w := s.w
	last := s.cp.LastUID
	s.seenExists = s.exists.Load()
	s.batchCap = w.cfg.BatchSize
	data := s.searched
	s.searched = nil
	if data == nil {
		s.begin()
		var err error
		data, err = s.c.UIDSearch(&imap.SearchCriteria{UID: []imap.UIDSet{{{Start: imap.UID(last + 1), Stop: 0}}}}, nil).Wait()
		if err != nil {
			return fmt.Errorf("uid search %d:*: %w", last+1, err)
		}
	}
	// RFC 3501 §6.4.8: "n:*" always matches the highest UID, even when it is below n.
	uids, err := searchUIDs(data, last, searchLimit(s.c.Mailbox()))
	if err != nil {
		return fmt.Errorf("uid search %d:*: %w", last+1, err)
	}
	slices.Sort(uids)
	uids = slices.Compact(uids)
	if len(uids) > 0 {
		w.log.Debug("catching up", "count", len(uids), "from_uid", uids[0])
	}
	var ahead *firstPass // the first pass of the next batch, sent with the second pass of this one
	for len(uids) > 0 {
		fp := ahead
		ahead = nil
		if fp == nil {
			if err := s.knowStrikes(ctx, uids[0]); err != nil {
				return err
			}
			if w.failures[uids[0]] >= maxFetchFailures {
				if err := s.degraded(ctx, uids[0]); err != nil {
					return err
				}
				uids = uids[1:]
				continue
			}
			n, err := s.admitFirstPass(ctx, s.batchLen(uids))
			if n == 0 || err != nil {
				return err // n == 0: throttled, s.throttle says until when
			}
			fp = &firstPass{batch: uids[:n]}
			if err := s.beginFetch(ctx, fp.batch[0], fp.batch[n-1]); err != nil {
				s.endFetch()
				return err
			}
			s.sendFirstPass(fp)
		}
		got, kept, err := s.waitFirstPass(ctx, fp)
		s.endFetch()
		if err != nil {
			return err
		}
		uids = uids[kept:] // the rest of the batch did not fit in memory: the next first pass has it
		if kept == s.batchCap {
			s.batchCap = min(2*s.batchCap, w.cfg.MaxBatchSize)
		}
		// The next batch's first pass goes out with this batch's second pass (fetchPartsBatch).
		// Its fetch record covers both batches, so that this one stays recorded until committed.
		lo := fp.batch[0]
		s.aheadOf = func(ctx context.Context) *firstPass { return s.planAhead(ctx, lo, uids) }
		err = s.processBatch(ctx, fp.batch[:kept], got)
		ahead, s.ahead, s.aheadOf = s.ahead, nil, nil
		stop := errors.Is(err, errThrottled)
		if err != nil && !stop {
			return err // the record stays; only a restart reads it (the connection ends with the session)
		}
		if ahead != nil && !stop {
			continue // the record now belongs to the batch in flight
		}
		hi := fp.batch[len(fp.batch)-1]
		if ahead != nil { // the budget stopped this batch: the next one waits for the window
			_, _, _ = s.waitFirstPass(ctx, ahead)
			hi = ahead.batch[len(ahead.batch)-1]
		}
		if err := s.endFetchRecord(ctx, hi); err != nil || stop {
			return err
		}
	}
	return nil
}

// knowStrikes loads the fetch failures an earlier process recorded for uid, once.
func (s *session) knowStrikes(ctx context.Context, uid uint32) error {
	w := s.w
	if _, known := w.failures[uid]; known {
		return nil
	}
	n, err := w.st.FetchStrikes(ctx, s.validity, uid)
	if err != nil {
		return fmt.Errorf("read fetch failures of uid %d: %w", uid, err)
	}
	w.failures[uid] = n
	return nil
}

// batchLen is how many of uids (ascending, not empty) the next first pass asks for: up to
// the batch cap, one alone when suspected, and never a message
// due for degraded delivery.
func (s *session) batchLen(uids []uint32) int {
	w := s.w
	n := 1
	for !w.suspected(uids[0]) && n < len(uids) && n < s.batchCap &&
		w.failures[uids[n]] < maxFetchFailures && !w.suspected(uids[n]) {
		n++
	}
	return n
}

// planAhead prepares the first pass of the batch after the one whose first UID is lo, from uids
// (what is left of the catch-up), to be sent ahead: it returns nil when uids is empty, when either
// batch is fetched one message at a time (a single-UID record is what counts a strike: it must
// stay single) or its first message is delivered degraded, or when the budget does not grant it
// at once (the catch-up loop then fetches it the usual way). The fetch record then spans both
// batches.
func (s *session) planAhead(ctx context.Context, lo uint32, uids []uint32) *firstPass {
	w := s.w
	if len(uids) == 0 || w.suspected(lo) || w.suspected(uids[0]) || s.knowStrikes(ctx, uids[0]) != nil ||
		w.failures[uids[0]] >= maxFetchFailures {
		return nil
	}
	n, h := s.reserveAhead(ctx, s.batchLen(uids))
	if n == 0 {
		return nil
	}
	if err := s.beginFetch(ctx, lo, uids[n-1]); err != nil {
		h.Release()
		return nil // the loop's own beginFetch reports it
	}
	return &firstPass{batch: uids[:n], hold: h}
}

// finishBatch processes a fetched batch (processBatch) and clears its fetch record, whose last
// UID is recordHi (0: the batch has none), if no commit did. stop reports that the budget paused
// the batch (s.throttle says until when).
func (s *session) finishBatch(ctx context.Context, batch []uint32, got map[uint32]*fetched, recordHi uint32) (stop bool, err error) {
	err = s.processBatch(ctx, batch, got)
	if errors.Is(err, errThrottled) {
		stop, err = true, nil
	}
	if err != nil {
		return false, err // the record stays; only a restart reads it
	}
	if recordHi == 0 {
		return stop, nil
	}
	return stop, s.endFetchRecord(ctx, recordHi)
}

// catchUpPushed is catch-up after an IDLE push when few messages are new: the first pass was sent
// as `UID FETCH last+1:*` right behind DONE (pushedFetch), with no UID SEARCH before it, so a
// message costs one round trip after the push (two when the plan reads body text). It then runs
// the second pass and delivers like catchUp. Messages beyond what was reserved for are left to
// the next catch-up, which the run loop starts at once.
func (s *session) catchUpPushed(ctx context.Context, p *pushedFetch) error {
	got, lastUID, _, err := s.readFetch(p.cmd, p.set, int64(s.w.cfg.Limits.HeaderBytes), keepLimit{count: p.max})
	s.endFetch()
	if err != nil {
		if lastUID != 0 {
			s.blame(ctx, []uint32{lastUID}, lastUID)
		}
		return fmt.Errorf("uid fetch %s (first pass): %w", p.set, err)
	}
	var batch []uint32
	for uid := range got {
		if uid > s.cp.LastUID { // "n:*" always matches the highest UID, even below n
			batch = append(batch, uid)
		}
	}
	slices.Sort(batch)
	if len(batch) > 0 {
		s.w.log.Debug("fetched pushed messages", "count", len(batch), "from_uid", batch[0])
	}
	if len(got) >= p.max {
		select { // more may be waiting than were kept: have the run loop search
		case s.wake <- struct{}{}:
		default:
		}
	}
	if len(batch) == 0 {
		return nil
	}
	// No fetch record here: it would put a durable write between the push and the webhook of every
	// new message. A message that stops the process on this path is first fetched again by the
	// catch-up after the restart, which records its batch; from then on it collects strikes as on
	// any other path (one restart more before it is delivered degraded).
	_, err = s.finishBatch(ctx, batch, got, 0)
	return err
}

// processBatch runs the second pass for a batch of first-pass results (batch ascending; UIDs
// missing from got vanished before the fetch) and delivers each message in UID order. The second
// pass is several UID FETCH commands sent back to back, as many as distinct section lists in the
// chunk (see fetchPartsBatch); a chunk is bounded by passTwoBytes and by what the budget grants.
func (s *session) processBatch(ctx context.Context, batch []uint32, got map[uint32]*fetched) error {
	w := s.w
	var list []*fetched
	for _, uid := range batch {
		f, ok := got[uid]
		if !ok {
			w.log.Debug("message vanished before fetch", "uid", uid)
			continue
		}
		if w.failures[uid] >= maxFetchFailures {
			// Its last attempt failed in a pushed fetch: deliver it degraded, in order.
			if err := s.deliverList(ctx, list); err != nil {
				return err
			}
			list = list[:0]
			if err := s.degraded(ctx, uid); err != nil {
				return err
			}
			continue
		}
		list = append(list, f)
	}
	return s.deliverList(ctx, list)
}

// deliverList runs the second pass over list in chunks, hands each message of a chunk to the
// Handler and commits the chunk's jobs and checkpoint in one transaction (group commit). When a
// message fails or the budget stops the chunk, what was handled before it is committed first, so
// nothing is handled twice and the checkpoint never passes a message whose jobs are not committed.
func (s *session) deliverList(ctx context.Context, list []*fetched) error {
	for len(list) > 0 {
		n, err := s.fetchPartsBatch(ctx, list)
		if err != nil {
			return err
		}
		b := s.newBatch()
		for _, f := range list[:n] {
			if err = s.processSafe(ctx, f, b); err != nil {
				break
			}
		}
		if cerr := s.commit(ctx, b); cerr != nil {
			return cerr
		}
		if err != nil {
			return err
		}
		list = list[n:]
	}
	return nil
}

// fetchFirstPass fetches UID FLAGS RFC822.SIZE INTERNALDATE BODYSTRUCTURE and the first
// HeaderBytes of the header section for a batch (ascending), streaming every literal through a
// cap. What it keeps in memory is bounded by the bytes that actually arrived, not by the worst
// case: once batchHeaderBudget bytes are kept it keeps no more, and the batch is cut before the
// first UID it did not keep. kept is the length of that prefix of batch (at least one message);
// got holds the messages of the prefix that the server returned.
func (s *session) fetchFirstPass(ctx context.Context, batch []uint32) (got map[uint32]*fetched, kept int, err error) {
	fp := &firstPass{batch: batch}
	s.sendFirstPass(fp)
	return s.waitFirstPass(ctx, fp)
}

// firstPassOptions are the items of the first pass.
func (s *session) firstPassOptions() *imap.FetchOptions {
	return &imap.FetchOptions{
		UID:           true,
		Flags:         true,
		RFC822Size:    true,
		InternalDate:  true,
		BodyStructure: &imap.FetchItemBodyStructure{Extended: true},
		BodySection: []*imap.FetchItemBodySection{{
			Specifier: imap.PartSpecifierHeader,
			Peek:      true, // BODY.PEEK never sets \Seen
			Partial:   &imap.SectionPartial{Offset: 0, Size: int64(s.w.cfg.Limits.HeaderBytes)},
		}},
	}
}

// blame charges a failed fetch to one UID: the message being received when it failed, or the
// first one not received. A connection that keeps dying on the same message thus reaches
// maxFetchFailures and is delivered degraded instead of stalling the mailbox.
func (s *session) blame(ctx context.Context, batch []uint32, lastUID uint32) {
	suspect := batch[0]
	if lastUID != 0 {
		suspect = lastUID
	}
	n := s.strike(ctx, suspect, "fetch failed")
	s.w.log.Debug("fetch failed", "uid", suspect, "failures", n)
}

// fetch runs one UID FETCH and reads every returned message, keeping at most capBytes of each
// literal; the rest is drained by the library without being kept. lastUID is the UID of the last
// message that started arriving (0 when none), for blame.
func (s *session) fetch(set imap.UIDSet, opts *imap.FetchOptions, capBytes int64) (got map[uint32]*fetched, lastUID uint32, err error) {
	s.settleAhead()
	s.begin()
	got, lastUID, _, err = s.readFetch(s.c.Fetch(set, opts), set, capBytes, keepLimit{})
	return got, lastUID, err
}

// keepLimit bounds what readFetch keeps of a FETCH's answers: at most count messages and, once
// bytes of their sections are kept, no more (zero: no bound).
type keepLimit struct {
	count int
	bytes int64
}

// readFetch reads the responses of a UID FETCH already sent, as fetch does. It keeps messages
// within keep and reads the rest without keeping them. Past keep.bytes it keeps only a message
// below the highest UID kept (a server answering out of order), so what is kept is every answer
// below cut: the smallest UID of set that arrived and was not kept (0 when none).
func (s *session) readFetch(cmd *imapclient.FetchCommand, set imap.UIDSet, capBytes int64, keep keepLimit) (got map[uint32]*fetched, lastUID, cut uint32, err error) {
	got = map[uint32]*fetched{}
	var readErr error
	var kept int64
	var top uint32 // the highest UID kept
	for {
		md := cmd.Next()
		if md == nil {
			break
		}
		if keep.count > 0 && len(got) >= keep.count {
			continue // Next drains it
		}
		f, err := readMessage(md, capBytes)
		if f.uid != 0 {
			lastUID = f.uid
		}
		if err != nil {
			readErr = err
			break
		}
		if f.uid == 0 || !set.Contains(imap.UID(f.uid)) {
			continue
		}
		if keep.bytes > 0 && kept >= keep.bytes && f.uid > top {
			if cut == 0 || f.uid < cut {
				cut = f.uid
			}
			continue
		}
		got[f.uid] = f
		top = max(top, f.uid)
		kept += int64(len(f.header))
		for _, b := range f.parts {
			kept += int64(len(b))
		}
	}
	if errors.Is(readErr, errLiteralTooLarge) {
		s.conn.Close() // or cmd.Close would read the whole literal to drain it
	}
	err = cmd.Close()
	if readErr != nil {
		err = readErr
	}
	return got, lastUID, cut, err
}

// readMessage reads the data items of one FETCH response.
func readMessage(md *imapclient.FetchMessageData, capBytes int64) (*fetched, error) {
	f := &fetched{}
	for {
		item := md.Next()
		if item == nil {
			return f, nil
		}
		switch it := item.(type) {
		case imapclient.FetchItemDataUID:
			f.uid = uint32(it.UID)
		case imapclient.FetchItemDataFlags:
			f.flags = make([]string, len(it.Flags))
			for i, fl := range it.Flags {
				f.flags[i] = string(fl)
			}
		case imapclient.FetchItemDataRFC822Size:
			f.size = it.Size
		case imapclient.FetchItemDataInternalDate:
			f.date = it.Time
		case imapclient.FetchItemDataBodyStructure:
			f.structure = it.BodyStructure
		case imapclient.FetchItemDataBodySection:
			if it.Literal == nil || it.Section == nil {
				continue
			}
			b, err := readCapped(it.Literal, capBytes)
			if err != nil {
				return f, fmt.Errorf("read body section: %w", err)
			}
			if it.Section.Specifier == imap.PartSpecifierHeader && len(it.Section.Part) == 0 {
				f.header = b
				continue
			}
			if f.parts == nil {
				f.parts = map[string][]byte{}
			}
			name := sectionName(it.Section.Part)
			if it.Section.Specifier == imap.PartSpecifierHeader {
				name += ".HEADER" // the header of a returned message (message.Sections)
			}
			f.parts[name] = b
		}
	}
}

// readCapped reads at most capBytes of a literal, never allocating more than that however large
// the server says the literal is.
func readCapped(lit imap.LiteralReader, capBytes int64) ([]byte, error) {
	if lit.Size() > capBytes {
		// A partial fetch (RFC 3501 §6.4.5) never returns more than asked: refuse to read it.
		return nil, fmt.Errorf("%w: %d bytes, asked for at most %d", errLiteralTooLarge, lit.Size(), capBytes)
	}
	buf := bytes.NewBuffer(make([]byte, 0, max(min(lit.Size(), capBytes), 0)))
	if _, err := buf.ReadFrom(io.LimitReader(lit, capBytes)); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// process runs the second pass for one message when the Plan asks for body parts, builds it,
// has the Handler match it, spools the attachment content the match ships inline, and adds its
// jobs to b.
func (s *session) process(ctx context.Context, f *fetched, b *batch) error {
	m, err := s.build(ctx, f)
	if err != nil {
		return err
	}
	ev := s.event(f.uid, m)
	d := s.w.h.Match(ev)
	sp, err := s.spool(ctx, f, m, d.Inline())
	if err != nil {
		return err
	}
	b.spools = append(b.spools, sp) // removed once committed or abandoned
	ev.Spooled = sp.Files()
	return s.handle(ctx, b, f.date, ev, d)
}

// event is the Event of message m, UID uid, in the selected mailbox.
func (s *session) event(uid uint32, m *message.Message) *Event {
	cfg := &s.w.cfg
	return &Event{Account: cfg.Account, Mailbox: cfg.Mailbox, UIDValidity: s.validity, UID: uid, Message: m}
}

// build runs the second pass for one message when the Plan asks for body parts, and builds the
// Message (also used by the one-shot fetch of FetchMessages).
func (s *session) build(ctx context.Context, f *fetched) (*message.Message, error) {
	w := s.w
	p := message.Pieces{
		Header:       f.header,
		Structure:    f.structure,
		Size:         f.size,
		Flags:        f.flags,
		InternalDate: f.date,
	}
	if f.partsDone {
		p.Parts, p.PartialParts = f.parts, f.partial
	} else if w.cfg.Plan.parts() && f.structure != nil {
		if err := s.fetchParts(ctx, f, &p); err != nil {
			if !errors.Is(err, errThrottled) {
				s.strike(ctx, f.uid, "body parts fetch failed")
			}
			return nil, err
		}
	}
	m := message.Build(p, w.cfg.Limits)
	w.markTooLarge(m, f.size)
	return m, nil
}

// fetchParts fetches the sections the plan needs with BODY.PEEK (planParts), each capped at what
// Build would use; a cut part is listed in PartialParts.
//
// The sections together read at most MaxMessageSize minus the header (a message is never read
// beyond the size cap), and the fetch is sent only when the budget grants its cost; otherwise it
// returns errThrottled.
func (s *session) fetchParts(ctx context.Context, f *fetched, p *message.Pieces) error {
	pp := s.planParts(f)
	p.PartialParts = pp.partial
	if pp.opts == nil {
		return nil
	}
	if ok, err := s.admit(ctx, pp.cost); !ok || err != nil {
		if err == nil {
			err = errThrottled
		}
		return err
	}
	got, _, err := s.fetch(imap.UIDSetNum(imap.UID(f.uid)), pp.opts, pp.capBytes)
	s.endFetch()
	if err != nil {
		return fmt.Errorf("uid fetch %d (body parts): %w", f.uid, err)
	}
	pp.apply(f, got[f.uid])
	p.Parts = f.parts
	return nil
}

// partsPlan is the second pass of one message: the FETCH options (nil when nothing is needed),
// what they may read, and the sections known in advance to be cut.
type partsPlan struct {
	opts     *imap.FetchOptions
	key      string // the section list, for sending equal lists as one command
	cost     int64  // budget reservation
	capBytes int64  // the largest cap of a section: no literal in the answer may be longer
	caps     map[string]int64
	sizes    map[string]int64
	partial  map[string]bool
}

// need is what the plan's FETCH asks of body sections per message at most: partial sizes, and a
// whole section counted as unbounded.
func (pp partsPlan) need() int64 {
	var n int64
	for _, it := range pp.opts.BodySection {
		if it.Partial == nil {
			return math.MaxInt64
		}
		n += it.Partial.Size
	}
	return n
}

// planParts chooses the sections of f the plan needs (message.Sections: the bodies, a report's
// parts, the calendar part), each capped at what the message package reads of it.
func (s *session) planParts(f *fetched) partsPlan {
	w := s.w
	plan := w.cfg.Plan
	pp := partsPlan{partial: map[string]bool{}, caps: map[string]int64{}}
	if !plan.parts() || f.structure == nil {
		return pp
	}
	sections := message.Sections(f.header, f.structure, w.cfg.Limits,
		message.Wanted{Text: plan.Text, HTML: plan.HTML, ReplyText: plan.ReplyText, Reports: plan.Reports, Calendar: plan.Calendar})
	if len(sections) == 0 {
		return pp
	}
	for _, sec := range sections {
		pp.caps[sec.Name] = sec.Max
		pp.capBytes = max(pp.capBytes, sec.Max)
	}
	left := w.cfg.MaxMessageSize - int64(len(f.header)) // what the size cap leaves for the parts
	pp.sizes = partSizes(f.structure)
	opts := &imap.FetchOptions{UID: true}
	var key strings.Builder
	for _, section := range sections {
		sec := section.Name
		part, specifier, ok := parseSection(sec)
		if !ok || left <= 0 {
			continue
		}
		item := &imap.FetchItemBodySection{Part: part, Specifier: specifier, Peek: true}
		partCap := min(section.Max, left)
		size, known := pp.sizes[sec]
		if !known || size > partCap {
			item.Partial = &imap.SectionPartial{Offset: 0, Size: partCap}
			if known {
				pp.partial[sec] = true
			}
			left -= partCap
			fmt.Fprintf(&key, "%s<%d> ", sec, partCap)
		} else {
			left -= size
			fmt.Fprintf(&key, "%s ", sec)
		}
		opts.BodySection = append(opts.BodySection, item)
	}
	if len(opts.BodySection) == 0 {
		return pp
	}
	pp.opts, pp.key, pp.cost = opts, key.String(), partsCost(opts.BodySection, pp.sizes)
	return pp
}

// apply records the second pass's answer g (nil when the message was expunged meanwhile: it is
// delivered with what the first pass saw) in f.
func (pp partsPlan) apply(f *fetched, g *fetched) {
	f.partsDone, f.partial = true, pp.partial
	if g == nil {
		return
	}
	f.parts = g.parts // what the size cap has left for attachments (spool) is counted from these
	for sec, b := range g.parts {
		if _, known := pp.sizes[sec]; !known && int64(len(b)) >= pp.caps[sec] {
			f.partial[sec] = true
		}
	}
}

// passTwoBytes bounds what one chunk of a batch's second pass may hold in memory.
const passTwoBytes = 16 << 20

// fetchPartsBatch runs the second pass for a prefix of list and returns its length: the longest
// prefix whose parts fit in passTwoBytes and in what the budget grants now (at least one message,
// unless the budget refuses even that: then errThrottled). It sends one UID FETCH per distinct
// section list, back to back, and reads the answers in order.
func (s *session) fetchPartsBatch(ctx context.Context, list []*fetched) (int, error) {
	plans := make([]partsPlan, 0, len(list))
	var total int64
	for _, f := range list {
		pp := s.planParts(f)
		if len(plans) > 0 && total+pp.cost > passTwoBytes {
			break
		}
		total += pp.cost
		plans = append(plans, pp)
	}
	n, err := s.admitParts(ctx, plans)
	if n == 0 || err != nil {
		if err == nil {
			err = errThrottled
		}
		return 0, err
	}
	defer s.endFetch()
	s.settleAhead()
	var ahead *firstPass // the next batch's first pass, sent with these (catchUp)
	if s.aheadOf != nil {
		ahead, s.aheadOf = s.aheadOf(ctx), nil
	}
	type group struct {
		set  imap.UIDSet
		pp   partsPlan
		cmd  *imapclient.FetchCommand
		uids []uint32

		got     map[uint32]*fetched
		lastUID uint32
		err     error
	}
	var groups []*group
	byKey := map[string]*group{}
	for i, pp := range plans[:n] {
		if pp.opts == nil {
			list[i].partsDone, list[i].partial = true, pp.partial
			continue
		}
		g := byKey[pp.key]
		if g == nil {
			g = &group{pp: pp}
			byKey[pp.key] = g
			groups = append(groups, g)
		}
		g.set.AddNum(imap.UID(list[i].uid))
		g.uids = append(g.uids, list[i].uid)
	}
	// Sent in ascending order of what they ask per message, the first pass sent ahead among them:
	// the response sniffer bounds body-section literals by what the last FETCH written asked, so
	// an answer never meets a smaller bound than its own command's.
	slices.SortStableFunc(groups, func(a, b *group) int { return cmp.Compare(a.pp.need(), b.pp.need()) })
	s.begin()
	for _, g := range groups {
		if ahead != nil && int64(s.w.cfg.Limits.HeaderBytes) <= g.pp.need() {
			s.sendFirstPass(ahead)
			s.ahead, ahead = ahead, nil
		}
		g.cmd = s.c.Fetch(g.set, g.pp.opts)
	}
	if ahead != nil {
		s.sendFirstPass(ahead)
		s.ahead = ahead
	}
	if len(groups) == 0 {
		return n, nil
	}
	// Each command's answers are read on a goroutine of its own: a server may interleave the
	// answers of commands sent together (Dovecot runs FETCHes in parallel), and the library hands
	// a literal to the command it belongs to and waits until it is read.
	var wg sync.WaitGroup
	for _, g := range groups {
		wg.Go(func() { g.got, g.lastUID, _, g.err = s.readFetch(g.cmd, g.set, g.pp.capBytes, keepLimit{}) })
	}
	wg.Wait()
	var firstErr error
	for _, g := range groups {
		if g.err != nil {
			if firstErr == nil {
				s.blame(ctx, g.uids, g.lastUID)
				firstErr = fmt.Errorf("uid fetch %s (body parts): %w", g.set, g.err)
			}
			continue
		}
		for i, f := range list[:n] {
			if g.set.Contains(imap.UID(f.uid)) {
				plans[i].apply(f, g.got[f.uid])
			}
		}
	}
	if firstErr != nil {
		return 0, firstErr
	}
	return n, nil
}

// degraded delivers a message that failed to fetch maxFetchFailures times in a row from whatever
// a minimal fetch still returns, with the "fetch_failed" defect, so the mailbox moves on.
func (s *session) degraded(ctx context.Context, uid uint32) error {
	w := s.w
	opts := &imap.FetchOptions{UID: true, Flags: true, RFC822Size: true, InternalDate: true}
	got, _, fetchErr := s.fetch(imap.UIDSetNum(imap.UID(uid)), opts, 0)
	f, ok := got[uid]
	if !ok {
		if fetchErr == nil {
			w.log.Debug("message vanished before fetch", "uid", uid)
			delete(w.failures, uid)
			return nil
		}
		f = &fetched{uid: uid}
	}
	w.log.Warn("message failed to fetch; delivering what is known", "uid", uid,
		"failures", w.failures[uid], "size", f.size)
	m := message.Build(message.Pieces{Size: f.size, Flags: f.flags, InternalDate: f.date}, w.cfg.Limits)
	if !slices.Contains(m.Defects, "fetch_failed") {
		m.Defects = append(m.Defects, "fetch_failed")
		slices.Sort(m.Defects)
	}
	// Without a header there is no stable identity: key on the mailbox position instead, so two
	// broken messages of equal size are never mistaken for one another.
	sum := sha256.New()
	fmt.Fprintf(sum, "fetch_failed\x00%s\x00%s\x00", w.cfg.Account, w.cfg.Mailbox)
	binary.Write(sum, binary.BigEndian, [2]uint32{s.validity, uid})
	m.Key = hex.EncodeToString(sum.Sum(nil))
	ev := s.event(uid, m)
	b := s.newBatch()
	if err := s.handle(ctx, b, f.date, ev, w.h.Match(ev)); err != nil {
		return err
	}
	if err := s.commit(ctx, b); err != nil {
		return err
	}
	if fetchErr != nil {
		return fmt.Errorf("uid fetch %d (minimal): %w", uid, fetchErr)
	}
	return nil
}

// batch is messages handled and not yet committed: their commits in ascending UID order, their
// keys (a key repeated within the batch counts as seen), and their spooled attachment files.
type batch struct {
	commits []store.Commit
	keys    map[string]bool
	seen    []bool
	spools  []*spool.Message
	cp      store.Checkpoint // the checkpoint after the last entry
}

func (s *session) newBatch() *batch { return &batch{keys: map[string]bool{}, cp: s.cp} }

// handle asks d for the jobs of ev (with its spooled attachment files, if any), unless its key
// was already processed, and adds them and the advanced checkpoint to b.
func (s *session) handle(ctx context.Context, b *batch, date time.Time, ev *Event, d Matched) error {
	w := s.w
	uid, m := ev.UID, ev.Message
	failpoint.Hit("after_fetch")
	s.dog.set(dogOff) // nothing is owed by the server while we handle and commit
	seen := b.keys[m.Key]
	if !seen {
		var err error
		if seen, err = w.st.Seen(ctx, m.Key); err != nil {
			return fmt.Errorf("seen uid %d: %w", uid, err)
		}
	}
	var jobs []store.Job
	if seen {
		w.log.Info("message already processed; skipping", "uid", uid, "message_id", m.MessageID)
	} else {
		var err error
		if jobs, err = d.Jobs(ctx, ev); err != nil {
			return fmt.Errorf("handle uid %d: %w", uid, err)
		}
	}
	cp := store.Checkpoint{UIDValidity: s.validity, LastUID: uid, LastInternalDate: date}
	if date.IsZero() {
		cp.LastInternalDate = b.cp.LastInternalDate
	}
	b.commits = append(b.commits, store.Commit{Checkpoint: cp, Key: m.Key, Jobs: jobs})
	b.keys[m.Key] = true
	b.seen = append(b.seen, seen)
	b.cp = cp
	return nil
}

// commit writes b in one State transaction and advances the session's checkpoint; the spooled
// files of b are removed either way.
func (s *session) commit(ctx context.Context, b *batch) error {
	w := s.w
	defer func() {
		for _, sp := range b.spools {
			w.removeSpool(sp)
		}
	}()
	if len(b.commits) == 0 {
		return nil
	}
	first, last := b.commits[0].Checkpoint.LastUID, b.cp.LastUID
	if err := w.st.Commit(ctx, b.commits); err != nil {
		if first == last {
			return fmt.Errorf("commit uid %d: %w", last, err)
		}
		return fmt.Errorf("commit uids %d–%d: %w", first, last, err)
	}
	failpoint.Hit("after_commit")
	s.cp = b.cp
	s.progressed = true
	for i, c := range b.commits {
		uid := c.Checkpoint.LastUID
		delete(w.failures, uid)
		w.log.Debug("message committed", "uid", uid, "jobs", len(c.Jobs), "seen", b.seen[i])
	}
	w.update(func(st *Status) { st.LastUID = last })
	return nil
}

func toUIDSet(uids []uint32) imap.UIDSet {
	var set imap.UIDSet
	for _, u := range uids {
		set.AddNum(imap.UID(u))
	}
	return set
}

// sectionName renders an IMAP part path as "1.2".
func sectionName(part []int) string {
	var b strings.Builder
	for i, n := range part {
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(strconv.Itoa(n))
	}
	return b.String()
}

// parseSection parses "1.2" into a part path, and "3.HEADER" into a part path and the HEADER
// specifier.
func parseSection(sec string) ([]int, imap.PartSpecifier, bool) {
	var specifier imap.PartSpecifier
	if name, ok := strings.CutSuffix(sec, ".HEADER"); ok {
		sec, specifier = name, imap.PartSpecifierHeader
	}
	var part []int
	for f := range strings.SplitSeq(sec, ".") {
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, "", false
		}
		part = append(part, n)
	}
	return part, specifier, len(part) > 0
}

// partSizes maps each single-part section of a BODYSTRUCTURE to its encoded size.
func partSizes(bs imap.BodyStructure) map[string]int64 {
	sizes := map[string]int64{}
	bs.Walk(func(path []int, part imap.BodyStructure) bool {
		if sp, ok := part.(*imap.BodyStructureSinglePart); ok {
			sizes[sectionName(path)] = int64(sp.Size)
		}
		return true
	})
	return sizes
}

// checkFetchRecord looks, once per process, for the fetch record of a previous process: a batch
// it began and never finished, because it crashed, hung or was killed while fetching or handling
// those messages. That range is then fetched one message at a time (w.suspect), and a record of a
// single message counts as a strike of it: after maxFetchFailures such restarts it is delivered
// degraded instead of stopping the process again.
func (s *session) checkFetchRecord(ctx context.Context) error {
	w := s.w
	r, ok, err := w.st.UnfinishedFetch(ctx)
	if err != nil {
		return fmt.Errorf("read fetch record: %w", err)
	}
	if !ok || r.UIDValidity != s.validity || r.Hi <= s.cp.LastUID {
		return nil
	}
	w.suspect = r
	if r.Lo == r.Hi {
		n, err := w.st.StrikeFetch(ctx, s.validity, r.Hi, "the previous process stopped while fetching or handling it")
		if err != nil {
			return fmt.Errorf("record fetch failure of uid %d: %w", r.Hi, err)
		}
		w.failures[r.Hi] = n
	}
	w.log.Warn("the previous process stopped while fetching; fetching those messages one at a time",
		"from_uid", r.Lo, "to_uid", r.Hi, "failures", w.failures[r.Hi])
	return nil
}

// suspected reports whether uid lies in the range a previous process did not finish.
func (w *Watcher) suspected(uid uint32) bool {
	return w.suspect.Hi != 0 && uid >= w.suspect.Lo && uid <= w.suspect.Hi
}

// beginFetch records, before the batch's first byte is read, that the UIDs lo to hi are being
// fetched.
func (s *session) beginFetch(ctx context.Context, lo, hi uint32) error {
	r := store.FetchRange{UIDValidity: s.validity, Lo: lo, Hi: hi, Begun: time.Now()}
	if err := s.w.st.BeginFetch(ctx, r); err != nil {
		return fmt.Errorf("record fetch of uids %d–%d: %w", r.Lo, r.Hi, err)
	}
	return nil
}

// endFetchRecord clears the fetch record when a batch ended without its last message committed
// (it vanished, or the budget stopped the batch).
func (s *session) endFetchRecord(ctx context.Context, hi uint32) error {
	if s.cp.LastUID >= hi {
		return nil // the commit cleared it
	}
	if err := s.w.st.EndFetch(ctx); err != nil {
		return fmt.Errorf("clear fetch record: %w", err)
	}
	return nil
}

// strike records one failed fetch of uid and returns how many are recorded. A State that cannot
// record it leaves the count in memory, as it was before fetch failures were persisted.
func (s *session) strike(ctx context.Context, uid uint32, reason string) int {
	w := s.w
	n, err := w.st.StrikeFetch(ctx, s.validity, uid, reason)
	if err != nil {
		w.log.Warn("could not record a fetch failure", "uid", uid, "err", err)
	}
	w.failures[uid] = max(n, w.failures[uid]+1)
	return w.failures[uid]
}

// processSafe is process with a panic while building or handling the message turned into a fetch
// failure of it: the session ends with an error (and reconnects), the process stays up, and after
// maxFetchFailures the message is delivered degraded.
func (s *session) processSafe(ctx context.Context, f *fetched, b *batch) (err error) {
	defer func() {
		if r := recover(); r != nil {
			n := s.strike(ctx, f.uid, "panic while handling the message")
			s.w.log.Error("panic while handling a message", "uid", f.uid, "failures", n,
				"panic", fmt.Sprintf("%.200v", r), "stack", string(debug.Stack()))
			err = fmt.Errorf("handle uid %d: panic (failure %d of %d)", f.uid, n, maxFetchFailures)
		}
	}()
	return s.process(ctx, f, b)
}
