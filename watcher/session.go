package watcher

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"mime"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-message/charset"
	"github.com/emersion/go-sasl"

	"github.com/mailhook/mailhook/store"
)

// session is one IMAP connection: created by Watcher.session, used only by the Run goroutine.
type session struct {
	w    *Watcher
	c    *imapclient.Client
	dog  *watchdog
	wake chan struct{} // EXISTS seen; buffered(1), filled without blocking by the reader goroutine

	validity   uint32
	cp         store.Checkpoint
	progressed bool // something was committed in this session

	// exists is the mailbox's message count as the server last said (SELECT, EXISTS, EXPUNGE);
	// seenExists is what it was when the last catch-up searched. Their difference estimates how
	// many messages an IDLE push announced, which decides whether the first pass can be sent
	// right behind DONE (see idle).
	exists     atomic.Uint32
	seenExists uint32
	// aheadOf, while catchUp handles a batch, prepares the next batch's first pass, to be sent with
	// this batch's second pass (fetchPartsBatch calls it once; nil: nothing to send ahead);
	// ahead is that first pass once sent, until catchUp takes it.
	aheadOf func(context.Context) *firstPass
	// searched is the answer of the UID SEARCH sent with SELECT (preSearch), for the first
	// catch-up of the session to use instead of searching; nil once used or when there is none.
	searched *imap.SearchData
	// batchCap is how many UIDs the next first pass of a catch-up may ask for: it starts each
	// catch-up at Config.BatchSize and doubles up to MaxBatchSize while batches arrive whole.
	batchCap int
	ahead    *firstPass

	conn     net.Conn                   // the counting connection below TLS, for closing it from anywhere
	hold     atomic.Pointer[Hold]       // budget reservation of the FETCH in flight; fed by the reader
	throttle Throttle                   // why the budget refused the last fetch; set when catchUp stopped for it
	oversize atomic.Int64               // size of an oversized literal the sniffer refused, 0 if none
	bound    atomic.Pointer[boundError] // the bound a server response broke, nil if none

	mu       sync.Mutex
	untagged *imap.Error // last untagged BYE or [ALERT] the sniffer saw
}

// serverStatus receives untagged BYE and [ALERT] responses from the sniffer, on the reader
// goroutine.
func (s *session) serverStatus(e *imap.Error) {
	s.mu.Lock()
	s.untagged = e
	s.mu.Unlock()
	if e.Code == imap.ResponseCodeAlert {
		s.w.alert(e.Text)
	}
}

// shutdownGrace is how long a session may take, once ctx is done, to end IDLE with DONE and
// LOGOUT before its connection is closed under it.
const shutdownGrace = 2 * time.Second

// session runs one connection until it fails or ctx is done. progressed reports whether any
// message was committed, so the caller can reset its backoff.
func (w *Watcher) session(ctx context.Context) (progressed bool, err error) {
	return w.sessionWith(ctx, (*session).run)
}

