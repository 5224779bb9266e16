package reply

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailhook/mailhook/internal/testmail"
	"github.com/mailhook/mailhook/outbox"
	"github.com/mailhook/mailhook/store"
	"github.com/mailhook/mailhook/store/sqlite"
)

// fakeClock is the real clock shifted by a settable offset, shared by the store and the
// dispatcher: short backoffs pass in real time, a day passes with Add.
type fakeClock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
}

// syncBuf is a goroutine-safe log sink.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// replyRig is a store, an SMTP sink and a running reply Worker for account "support", wired as the
// daemon wires them.
type replyRig struct {
	t     *testing.T
	dir   string
	st    store.Backend
	sink  *testmail.SMTPSink
	clock *fakeClock
	logs  *syncBuf
	uid   uint32
	stop  func()
	mu    sync.Mutex
	outs  []string
}

func newReplyRig(t *testing.T, perDay int) *replyRig {
	r := &replyRig{t: t, dir: t.TempDir(), clock: &fakeClock{}, logs: &syncBuf{}}
	r.sink = testmail.StartSMTPSink(t, testmail.SMTPSinkOptions{})
	r.start(perDay)
	return r
}

// start opens the store and runs a dispatcher until stopped (or the test ends).
func (r *replyRig) start(perDay int) {
	t := r.t
	st, err := sqlite.Open(r.dir, store.Options{Now: r.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	r.st = st
	sender := newSender(t, SMTPConfig{Addr: r.sink.Addr(), Security: SMTPSecurityPlain})
	logger := slog.New(slog.NewTextHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	w, err := New(st, []Account{{Name: "support", Sender: sender, PerDay: perDay}}, Options{
		Logger: logger,
		Now:    r.clock.Now, Rand: func() float64 { return 0 },
		Retry: outbox.RetryPolicy{MaxAge: time.Hour, MinBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond},
		OnOutcome: func(account, outcome string) {
			r.mu.Lock()
			r.outs = append(r.outs, outcome)
			r.mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	c := outbox.New(st, w.Lanes(), outbox.Options{Name: "reply dispatcher", Logger: logger, Now: r.clock.Now})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = c.Run(ctx)
	}()
	stopped := false
	r.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		<-done
		_ = st.Close()
	}
	t.Cleanup(r.stop)
}

func (r *replyRig) restart(perDay int) {
	r.stop()
	r.start(perDay)
}

// add commits a reply job to sender and returns its id.
func (r *replyRig) add(sender string) string {
	t := r.t
	r.uid++
	tpl := mustTemplate(t, "Re: {{ .Subject }}", "Thanks.", "")
	raw := fmt.Sprintf("Return-Path: <%s>\r\nFrom: %s\r\nTo: help@us.test\r\nSubject: n%d\r\nMessage-ID: <m%d@x>\r\n\r\nhi\r\n", sender, sender, r.uid, r.uid)
	m := parseRaw(t, raw)
	to, skip := Check(m, Policy{OwnAddresses: []string{"help@us.test"}})
	if skip != "" {
		t.Fatal(skip)
	}
	j, err := NewJob(tpl, m, to, Params{Account: "support", From: "help@us.test", OncePer: 7 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := j.Marshal()
	id := store.JobID("support", "INBOX", 1, r.uid, "auto", 0)
	job := store.Job{ID: id, Kind: store.KindReply, Target: "ack", Account: "support", Mailbox: "INBOX",
		UIDValidity: 1, UID: r.uid, Rule: "auto", Body: body}
	if err := store.CommitMessage(context.Background(), r.st, "support", "INBOX", store.Commit{Checkpoint: store.Checkpoint{UIDValidity: 1, LastUID: r.uid}, Jobs: []store.Job{job}}); err != nil {
		t.Fatal(err)
	}
	return id
}

// waitState waits until job id is in state.
func (r *replyRig) waitState(id, state string) store.Job {
	r.t.Helper()
	return r.waitJob(id, state, func(j store.Job) bool { return j.State == state })
}

// waitTried waits until job id is pending again after its first attempt.
func (r *replyRig) waitTried(id string) store.Job {
	r.t.Helper()
	return r.waitJob(id, "pending after one attempt", func(j store.Job) bool { return j.State == store.StatePending && j.Attempts == 1 })
}

// waitJob polls the store every 5 ms until cond holds for job id, failing after 15 s.
func (r *replyRig) waitJob(id, what string, cond func(store.Job) bool) store.Job {
	r.t.Helper()
	deadline := time.NewTimer(15 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		j, _, err := r.st.Job(context.Background(), id)
		if err == nil && cond(j) {
			return j
		}
		select {
		case <-deadline.C:
			r.t.Fatalf("job %s: state %q, attempts %d (err %v); want %s\nlogs:\n%s", id, j.State, j.Attempts, err, what, r.logs.String())
		case <-tick.C:
		}
	}
}

func (r *replyRig) outcomes() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.outs...)
}

// At the worker: one reply per sender and period, even for several messages, and across a
// restart; the job of a skipped reply is done, so post-actions go on.
func TestWorkerOncePerSender(t *testing.T) {
	r := newReplyRig(t, 0)
	a1 := r.add("alice@example.com")
	a2 := r.add("Alice@Example.com")
	b1 := r.add("bob@example.com")
	for _, id := range []string{a1, a2, b1} {
		r.waitState(id, store.StateDone)
	}
	if n := len(r.sink.Messages()); n != 2 {
		t.Fatalf("%d replies sent, want 2 (one per sender)", n)
	}
	r.restart(0)
	a3 := r.add("alice@example.com")
	j := r.waitState(a3, store.StateDone)
	if !strings.Contains(j.LastError, "already replied") {
		t.Errorf("skipped job's last error = %q", j.LastError)
	}
	if n := len(r.sink.Messages()); n != 2 {
		t.Fatalf("after a restart, %d replies sent, want still 2", n)
	}
	// The two senders' replies run concurrently, and either spelling of alice's address may win her
	// ledger entry: each reply must go from the null sender to one of the Return-Paths added.
	for _, m := range r.sink.Messages() {
		if m.From != "" || len(m.To) != 1 || !slices.Contains([]string{"alice@example.com", "Alice@Example.com", "bob@example.com"}, m.To[0]) {
			t.Errorf("envelope %q → %v, want the null sender to the Return-Path", m.From, m.To)
		}
	}
}

// A 4xx before DATA completes is retried with backoff; the ledger does not keep a reply that
// was never sent.
func TestWorkerTemporaryFailureRetried(t *testing.T) {
	r := newReplyRig(t, 0)
	r.sink.Script(testmail.SMTPFault{Stage: "rcpt", Code: 451, Enhanced: "4.3.0", Message: "try again"},
		testmail.SMTPFault{Stage: "mail", Code: 421, Enhanced: "4.7.0", Message: "busy"})
	id := r.add("alice@example.com")
	j := r.waitState(id, store.StateDone)
	if j.Attempts != 3 {
		t.Errorf("attempts = %d, want 3", j.Attempts)
	}
	if n := len(r.sink.Messages()); n != 1 {
		t.Errorf("%d messages, want 1", n)
	}
	_, attempts, _ := r.st.Job(context.Background(), id)
	if len(attempts) != 3 || attempts[0].Status != "smtp 451" || attempts[1].Status != "smtp 421" || attempts[2].Status != "smtp 250" {
		t.Errorf("attempts: %+v", attempts)
	}
	if got := r.outcomes(); strings.Join(got, ",") != "retry,retry,sent" {
		t.Errorf("outcomes %v", got)
	}
}

// A 5xx is not retried: dead-lettered, the reservation released.
func TestWorkerPermanentFailureDead(t *testing.T) {
	r := newReplyRig(t, 0)
	r.sink.Script(testmail.SMTPFault{Stage: "rcpt", Code: 550, Enhanced: "5.1.1", Message: "no such user"})
	id := r.add("alice@example.com")
	j := r.waitState(id, store.StateDead)
	if j.Attempts != 1 || !strings.Contains(j.LastError, "550") {
		t.Errorf("dead job: attempts %d, last error %q", j.Attempts, j.LastError)
	}
	if ok, _ := r.st.Replied(context.Background(), store.ReplyKey{Account: "support", Sender: "alice@example.com", Reply: "ack"}, r.clock.Now()); ok {
		t.Error("a refused reply stayed in the ledger")
	}
	if r.sink.Transactions() != 1 {
		t.Errorf("%d transactions, want 1 (no retry)", r.sink.Transactions())
	}
}

// `550 5.4.5` pauses every reply of the account until the window allows, then they go.
func TestWorkerDailyLimitPausesAll(t *testing.T) {
	r := newReplyRig(t, 0)
	r.sink.Script(testmail.SMTPFault{Stage: "data", Code: 550, Enhanced: "5.4.5", Message: "Daily user sending limit exceeded"})
	a := r.add("alice@example.com")
	ja := r.waitTried(a)
	start := r.clock.Now()
	if ja.NextAt.Before(start.Add(store.ReplyPauseMin)) {
		t.Errorf("next attempt at %v, want the pause (≥ %v later)", ja.NextAt, store.ReplyPauseMin)
	}
	b := r.add("bob@example.com") // another sender: paused too, never tried
	jb := r.waitTried(b)
	if !strings.Contains(jb.LastError, "paused") || r.sink.Transactions() != 1 {
		t.Errorf("while paused: bob's job %q, %d transactions (want 1)", jb.LastError, r.sink.Transactions())
	}
	r.clock.Add(store.ReplyWindow + time.Minute)
	c := r.add("carol@example.com") // the commit wakes the worker
	for _, id := range []string{a, b, c} {
		r.waitState(id, store.StateDone)
	}
	if n := len(r.sink.Messages()); n != 3 {
		t.Errorf("%d replies after the pause, want 3", n)
	}
	if !strings.Contains(r.logs.String(), "alert=daily_sending_limit") {
		t.Error("no alert logged for the daily limit")
	}
}

// Connection lost after DATA: unknown, never resent, and the sender counts as answered.
func TestWorkerDropAfterDataUnknown(t *testing.T) {
	r := newReplyRig(t, 0)
	r.sink.Script(testmail.SMTPFault{DropAfterData: true})
	id := r.add("alice@example.com")
	j := r.waitState(id, store.StateUnknown)
	if j.Attempts != 1 {
		t.Errorf("attempts = %d", j.Attempts)
	}
	r.restart(0)
	again := r.add("alice@example.com")
	r.waitState(again, store.StateDone)
	if got, _, _ := r.st.Job(context.Background(), id); got.State != store.StateUnknown {
		t.Errorf("after a restart the unknown job is %s", got.State)
	}
	if n := r.sink.Transactions(); n != 1 {
		t.Errorf("%d transactions, want 1: an unknown reply is never sent again", n)
	}
}

// The rolling daily cap stops replies and raises an alert; they resume when the window moves.
func TestWorkerDailyCap(t *testing.T) {
	r := newReplyRig(t, 2)
	before := r.clock.Now()
	a := r.add("a@example.com")
	b := r.add("b@example.com")
	r.waitState(a, store.StateDone)
	r.waitState(b, store.StateDone)
	c := r.add("c@example.com")
	jc := r.waitTried(c)
	// Due when the first reply leaves the window: 24 h after it was sent.
	if jc.NextAt.Before(before.Add(store.ReplyWindow)) || jc.NextAt.After(r.clock.Now().Add(store.ReplyWindow)) {
		t.Errorf("capped job due at %v, want 24h after the first reply (sent after %v)", jc.NextAt, before)
	}
	if n := len(r.sink.Messages()); n != 2 {
		t.Fatalf("%d replies, want 2 (the cap)", n)
	}
	if !strings.Contains(r.logs.String(), "alert=replies_per_day") {
		t.Errorf("no alert logged:\n%s", r.logs.String())
	}
	r.clock.Add(store.ReplyWindow)
	d := r.add("d@example.com")
	r.waitState(c, store.StateDone)
	r.waitState(d, store.StateDone)
	if n := len(r.sink.Messages()); n != 4 {
		t.Errorf("%d replies once the window moved, want 4", n)
	}
}

// The reply worker's lanes report heartbeats while their consumer runs, and none after.
func TestReplyHeartbeat(t *testing.T) {
	st, err := sqlite.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	w, err := New(st, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	d := outbox.New(st, w.Lanes(), outbox.Options{})
	if hb := d.Heartbeat(); !hb.IsZero() {
		t.Errorf("Heartbeat before Run = %v, want zero", hb)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = d.Run(ctx); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for d.Heartbeat().IsZero() {
		if time.Now().After(deadline) {
			t.Fatal("no heartbeat while running")
		}
		time.Sleep(time.Millisecond) // polling with a deadline
	}
	cancel()
	<-done
	if hb := d.Heartbeat(); !hb.IsZero() {
		t.Errorf("Heartbeat after Run returned = %v, want zero", hb)
	}
}
