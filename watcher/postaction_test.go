package watcher_test

import (
	"bytes"
	"context"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailhook/mailhook/internal/testmail"
	"github.com/mailhook/mailhook/store"
	"github.com/mailhook/mailhook/store/sqlite"
	"github.com/mailhook/mailhook/watcher"
)

// wireLog records what a client wrote on its connections.
type wireLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *wireLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type loggedConn struct {
	net.Conn
	l *wireLog
}

func (c loggedConn) Write(p []byte) (int, error) {
	c.l.mu.Lock()
	c.l.b.Write(p)
	c.l.mu.Unlock()
	return c.Conn.Write(p)
}

func (l *wireLog) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return loggedConn{Conn: c, l: l}, nil
}

func postJob(id string, uidvalidity, uid uint32, p watcher.PostAction, deps ...string) store.Job {
	body, _ := p.Marshal()
	return store.Job{ID: id, Kind: store.KindPostAction, Target: p.Target(), Account: "acct", Mailbox: "INBOX",
		UIDValidity: uidvalidity, UID: uid, Rule: "r", DependsOn: deps, Body: body}
}

func hasFlag(flags []string, f string) bool {
	return slices.ContainsFunc(flags, func(x string) bool { return strings.EqualFold(x, f) })
}

// Post-actions on a real server: they wait for their dependencies, run on the
// watcher's own connection between IDLE cycles, never set \Seen except mark_seen, never APPEND
// (mailhook spends none of Gmail's upload allowance), skip a job of another UIDVALIDITY, and take a vanished message as done.
func TestDovecotPostActions(t *testing.T) {
	srv := testmail.StartDovecot(t, testmail.DovecotOptions{Mailboxes: []string{"Processed"}})
	uids := appendTo(t, srv, "INBOX", 0, 3)
	validity, err := srv.UIDValidity("INBOX")
	if err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx := context.Background()

	hook := func(id string, uid uint32) store.Job {
		return store.Job{ID: id, Kind: store.KindWebhook, Target: "hook", Account: "acct", Mailbox: "INBOX",
			UIDValidity: validity, UID: uid, Rule: "r", Body: []byte("{}")}
	}
	u1, u2, u3 := uids[0], uids[1], uids[2]
	jobs := []store.Job{
		hook("w1", u1),
		postJob("p1", validity, u1, watcher.PostAction{Op: watcher.OpFlag, Flags: []string{`\Flagged`, "$Label"}}, "w1"),
		postJob("p2", validity, u1, watcher.PostAction{Op: watcher.OpMove, Mailbox: "Processed"}, "w1", "p1"),
		postJob("p3", validity, u2, watcher.PostAction{Op: watcher.OpMarkSeen}),
		postJob("p4", validity+1, u3, watcher.PostAction{Op: watcher.OpMove, Mailbox: "Processed"}),
		postJob("p5", validity, 999, watcher.PostAction{Op: watcher.OpFlag, Flags: []string{`\Flagged`}}),
		hook("w6", u3),
		postJob("p6", validity, u3, watcher.PostAction{Op: watcher.OpMove, Mailbox: "Processed"}, "w6"),
		postJob("p7", validity, u2, watcher.PostAction{Op: watcher.OpCopy, Mailbox: "ByCopy"}, "p3"),
	}
	if err := store.CommitMessage(ctx, st, "acct", "INBOX", store.Commit{Checkpoint: store.Checkpoint{UIDValidity: validity, LastUID: u3}, Jobs: jobs}); err != nil {
		t.Fatal(err)
	}
	// w6 fails for good: its move must wait (held by a dead dependency).
	if got, err := st.Claim(ctx, store.Selector{Kind: store.KindWebhook}, time.Now(), 2); err != nil || len(got) != 2 {
		t.Fatalf("claim webhooks: %v %v", got, err)
	}
	if err := st.Finish(ctx, "w6", store.StateDead, time.Time{}, store.Attempt{Status: "http 500", Error: "receiver failed"}); err != nil {
		t.Fatal(err)
	}

	logs, wire := &syncBuffer{}, &wireLog{}
	cfg := baseConfig(srv.Addr(), srv.User(), srv.Password(), logs)
	mw, err := st.Mailbox(ctx, "acct", "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	cfg.PostActions = mw
	cfg.Dial = wire.dial
	w := mustNew(t, cfg, mw, watcher.HandlerFunc(func(context.Context, *watcher.Event) ([]store.Job, error) { return nil, nil }))
	runWatcher(t, w, logs)

	state := func(id string) string {
		j, _, err := st.Job(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return j.State
	}
	flags := func(mailbox string, uid uint32) []string {
		f, err := srv.Flags(mailbox, uid)
		if err != nil {
			t.Fatalf("flags of %s/%d: %v", mailbox, uid, err)
		}
		return f
	}
	eventually(t, "the unblocked post-actions", func() bool {
		return state("p3") == store.StateDone && state("p4") == store.StateDone && state("p5") == store.StateDone &&
			state("p7") == store.StateDone
	})
	if f := flags("INBOX", u2); !hasFlag(f, `\Seen`) {
		t.Errorf("mark_seen: flags of uid %d are %v", u2, f)
	}
	if f := flags("INBOX", u1); hasFlag(f, `\Seen`) || hasFlag(f, `\Flagged`) {
		t.Errorf("uid %d changed before its webhook was done: %v", u1, f)
	}
	for id, note := range map[string]string{"p4": "uidvalidity changed", "p5": "no longer in the mailbox"} {
		if j, _, _ := st.Job(ctx, id); !strings.Contains(j.LastError, note) {
			t.Errorf("%s: last error %q, want a note %q", id, j.LastError, note)
		}
	}
	if f := flags("INBOX", u3); len(f) != 0 && !(len(f) == 1 && strings.EqualFold(f[0], `\Recent`)) {
		t.Errorf("uid %d (skipped move, dead webhook) has flags %v", u3, f)
	}
	if f := flags("ByCopy", 1); hasFlag(f, `\Deleted`) {
		t.Errorf("copy: %v", f)
	}

	// The webhook is done: the flag and the move follow, on the next wake-up, without waiting
	// for the IDLE refresh (a minute).
	if err := st.Finish(ctx, "w1", store.StateDone, time.Time{}, store.Attempt{Status: "http 200"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "flag and move", func() bool { return state("p1") == store.StateDone && state("p2") == store.StateDone })
	moved := flags("Processed", 1)
	if !hasFlag(moved, `\Flagged`) || !hasFlag(moved, "$Label") || hasFlag(moved, `\Seen`) {
		t.Errorf("moved message has flags %v, want \\Flagged and $Label without \\Seen", moved)
	}
	if _, err := srv.Flags("INBOX", u1); err == nil {
		t.Errorf("uid %d is still in INBOX after the move", u1)
	}
	if s := state("p6"); s != store.StatePending {
		t.Errorf("move after a dead webhook: %s, want pending (held)", s)
	}
	sent := wire.String()
	if !strings.Contains(sent, " MOVE ") && !strings.Contains(sent, " UID MOVE ") {
		t.Errorf("no MOVE on the wire:\n%s", sent)
	}
	if strings.Contains(strings.ToUpper(sent), "APPEND") {
		t.Error("the watcher sent APPEND")
	}
}

func TestParsePostAction(t *testing.T) {
	for _, p := range []watcher.PostAction{
		{Op: watcher.OpMarkSeen}, {Op: watcher.OpFlag, Flags: []string{`\Flagged`}},
		{Op: watcher.OpMove, Mailbox: "A"}, {Op: watcher.OpCopy, Mailbox: "B"},
	} {
		b, _ := p.Marshal()
		got, err := watcher.ParsePostAction(b)
		if err != nil || got.Target() != p.Target() {
			t.Errorf("%+v: %+v, %v", p, got, err)
		}
	}
	for _, body := range []string{`{"op":"delete"}`, `{"op":"flag"}`, `{"op":"move"}`, `{`} {
		if _, err := watcher.ParsePostAction([]byte(body)); err == nil {
			t.Errorf("%s accepted", body)
		}
	}
}