// sessionWith dials and sets up one connection (counting, budget, watchdog, ctx) and runs body on
// it: the watch loop (session.run) or a one-shot fetch (FetchMessages).
func (w *Watcher) sessionWith(ctx context.Context, body func(s *session, ctx context.Context, conn net.Conn) error) (progressed bool, err error) {
	w.update(func(s *Status) { s.Connects++ })
	s := &session{w: w, wake: make(chan struct{}, 1)}

	dial := w.cfg.Dial
	if dial == nil {
		dial = dialTCP
	}
	raw, err := dial(ctx, "tcp", w.cfg.Addr)
	if err != nil {
		return false, fmt.Errorf("dial %s: %w", w.cfg.Addr, err)
	}
	var cc *countingConn
	s.dog = newWatchdog(&w.cfg, func() { cc.Close() })
	cc = &countingConn{Conn: raw, onRead: func(n int, at time.Time) {
		w.bytesRead.Add(int64(n))
		w.lastRead.Store(at.UnixNano())
		if w.cfg.Budget != nil {
			w.cfg.Budget.Charge(int64(n))
		}
		s.hold.Load().Read(int64(n))
		s.dog.read(at)
	}}
	defer cc.Close()
	s.dog.set(dogCommand)
	stopDog := s.dog.start()
	defer stopDog()
	// Every blocking Wait below ends when ctx is done: closing the conn fails all commands. The
	// close waits shutdownGrace, so a loop that notices ctx itself ends IDLE with DONE and logs
	// out first; a command that hangs is cut off when the grace runs out.
	graceOver := make(chan struct{})
	defer close(graceOver)
	stopAfter := context.AfterFunc(ctx, func() {
		t := time.NewTimer(shutdownGrace)
		defer t.Stop()
		select {
		case <-t.C:
			cc.Close()
		case <-graceOver:
		}
	})
	defer stopAfter()

	s.conn = cc
	err = body(s, ctx, cc)
	if s.c != nil {
		if ctx.Err() != nil && s.c.State() != imap.ConnStateLogout {
			s.begin()
			_ = s.c.Logout().Wait() // RFC 3501 §6.1.3; bounded by shutdownGrace
		}
		s.c.Close()
	}
	s.endFetch()
	if err == nil {
		return s.progressed, nil
	}
	s.mu.Lock()
	ue := s.untagged
	s.mu.Unlock()
	if ue != nil { // the reason the server gave for closing, or its last alert
		err = fmt.Errorf("%w (server: %w)", err, ue)
	}
	if why := s.dog.reason(); why != "" {
		err = fmt.Errorf("watchdog closed the connection (%s): %w", why, err)
	}
	if be := s.bound.Load(); be != nil && !errors.Is(err, errResponseBound) {
		err = fmt.Errorf("%w: %w", be, err)
	}
	return s.progressed, s.oversizeErr(err)
}

func (s *session) run(ctx context.Context, conn net.Conn) error {
	w := s.w
	if err := s.connect(ctx, conn); err != nil {
		return err
	}
	if err := s.login(ctx); err != nil {
		return err
	}
	caps := s.c.Caps()
	cp, stored, err := w.st.Checkpoint(ctx)
	if err != nil {
		return fmt.Errorf("load checkpoint: %w", err)
	}
	// ID and SELECT go out together (SELECT does not depend on ID's answer; a server that wants ID
	// first still reads it first): one round trip less per session. So does the first catch-up's
	// UID SEARCH when the checkpoint it starts from is known before SELECT answers (see preSearch).
	var id *imapclient.IDCommand
	s.begin()
	if caps.Has(imap.CapID) {
		id = s.c.ID(&imap.IDData{Name: "mailhook", Version: w.cfg.Version, SupportURL: w.cfg.Contact})
	}
	selCmd := s.c.Select(w.cfg.Mailbox, nil)
	pre := s.sendPreSearch(cp, stored)
	if id != nil {
		if _, err := id.Wait(); err != nil {
			var ie *imap.Error
			if !errors.As(err, &ie) {
				return fmt.Errorf("id: %w", err)
			}
			w.log.Debug("server refused ID", "err", err) // RFC 2971 §3.1: never fatal
		}
	}
	sel, err := selCmd.Wait()
	if err != nil {
		return fmt.Errorf("select %q: %w", w.cfg.Mailbox, err)
	}
	s.exists.Store(sel.NumMessages)
	if err := s.reconcileWith(ctx, sel, cp, stored); err != nil {
		return err
	}
	if err := s.takePreSearch(pre); err != nil {
		return err
	}
	idle := caps.Has(imap.CapIdle) || caps.Has(imap.CapIMAP4rev2)
	w.log.Info("session ready", "uidvalidity", s.validity, "last_uid", s.cp.LastUID, "idle", idle)
	w.update(func(st *Status) {
		if w.lastAlert == "" {
			st.Reason = ""
		}
	})

	var pushed *pushedFetch
	for {
		drain(s.wake)
		w.setState(StateFetching)
		if pushed != nil {
			err = s.catchUpPushed(ctx, pushed)
			pushed = nil
		} else {
			err = s.catchUp(ctx)
		}
		if err != nil {
			return err
		}
		if err := s.runPostActions(ctx); err != nil { // between IDLE cycles: go-imap admits no other command during IDLE
			return err
		}
		if !s.throttle.Until.IsZero() { // the budget refused a fetch: wait for the window, then go on
			if err := s.waitBudget(ctx); err != nil {
				return err
			}
			continue
		}
		select {
		case <-s.wake: // EXISTS arrived during the catch-up: search again before waiting
			continue
		default:
		}
		refreshed := true
		if idle {
			refreshed, pushed, err = s.idle(ctx)
		} else {
			err = s.poll(ctx)
		}
		if err != nil {
			return err
		}
		if refreshed {
			if err := s.checkValidity(ctx); err != nil {
				return err
			}
		}
	}
}

