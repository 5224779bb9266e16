package watcher

import (
	"cmp"
	"context"
	"fmt"
	"slices"
)

// firstPass is a first-pass UID FETCH of one batch whose answers are read on a goroutine of its
// own, so the command can travel with the second pass of the batch before it: a catch-up then
// costs about one round trip per batch instead of two (catchUp).
type firstPass struct {
	batch []uint32 // ascending
	// hold is the reservation of a first pass sent ahead, released once its answers are read;
	// nil when the caller's s.hold covers it. The bytes it reads are charged to whatever
	// reservation the session holds then (or none), so the budget's reserved total never falls
	// below what is still to come.
	hold *Hold

	done         chan struct{} // closed once the answers are read
	got          map[uint32]*fetched
	lastUID, cut uint32
	err          error
}

// sendFirstPass writes the first-pass FETCH of fp.batch and starts reading its answers.
func (s *session) sendFirstPass(fp *firstPass) {
	set := toUIDSet(fp.batch)
	keep := keepLimit{bytes: cmp.Or(s.w.cfg.firstPassKeep, batchHeaderBudget)}
	fp.done = make(chan struct{})
	s.begin()
	cmd := s.c.Fetch(set, s.firstPassOptions())
	go func() {
		defer close(fp.done)
		fp.got, fp.lastUID, fp.cut, fp.err = s.readFetch(cmd, set, int64(s.w.cfg.Limits.HeaderBytes), keep)
		fp.hold.Release()
	}()
}

// waitFirstPass waits for the answers of fp. It keeps the messages of the longest prefix of the
// batch that the memory bound admitted (see fetchFirstPass); kept is that prefix's length.
func (s *session) waitFirstPass(ctx context.Context, fp *firstPass) (got map[uint32]*fetched, kept int, err error) {
	s.begin() // the server owes the answers still to come
	<-fp.done
	if fp.err != nil {
		s.blame(ctx, fp.batch, fp.lastUID)
		return nil, 0, fmt.Errorf("uid fetch %s (first pass): %w", toUIDSet(fp.batch), fp.err)
	}
	kept = len(fp.batch)
	if fp.cut != 0 {
		kept, _ = slices.BinarySearch(fp.batch, fp.cut)
		for _, uid := range fp.batch[kept:] {
			delete(fp.got, uid)
		}
	}
	return fp.got, kept, nil
}

// reserveAhead reserves the first pass of up to n messages sent ahead of the batch being handled,
// without waiting and without throttling: it asks for at most half of what the budget has left,
// and a refusal only means the next batch goes unpipelined. It returns how many messages were
// granted (0: none) and the hold. A store error also means none: the loop's own reservation
// reports it.
func (s *session) reserveAhead(ctx context.Context, n int) (int, *Hold) {
	b := s.w.cfg.Budget
	if b == nil {
		return n, nil
	}
	n = min(n, int(b.Usage().Remaining/2/s.w.firstPassCost(1)))
	if n <= 0 {
		return 0, nil
	}
	h, _, err := b.Reserve(ctx, s.w.firstPassCost(n), s.w.fence)
	if h == nil || err != nil {
		return 0, nil
	}
	return n, h
}

// settleAhead waits until the answers of the first pass sent ahead, if any, are read, before
// another command that reads body sections is written: the response sniffer bounds body-section
// literals by what the last FETCH written asked, which must not fall below what that first pass
// asked while its answers still arrive.
func (s *session) settleAhead() {
	if fp := s.ahead; fp != nil {
		s.begin()
		<-fp.done
	}
}
