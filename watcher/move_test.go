package watcher_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mailhook/mailhook/internal/testmail"
	"github.com/mailhook/mailhook/store"
	"github.com/mailhook/mailhook/store/sqlite"
	"github.com/mailhook/mailhook/watcher"
)

// Dovecot's post-login capabilities without MOVE, and without MOVE and UIDPLUS.
const (
	capsNoMove        = "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ UIDPLUS"
	capsNoMoveUIDPlus = "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+"
)

// TestDovecotMoveWithoutMove: on a server without MOVE, go-imap's fallback pipelined COPY, STORE
// \Deleted and EXPUNGE, so a COPY refused for a missing target ([TRYCREATE]) still deleted the
// message: 1 of 3 lost. mailhook copies first and waits: every message reaches the target. With
// UIDPLUS it then expunges just the moved UIDs; without it, it never sends a plain EXPUNGE, which
// would also remove a message the user flagged \Deleted: the original stays, flagged \Deleted.
func TestDovecotMoveWithoutMove(t *testing.T) {
	for _, tc := range []struct {
		name, caps string
		expunged   bool
	}{
		{"without MOVE", capsNoMove, true},
		{"without MOVE and UIDPLUS", capsNoMoveUIDPlus, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := testmail.StartDovecot(t, testmail.DovecotOptions{Capability: tc.caps})
			uids := appendTo(t, srv, "INBOX", 0, 4)
			// The user's own message, flagged \Deleted by their client and not expunged yet.
			if err := srv.AddFlags("INBOX", uids[3], `\Deleted`); err != nil {
				t.Fatal(err)
			}
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
			var jobs []store.Job
			for i, u := range uids[:3] {
				jobs = append(jobs, postJob("m"+string(rune('1'+i)), validity, u, watcher.PostAction{Op: watcher.OpMove, Mailbox: "Archive"}))
			}
			if err := store.CommitMessage(ctx, st, "acct", "INBOX", store.Commit{Checkpoint: store.Checkpoint{UIDValidity: validity, LastUID: uids[3]}, Jobs: jobs}); err != nil {
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

			eventually(t, "the moves", func() bool {
				for _, j := range jobs {
					if got, _, err := st.Job(ctx, j.ID); err != nil || got.State != store.StateDone {
						return false
					}
				}
				return true
			})
			for i := range 3 {
				if _, err := srv.Flags("Archive", uint32(i+1)); err != nil {
					t.Errorf("message %d of 3 is not in Archive: %v", i+1, err)
				}
			}
			for _, u := range uids[:3] {
				f, err := srv.Flags("INBOX", u)
				switch {
				case tc.expunged && err == nil:
					t.Errorf("uid %d still in INBOX (flags %v); UID EXPUNGE should have removed it", u, f)
				case !tc.expunged && (err != nil || !hasFlag(f, `\Deleted`)):
					t.Errorf("uid %d in INBOX: flags %v, %v; want it kept, flagged \\Deleted", u, f, err)
				}
			}
			if f, err := srv.Flags("INBOX", uids[3]); err != nil || !hasFlag(f, `\Deleted`) {
				t.Errorf("the user's \\Deleted message: %v, %v; want it untouched", f, err)
			}
			for _, line := range strings.Split(wire.String(), "\r\n") {
				if f := strings.Fields(line); len(f) >= 2 && strings.EqualFold(f[1], "EXPUNGE") {
					t.Errorf("plain EXPUNGE sent: %q", line)
				}
				if strings.Contains(strings.ToUpper(line), " MOVE ") {
					t.Errorf("MOVE sent to a server without it: %q", line)
				}
			}
		})
	}
}

// TestScriptedMoveWaitsForCopy: on a server with neither MOVE nor UIDPLUS whose COPY fails with
// [TRYCREATE], nothing is flagged or expunged before a COPY succeeded, and no EXPUNGE is sent.
func TestScriptedMoveWaitsForCopy(t *testing.T) {
	srv := startScripted(t)
	st, err := sqlite.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx := context.Background()
	job := postJob("m1", 7, 3, watcher.PostAction{Op: watcher.OpMove, Mailbox: "Archive"})
	if err := store.CommitMessage(ctx, st, "acct", "INBOX", store.Commit{Checkpoint: store.Checkpoint{UIDValidity: 7, LastUID: 3}, Jobs: []store.Job{job}}); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	cfg := baseConfig(srv.ln.Addr().String(), "user@example.test", "secret-pw", logs)
	mw, err := st.Mailbox(ctx, "acct", "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	cfg.PostActions = mw
	cfg.IdleRefresh = 50 * time.Millisecond
	w := mustNew(t, cfg, mw, watcher.HandlerFunc(func(context.Context, *watcher.Event) ([]store.Job, error) { return nil, nil }))
	runWatcher(t, w, logs)
	eventually(t, "the move", func() bool {
		j, _, err := st.Job(ctx, "m1")
		return err == nil && j.State == store.StateDone
	})
	var got []string
	for _, c := range srv.commands() {
		u := strings.ToUpper(c)
		for _, p := range []string{"UID COPY", "CREATE", "UID STORE", "STORE", "UID EXPUNGE", "EXPUNGE", "UID MOVE"} {
			if strings.HasPrefix(u, p+" ") || u == p {
				got = append(got, p)
				break
			}
		}
	}
	want := []string{"UID COPY", "CREATE", "UID COPY", "UID STORE"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("commands %v; want %v (copy refused, create, copy, flag; no expunge without UIDPLUS)", got, want)
	}
}

// TestProbeMoveRemoves: Probe (check --online) tells whether a move: can take the original out
// of the mailbox, so the check warns about a server with neither MOVE nor UIDPLUS.
func TestProbeMoveRemoves(t *testing.T) {
	for caps, want := range map[string]bool{"": true, capsNoMove: true, capsNoMoveUIDPlus: false} {
		srv := testmail.StartDovecot(t, testmail.DovecotOptions{Capability: caps})
		cfg := baseConfig(srv.Addr(), srv.User(), srv.Password(), &syncBuffer{})
		rep, err := watcher.Probe(context.Background(), cfg, []string{"INBOX"}, nil)
		if err != nil || rep.MoveRemoves != want {
			t.Errorf("capabilities %q: MoveRemoves %v, %v; want %v", caps, rep.MoveRemoves, err, want)
		}
	}
}