// checkValidity selects the mailbox again and, when its UIDVALIDITY changed, reconciles the
// checkpoint as at the start of a session. A server need not tell a session that its mailbox was
// deleted and re-created: Dovecot goes on answering UID SEARCH, and even STATUS, from the old view.
// Run on every IDLE refresh and poll, this bounds that blind spot to one refresh interval, for
// the price of one SELECT.
func (s *session) checkValidity(ctx context.Context) error {
	w := s.w
	s.begin()
	sel, err := s.c.Select(w.cfg.Mailbox, nil).Wait()
	if err != nil {
		return fmt.Errorf("select %q again: %w", w.cfg.Mailbox, err)
	}
	s.exists.Store(sel.NumMessages)
	if sel.UIDValidity == s.validity {
		return nil
	}
	w.log.Warn("uidvalidity changed while selected", "old_uidvalidity", s.validity, "uidvalidity", sel.UIDValidity)
	return s.reconcile(ctx, sel)
}

func drain(ch chan struct{}) {
	select {
	case <-ch:
	default:
	}
}

// begin marks that a command is about to be sent: the server now owes us bytes.
func (s *session) begin() { s.dog.set(dogCommand) }

// connect wraps conn in TLS as configured and waits for the server greeting.
func (s *session) connect(ctx context.Context, conn net.Conn) error {
	cfg := &s.w.cfg
	opts := &imapclient.Options{
		WordDecoder: &mime.WordDecoder{CharsetReader: charset.Reader},
		UnilateralDataHandler: &imapclient.UnilateralDataHandler{
			// Runs on the reader goroutine: never issue a command here, only wake the loop.
			Mailbox: func(d *imapclient.UnilateralDataMailbox) {
				if d.NumMessages != nil {
					s.exists.Store(*d.NumMessages)
					select {
					case s.wake <- struct{}{}:
					default:
					}
				}
			},
			Expunge: func(uint32) {
				for {
					n := s.exists.Load()
					if n == 0 || s.exists.CompareAndSwap(n, n-1) {
						return
					}
				}
			},
		},
	}
	sniff := &responseSniffer{onStatus: s.serverStatus, maxLiteral: cfg.MaxMessageSize, onOversize: s.oversized,
		onBound: func(e *boundError) { s.bound.CompareAndSwap(nil, e) }}
	switch cfg.Security {
	case SecurityTLS:
		tc := tls.Client(conn, s.tlsConfig([]string{"imap"}))
		if err := tc.HandshakeContext(ctx); err != nil {
			return fmt.Errorf("tls handshake with %s: %w", cfg.Addr, err)
		}
		s.c = imapclient.New(newSniffConn(tc, sniff), opts)
	case SecurityStartTLS:
		// STARTTLS by hand (starttls.go): go-imap's upgrade replaces the connection below any
		// wrapper of ours, which would leave the session without the sniffer and its bounds.
		tc, err := startTLS(ctx, conn, s.tlsConfig(nil))
		if err != nil {
			return fmt.Errorf("starttls with %s: %w", cfg.Addr, err)
		}
		s.c = imapclient.New(newSniffConn(tc, sniff), opts)
	default:
		s.c = imapclient.New(newSniffConn(conn, sniff), opts)
	}
	if err := s.c.WaitGreeting(); err != nil {
		return fmt.Errorf("greeting from %s: %w", cfg.Addr, err)
	}
	return nil
}

