package postgres

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/mailhook/mailhook/internal/testmail"
)

// Replicas refreshing one account's token at once refresh one at a time, each with the token the
// previous one rotated: no refresh token is ever presented twice.
func TestRefreshOneAtATime(t *testing.T) {
	pg := testmail.StartPostgres(t, testmail.PostgresOptions{})
	dsn := pg.NewDatabase(t)
	ctx := context.Background()
	var inside atomic.Int32
	var mu sync.Mutex
	presented := map[string]bool{}
	var wg sync.WaitGroup
	for i := range 3 {
		s := openStore(t, dsn, testOpts{replica: fmt.Sprintf("r%d", i)})
		for k := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := s.RefreshWith(ctx, "acct", func(cur string, ok bool) (string, error) {
					if n := inside.Add(1); n != 1 {
						t.Errorf("%d refreshes of one account at once", n)
					}
					defer inside.Add(-1)
					if !ok {
						cur = "configured"
					}
					mu.Lock()
					defer mu.Unlock()
					if presented[cur] {
						t.Errorf("refresh token %q presented twice", cur)
					}
					presented[cur] = true
					return fmt.Sprintf("rt-%d-%d", i, k), nil
				})
				if err != nil {
					t.Error(err)
				}
			}()
		}
	}
	wg.Wait()
	if len(presented) != 12 {
		t.Fatalf("%d distinct tokens presented; want 12", len(presented))
	}
	s := openStore(t, dsn, testOpts{replica: "reader"})
	if rt, ok, err := s.RefreshToken(ctx, "acct"); err != nil || !ok || presented[rt] {
		t.Fatalf("stored token = %q, %v, %v; want the last rotation, never presented", rt, ok, err)
	}
}
