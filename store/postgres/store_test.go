package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mailhook/mailhook/internal/testmail"
	"github.com/mailhook/mailhook/store"
)

// writerFor acquires the lease of (account, mailbox) for s and returns its writer.
func writerFor(t *testing.T, s *Store, account, mailbox string) store.MailboxWriter {
	t.Helper()
	ctx := context.Background()
	if _, err := s.Leases().Acquire(ctx, account, mailbox); err != nil {
		t.Fatal(err)
	}
	w, err := s.Mailbox(ctx, account, mailbox)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func webhookJob(account, mailbox string, uid uint32, target string) store.Job {
	return store.Job{
		ID: store.JobID(account, mailbox, 7, uid, "r", 0), Kind: store.KindWebhook, Target: target,
		Account: account, Mailbox: mailbox, UIDValidity: 7, UID: uid, Rule: "r", Body: []byte(fmt.Sprintf(`{"uid":%d}`, uid)),
	}
}

func commitOne(ctx context.Context, w store.MailboxWriter, account, mailbox string, uid uint32, target string) error {
	return w.Commit(ctx, []store.Commit{{
		Checkpoint: store.Checkpoint{UIDValidity: 7, LastUID: uid, LastInternalDate: time.Unix(int64(uid), 0).UTC()},
		Key:        fmt.Sprintf("key-%d", uid),
		Jobs:       []store.Job{webhookJob(account, mailbox, uid, target)},
	}})
}

func TestStore(t *testing.T) {
	pg := testmail.StartPostgres(t, testmail.PostgresOptions{})
	ctx := context.Background()

	t.Run("CommitClaimFinish", func(t *testing.T) {
		dsn := pg.NewDatabase(t)
		s := openStore(t, dsn, testOpts{replica: "a"})
		w := writerFor(t, s, "acct", "INBOX")
		for uid := uint32(1); uid <= 3; uid++ {
			if err := commitOne(ctx, w, "acct", "INBOX", uid, "hook"); err != nil {
				t.Fatal(err)
			}
		}
		// Replaying a message inserts nothing twice and never lowers the checkpoint.
		if err := commitOne(ctx, w, "acct", "INBOX", 2, "hook"); err != nil {
			t.Fatal(err)
		}
		cp, ok, err := w.Checkpoint(ctx)
		if err != nil || !ok || cp.LastUID != 3 || cp.UIDValidity != 7 {
			t.Fatalf("checkpoint = %+v, %v, %v; want uid 3", cp, ok, err)
		}
		if seen, err := w.Seen(ctx, "key-2"); err != nil || !seen {
			t.Fatalf("seen key-2 = %v, %v", seen, err)
		}
		jobs, err := s.Claim(ctx, store.Selector{Kind: store.KindWebhook}, time.Now(), 10)
		if err != nil || len(jobs) != 3 {
			t.Fatalf("claim = %d jobs, %v; want 3", len(jobs), err)
		}
		for i, j := range jobs {
			if j.UID != uint32(i+1) || j.State != store.StateInFlight || j.ClaimOwner != "a" || j.Attempts != 1 || string(j.Body) == "" {
				t.Errorf("job %d = %+v", i, j)
			}
		}
		if err := s.Finish(ctx, jobs[0].ID, store.StateDone, time.Time{}, store.Attempt{Status: "ok"}); err != nil {
			t.Fatal(err)
		}
		if err := s.Finish(ctx, jobs[0].ID, store.StateDone, time.Time{}, store.Attempt{Status: "ok"}); !errors.Is(err, store.ErrState) {
			t.Fatalf("second finish = %v; want ErrState", err)
		}
		counts, err := s.Counts(ctx)
		if err != nil || counts[store.StateDone] != 1 || counts[store.StateInFlight] != 2 {
			t.Fatalf("counts = %v, %v", counts, err)
		}
		if err := w.Commit(ctx, []store.Commit{{Checkpoint: store.Checkpoint{UIDValidity: 8, LastUID: 9}}}); !errors.Is(err, store.ErrUIDValidity) {
			t.Fatalf("commit of another uidvalidity = %v; want ErrUIDValidity", err)
		}
	})

	t.Run("CommitFencedAfterTakeover", func(t *testing.T) {
		dsn := pg.NewDatabase(t)
		a := openStore(t, dsn, testOpts{replica: "a"})
		b := openStore(t, dsn, testOpts{replica: "b"})
		wa := writerFor(t, a, "acct", "INBOX")
		if err := commitOne(ctx, wa, "acct", "INBOX", 1, "hook"); err != nil {
			t.Fatal(err)
		}
		// b takes the mailbox over (as after a's lease expired).
		if _, err := b.pool.Exec(ctx, `UPDATE mailbox_leases SET expires_at = '-infinity'`); err != nil {
			t.Fatal(err)
		}
		wb := writerFor(t, b, "acct", "INBOX")
		if err := commitOne(ctx, wa, "acct", "INBOX", 2, "hook"); !errors.Is(err, store.ErrLeaseLost) {
			t.Fatalf("stale holder's commit = %v; want ErrLeaseLost", err)
		}
		for name, write := range map[string]func() error{
			"reset":  func() error { return wa.ResetCheckpoint(ctx, store.Checkpoint{UIDValidity: 9}) },
			"begin":  func() error { return wa.BeginFetch(ctx, store.FetchRange{UIDValidity: 7, Lo: 2, Hi: 3}) },
			"strike": func() error { _, err := wa.StrikeFetch(ctx, 7, 2, "x"); return err },
			"budget": func() error {
				_, err := wa.ReserveBudget(ctx, 10, store.BudgetLimit{Bytes: 100, Window: time.Hour, Bucket: time.Minute}, time.Now())
				return err
			},
			"claim": func() error { _, err := wa.Claim(ctx, store.Selector{}, time.Now(), 1); return err },
		} {
			if err := write(); !errors.Is(err, store.ErrLeaseLost) {
				t.Errorf("stale holder's %s = %v; want ErrLeaseLost", name, err)
			}
		}
		cp, _, _ := wb.Checkpoint(ctx)
		if cp.LastUID != 1 {
			t.Fatalf("checkpoint uid = %d; want 1 (the stale commit wrote nothing)", cp.LastUID)
		}
		if jobs, _ := b.Jobs(ctx, store.Filter{}); len(jobs) != 1 {
			t.Fatalf("%d jobs; want 1", len(jobs))
		}
		if err := commitOne(ctx, wb, "acct", "INBOX", 2, "hook"); err != nil {
			t.Fatalf("new holder's commit: %v", err)
		}
	})

	t.Run("ClaimsAcrossReplicasOnce", func(t *testing.T) {
		dsn := pg.NewDatabase(t)
		var ss []*Store
		for i := range 3 {
			ss = append(ss, openStore(t, dsn, testOpts{replica: fmt.Sprintf("r%d", i)}))
		}
		w := writerFor(t, ss[0], "acct", "INBOX")
		const n = 150
		var batch []store.Commit
		for uid := uint32(1); uid <= n; uid++ {
			batch = append(batch, store.Commit{Checkpoint: store.Checkpoint{UIDValidity: 7, LastUID: uid},
				Jobs: []store.Job{webhookJob("acct", "INBOX", uid, "hook")}})
		}
		if err := w.Commit(ctx, batch); err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		got := map[string]string{}
		var wg sync.WaitGroup
		for _, s := range ss {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					jobs, err := s.Claim(ctx, store.Selector{Kind: store.KindWebhook, Target: "hook"}, time.Now(), 4)
					if err != nil {
						t.Error(err)
						return
					}
					if len(jobs) == 0 {
						return
					}
					for _, j := range jobs {
						mu.Lock()
						if prev, dup := got[j.ID]; dup {
							t.Errorf("job %s claimed by %s and %s", j.ID, prev, s.Replica())
						}
						got[j.ID] = s.Replica()
						mu.Unlock()
						if err := s.Finish(ctx, j.ID, store.StateDone, time.Time{}, store.Attempt{Status: "ok"}); err != nil {
							t.Error(err)
						}
					}
				}
			}()
		}
		wg.Wait()
		if len(got) != n {
			t.Fatalf("%d jobs delivered; want %d", len(got), n)
		}
	})

	t.Run("RecoverOnlyExpiredClaims", func(t *testing.T) {
		dsn := pg.NewDatabase(t)
		a := openStore(t, dsn, testOpts{replica: "a"})
		b := openStore(t, dsn, testOpts{replica: "b"})
		w := writerFor(t, a, "acct", "INBOX")
		reply := store.Job{ID: "reply-1", Kind: store.KindReply, Target: "ack", Account: "acct", Mailbox: "INBOX", UIDValidity: 7, UID: 2}
		if err := w.Commit(ctx, []store.Commit{
			{Checkpoint: store.Checkpoint{UIDValidity: 7, LastUID: 1}, Jobs: []store.Job{webhookJob("acct", "INBOX", 1, "hook")}},
			{Checkpoint: store.Checkpoint{UIDValidity: 7, LastUID: 2}, Jobs: []store.Job{reply}},
		}); err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		if jobs, err := a.Claim(ctx, store.Selector{}, now, 10); err != nil || len(jobs) != 2 {
			t.Fatalf("claim = %d, %v", len(jobs), err)
		}
		// A live claim (b starting up) is left alone.
		if n, err := b.Recover(ctx, now); err != nil || n != 0 {
			t.Fatalf("recover of live claims = %d, %v; want 0", n, err)
		}
		later := now.Add(store.DefaultClaimTTL + time.Second)
		if n, err := b.Recover(ctx, later); err != nil || n != 2 {
			t.Fatalf("recover of expired claims = %d, %v; want 2", n, err)
		}
		j, as, err := b.Job(ctx, reply.ID)
		if err != nil || j.State != store.StateUnknown || len(as) != 1 || as[0].Status != "interrupted" {
			t.Fatalf("reply after recovery = %+v %+v, %v; want unknown with an interrupted attempt", j, as, err)
		}
		hook, _, _ := b.Job(ctx, webhookJob("acct", "INBOX", 1, "hook").ID)
		if hook.State != store.StatePending || hook.ClaimOwner != "" {
			t.Fatalf("webhook after recovery = %+v; want pending, unclaimed", hook)
		}
	})

	t.Run("WakeAcrossReplicas", func(t *testing.T) {
		dsn := pg.NewDatabase(t)
		a := openStore(t, dsn, testOpts{replica: "a"})
		b := openStore(t, dsn, testOpts{replica: "b"})
		w := writerFor(t, a, "acct", "INBOX")
		// The listener calls every wake-up once when it connects; let that pass first.
		waitFor(t, 10*time.Second, "b's listener is up", func() bool {
			var n int
			_ = b.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE application_name = 'mailhook b' AND query LIKE 'LISTEN%'`).Scan(&n)
			return n > 0
		})
		wake := b.Wake()
		if err := commitOne(ctx, w, "acct", "INBOX", 1, "hook"); err != nil {
			t.Fatal(err)
		}
		select {
		case <-wake:
		case <-time.After(5 * time.Second):
			t.Fatal("b's Wake did not fire after a's commit")
		}
		// A webhook done makes its dependent post-action claimable: b wakes.
		hook := webhookJob("acct", "INBOX", 2, "hook")
		post := store.Job{ID: hook.ID + "-p", Kind: store.KindPostAction, Target: "mark_seen", Account: "acct", Mailbox: "INBOX",
			UIDValidity: 7, UID: 2, DependsOn: []string{hook.ID}, Body: []byte("{}")}
		if err := w.Commit(ctx, []store.Commit{{Checkpoint: store.Checkpoint{UIDValidity: 7, LastUID: 2}, Key: "key-2",
			Jobs: []store.Job{hook, post}}}); err != nil {
			t.Fatal(err)
		}
		jobs, err := a.Claim(ctx, store.Selector{Kind: store.KindWebhook}, time.Now(), 10)
		if err != nil || len(jobs) != 2 {
			t.Fatalf("claim = %d jobs, %v; want both webhooks", len(jobs), err)
		}
		wake = b.Wake()
		if err := a.Finish(ctx, hook.ID, store.StateDone, time.Time{}, store.Attempt{Status: "http 204"}); err != nil {
			t.Fatal(err)
		}
		select {
		case <-wake:
		case <-time.After(5 * time.Second):
			t.Fatal("b's Wake did not fire after a's webhook with a dependent was done")
		}
	})

	t.Run("ReplyCapAcrossReplicas", func(t *testing.T) {
		dsn := pg.NewDatabase(t)
		var ss []*Store
		for i := range 4 {
			ss = append(ss, openStore(t, dsn, testOpts{replica: fmt.Sprintf("r%d", i)}))
		}
		now := time.Now()
		var mu sync.Mutex
		reserved := 0
		var wg sync.WaitGroup
		for i, s := range ss {
			for k := range 5 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					key := store.ReplyKey{Account: "acct", Sender: fmt.Sprintf("s%d-%d@example.org", i, k), Reply: "ack"}
					res, err := s.ReserveReply(ctx, key, fmt.Sprintf("<%d.%d@mh>", i, k), time.Hour, 3, now)
					if err != nil {
						t.Error(err)
						return
					}
					if res.Status == store.ReplyReserved {
						mu.Lock()
						reserved++
						mu.Unlock()
					}
				}()
			}
		}
		wg.Wait()
		if reserved != 3 {
			t.Fatalf("%d replies reserved under a cap of 3", reserved)
		}
	})

	t.Run("BudgetAcrossReplicas", func(t *testing.T) {
		dsn := pg.NewDatabase(t)
		lim := store.BudgetLimit{Bytes: 1000, Window: time.Hour, Bucket: time.Minute}
		now := time.Now()
		var mu sync.Mutex
		var granted int64
		var wg sync.WaitGroup
		for i := range 4 {
			s := openStore(t, dsn, testOpts{replica: fmt.Sprintf("r%d", i)})
			w := writerFor(t, s, "acct", fmt.Sprintf("box%d", i))
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 10 {
					g, err := w.ReserveBudget(ctx, 60, lim, now)
					if err != nil {
						t.Error(err)
						return
					}
					if g.Granted {
						mu.Lock()
						granted += 60
						mu.Unlock()
					}
				}
			}()
		}
		wg.Wait()
		if granted > lim.Bytes || granted < lim.Bytes-60 {
			t.Fatalf("granted %d bytes of a %d budget", granted, lim.Bytes)
		}
	})
}