func (s *session) tlsConfig(alpn []string) *tls.Config {
	var tc *tls.Config
	if s.w.cfg.TLS != nil {
		tc = s.w.cfg.TLS.Clone()
	} else {
		tc = &tls.Config{}
	}
	if tc.ServerName == "" {
		host, _, _ := net.SplitHostPort(s.w.cfg.Addr)
		tc.ServerName = host
	}
	if tc.NextProtos == nil {
		tc.NextProtos = alpn
	}
	return tc
}

// login authenticates: Config.SASL when set, else LOGIN, else AUTHENTICATE PLAIN when the
// server advertises LOGINDISABLED (RFC 3501 §6.2.3). Errors never contain the password.
func (s *session) login(ctx context.Context) error {
	cfg := &s.w.cfg
	if s.c.State() == imap.ConnStateAuthenticated { // PREAUTH
		return nil
	}
	s.begin()
	caps := s.c.Caps()
	if caps == nil {
		return errors.New("capability: no answer")
	}
	switch {
	case cfg.SASL != nil:
		sc, err := cfg.SASL(ctx)
		if err != nil {
			return fmt.Errorf("authenticate as %q: %w", cfg.Username, err)
		}
		if err := s.c.Authenticate(sc); err != nil {
			return fmt.Errorf("authenticate as %q: %w", cfg.Username, markRefused(err))
		}
	case caps.Has(imap.CapLoginDisabled):
		if !caps.Has(imap.Cap("AUTH=PLAIN")) {
			return fmt.Errorf("login as %q: server has LOGINDISABLED and no AUTH=PLAIN", cfg.Username)
		}
		if err := s.c.Authenticate(sasl.NewPlainClient("", cfg.Username, cfg.Password)); err != nil {
			return fmt.Errorf("authenticate plain as %q: %w", cfg.Username, err)
		}
	default:
		if err := s.c.Login(cfg.Username, cfg.Password).Wait(); err != nil {
			return fmt.Errorf("login as %q: %w", cfg.Username, err)
		}
	}
	s.begin()
	if s.c.Caps() == nil { // LOGIN invalidates the capability list; ask again
		return errors.New("capability after login: no answer")
	}
	return nil
}

// reconcile establishes the checkpoint for this session. With none
// stored, Config.Start decides. With a different UIDVALIDITY (RFC 3501 §2.3.1.1), all stored UID
// state is dropped before anything is fetched: the new checkpoint sits just below the oldest
// message of UID SEARCH SINCE (last internal date − 1 day), and the Seen check keeps the rescan
// from repeating what was already processed.
func (s *session) reconcile(ctx context.Context, sel *imap.SelectData) error {
	cp, ok, err := s.w.st.Checkpoint(ctx)
	if err != nil {
		return fmt.Errorf("load checkpoint: %w", err)
	}
	return s.reconcileWith(ctx, sel, cp, ok)
}

