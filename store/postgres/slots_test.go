package postgres

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailhook/mailhook/internal/testmail"
)

func TestSlots(t *testing.T) {
	pg := testmail.StartPostgres(t, testmail.PostgresOptions{})
	ctx := context.Background()

	t.Run("LimitAcrossReplicas", func(t *testing.T) {
		dsn := pg.NewDatabase(t)
		const limit = 3
		var inUse, most atomic.Int64
		var wg sync.WaitGroup
		for i := range 3 {
			s := openStore(t, dsn, testOpts{replica: fmt.Sprintf("r%d", i)})
			sl := s.Slots("webhook:ci", limit)
			for range 3 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range 10 {
						n := sl.Acquire(ctx)
						if n == 0 {
							t.Error("Acquire returned 0 with a live context")
							return
						}
						// Use one unit, give the others back at once (as a lane does after its claim).
						sl.Release(n - 1)
						cur := inUse.Add(1)
						for {
							m := most.Load()
							if cur <= m || most.CompareAndSwap(m, cur) {
								break
							}
						}
						time.Sleep(2 * time.Millisecond) // a delivery in progress
						inUse.Add(-1)
						sl.Release(1)
					}
				}()
			}
		}
		wg.Wait()
		if m := most.Load(); m > limit {
			t.Fatalf("%d units in use at once across replicas; limit %d", m, limit)
		}
	})

	t.Run("UnitsOfADeadReplicaExpire", func(t *testing.T) {
		dsn := pg.NewDatabase(t)
		dead := openStore(t, dsn, testOpts{replica: "dead"})
		if n := dead.Slots("webhook:ci", 2).Acquire(ctx); n != 2 {
			t.Fatalf("took %d units; want 2", n)
		}
		// dead never releases nor renews (no lease round runs): its units expire after the TTL.
		live := openStore(t, dsn, testOpts{replica: "live"})
		actx, cancel := context.WithTimeout(ctx, testTTL+3*time.Second)
		defer cancel()
		began := time.Now()
		if n := live.Slots("webhook:ci", 2).Acquire(actx); n != 2 {
			t.Fatalf("took %d units after the dead replica's expired; want 2", n)
		}
		if waited := time.Since(began); waited < testTTL/2 {
			t.Errorf("took the units after %v, before they could have expired", waited)
		}
	})

	// Units whose release could not reach the database (it was down) come back once it is up:
	// the replica's lease rounds would otherwise renew them in its name for ever.
	t.Run("FailedReleaseRetried", func(t *testing.T) {
		own := testmail.StartPostgres(t, testmail.PostgresOptions{})
		dsn := own.NewDatabase(t)
		s := openStore(t, dsn, testOpts{replica: "a"})
		stop := runLeases(s, nil) // renews the units, as in the daemon
		defer stop()
		sl := s.Slots("webhook:ci", 2)
		if n := sl.Acquire(ctx); n != 2 {
			t.Fatalf("took %d units; want 2", n)
		}
		if err := own.Stop(); err != nil {
			t.Fatal(err)
		}
		sl.Release(2) // fails: the database is down
		if err := own.Start(); err != nil {
			t.Fatal(err)
		}
		actx, cancel := context.WithTimeout(ctx, testTTL)
		defer cancel()
		if n := sl.Acquire(actx); n != 2 {
			t.Fatalf("took %d units after the database came back; want both again, before they could expire", n)
		}
	})

	t.Run("AcquireStopsWithContext", func(t *testing.T) {
		dsn := pg.NewDatabase(t)
		s := openStore(t, dsn, testOpts{replica: "a"})
		sl := s.Slots("webhook:ci", 1)
		if n := sl.Acquire(ctx); n != 1 {
			t.Fatal(n)
		}
		cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		if n := sl.Acquire(cctx); n != 0 {
			t.Fatalf("Acquire beyond the limit = %d; want 0 once the context is done", n)
		}
	})
}