// reconcileWith is reconcile with the stored checkpoint already read (ok: there is one).
func (s *session) reconcileWith(ctx context.Context, sel *imap.SelectData, cp store.Checkpoint, ok bool) error {
	w := s.w
	cfg := &w.cfg
	s.validity = sel.UIDValidity
	var err error
	switch {
	case ok && cp.UIDValidity == s.validity:
		s.cp = cp
	case ok:
		var since time.Time
		if !cp.LastInternalDate.IsZero() {
			since = cp.LastInternalDate.Add(-store.RescanLookback) // the stores keep the seen keys of this window
		}
		last, err := s.lastBefore(since, sel)
		if err != nil {
			return err
		}
		w.log.Warn("uidvalidity changed; rescanning", "old_uidvalidity", cp.UIDValidity,
			"uidvalidity", s.validity, "since", since.Format(time.DateOnly), "last_uid", last)
		s.cp = store.Checkpoint{UIDValidity: s.validity, LastUID: last, LastInternalDate: cp.LastInternalDate}
		if err := w.st.ResetCheckpoint(ctx, s.cp); err != nil {
			return fmt.Errorf("reset checkpoint: %w", err)
		}
	default:
		cp := store.Checkpoint{UIDValidity: s.validity}
		switch cfg.Start {
		case StartAll:
		case StartNew:
			next, err := s.uidNext(sel)
			if err != nil {
				return err
			}
			cp.LastUID = next - 1
			// Everything up to now counts as covered, which bounds a later UIDVALIDITY rescan.
			cp.LastInternalDate = time.Now()
		default:
			if cp.LastUID, err = s.lastBefore(w.date, sel); err != nil {
				return err
			}
			cp.LastInternalDate = w.date
		}
		w.log.Info("first run; checkpoint created", "start", cfg.Start, "uidvalidity", s.validity, "last_uid", cp.LastUID)
		if err := w.st.ResetCheckpoint(ctx, cp); err != nil {
			return fmt.Errorf("create checkpoint: %w", err)
		}
		s.cp = cp
	}
	if w.failValidity != s.validity {
		clear(w.failures)
		w.failValidity = s.validity
	}
	if !w.recordChecked {
		if err := s.checkFetchRecord(ctx); err != nil {
			return err
		}
		w.recordChecked = true
	}
	w.update(func(st *Status) { st.UIDValidity, st.LastUID = s.validity, s.cp.LastUID })
	return nil
}

// lastBefore returns the UID just below the oldest message with INTERNALDATE on or after since
// (the whole mailbox when since is zero), or UIDNEXT−1 when there is none.
func (s *session) lastBefore(since time.Time, sel *imap.SelectData) (uint32, error) {
	if since.IsZero() {
		return 0, nil
	}
	s.begin()
	data, err := s.c.UIDSearch(&imap.SearchCriteria{Since: since}, nil).Wait()
	if err != nil {
		return 0, fmt.Errorf("uid search since %s: %w", since.Format(time.DateOnly), err)
	}
	uids, err := searchUIDs(data, 0, searchLimit(s.c.Mailbox()))
	if err != nil {
		return 0, fmt.Errorf("uid search since %s: %w", since.Format(time.DateOnly), err)
	}
	if len(uids) == 0 {
		next, err := s.uidNext(sel)
		return next - 1, err
	}
	return slices.Min(uids) - 1, nil
}

// uidNext returns UIDNEXT from SELECT, or asks for the highest UID when the server left it out.
func (s *session) uidNext(sel *imap.SelectData) (uint32, error) {
	if sel.UIDNext != 0 {
		return uint32(sel.UIDNext), nil
	}
	s.begin()
	data, err := s.c.UIDSearch(&imap.SearchCriteria{UID: []imap.UIDSet{{{Start: 0, Stop: 0}}}}, nil).Wait()
	if err != nil {
		return 0, fmt.Errorf("uid search *: %w", err)
	}
	uids, err := searchUIDs(data, 0, searchLimit(s.c.Mailbox()))
	if err != nil {
		return 0, fmt.Errorf("uid search *: %w", err)
	}
	if len(uids) == 0 {
		return 1, nil
	}
	return slices.Max(uids) + 1, nil
}

// idle waits in IDLE (RFC 2177) until an EXISTS push, the refresh interval or ctx, then ends it
// with DONE. refreshed reports that the refresh interval ran out. The caller always re-runs the
// catch-up afterwards: after a push announcing few messages, idle has already sent its first pass
// (pushed, see sendPushedFetch) right behind DONE.
func (s *session) idle(ctx context.Context) (refreshed bool, pushed *pushedFetch, err error) {
	w := s.w
	w.setState(StateIdle)
	s.begin()
	cmd, err := s.c.Idle()
	if err != nil {
		return false, nil, fmt.Errorf("idle: %w", err)
	}
	w.update(func(st *Status) { st.Idles++ })
	s.dog.set(dogIdle)
	t := time.NewTimer(w.cfg.IdleRefresh)
	pa, stopPA := s.postActionsDue(ctx)
	defer stopPA()
	why := "refresh"
	select {
	case <-s.wake:
		why = "exists"
	case <-pa:
		why = "post_actions"
	case <-t.C:
	case <-ctx.Done():
		why = "stop"
	case <-s.c.Closed():
		why = "closed"
	}
	t.Stop()
	w.log.Debug("leaving idle", "why", why)
	s.dog.endIdle()
	if err := cmd.Close(); err != nil {
		return false, nil, fmt.Errorf("idle done: %w", err)
	}
	if why == "exists" {
		// DONE is sent; the FETCH follows without waiting for IDLE's tagged OK (RFC 3501
		// allows it: IDLE's end is the client's DONE, not the server's answer).
		pushed = s.sendPushedFetch(ctx)
	}
	if err := cmd.Wait(); err != nil {
		pushed.abandon(s)
		return false, nil, fmt.Errorf("idle: %w", err)
	}
	if err := ctx.Err(); err != nil {
		pushed.abandon(s)
		return false, nil, err
	}
	return why == "refresh", pushed, nil
}

// pushedFetch is a first pass sent right behind DONE: `UID FETCH last+1:*`, keeping at most max
// messages (what was reserved for).
type pushedFetch struct {
	cmd *imapclient.FetchCommand
	set imap.UIDSet
	max int
}

// sendPushedFetch sends the first pass for the messages an IDLE push announced, when they are few
// (at most half a batch by the EXISTS count) and the budget grants them at once; otherwise it
// returns nil and catchUp searches as usual. Up to twice the announced count (at least 4) is
// reserved and kept: more than that arriving meanwhile is left to the next catch-up.
func (s *session) sendPushedFetch(ctx context.Context) *pushedFetch {
	w := s.w
	now := s.exists.Load()
	if now < s.seenExists || int(now-s.seenExists) > w.cfg.BatchSize/2 {
		return nil
	}
	keep := min(max(2*int(now-s.seenExists), 4), w.cfg.BatchSize)
	if w.cfg.Budget != nil {
		h, _, err := w.cfg.Budget.Reserve(ctx, w.firstPassCost(keep), w.fence)
		if h == nil || err != nil { // catchUp's own reservation reports the error
			return nil
		}
		s.hold.Store(h)
		w.resumed()
	}
	p := &pushedFetch{set: imap.UIDSet{{Start: imap.UID(s.cp.LastUID + 1), Stop: 0}}, max: keep}
	s.seenExists = now
	s.begin()
	p.cmd = s.c.Fetch(p.set, s.firstPassOptions())
	return p
}

// abandon reads and drops the answer of a pushed fetch that will not be processed.
func (p *pushedFetch) abandon(s *session) {
	if p != nil {
		_ = p.cmd.Close()
		s.endFetch()
	}
}

// poll waits PollInterval (or an EXISTS, or ctx), then sends NOOP, for servers without IDLE.
func (s *session) poll(ctx context.Context) error {
	w := s.w
	w.setState(StatePolling)
	s.dog.set(dogOff)
	t := time.NewTimer(w.cfg.PollInterval)
	pa, stopPA := s.postActionsDue(ctx)
	defer stopPA()
	select {
	case <-s.wake:
	case <-pa:
	case <-t.C:
	case <-ctx.Done():
	case <-s.c.Closed():
	}
	t.Stop()
	if err := ctx.Err(); err != nil {
		return err
	}
	s.begin()
	if err := s.c.Noop().Wait(); err != nil {
		return fmt.Errorf("noop: %w", err)
	}
	return nil
}
