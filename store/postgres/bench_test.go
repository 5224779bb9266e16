package postgres

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailhook/mailhook/internal/testmail"
	"github.com/mailhook/mailhook/store"
	"github.com/mailhook/mailhook/store/sqlite"
)

// The benchmarks compare the PostgreSQL backend with SQLite in the same run, on a durable cluster
// (fsync on, as SQLite's synchronous=FULL): a fenced commit of one message with two jobs, and the
// drain of an outbox to a loopback webhook receiver by three replicas (PostgreSQL) or one process
// (SQLite, which admits one). Medians are reported as p50-ms; run with -benchtime=200x or so.

// backendUnderTest opens a fresh state of one backend and returns its writer factory.
type backendUnderTest struct {
	name string
	// open returns n handles on one fresh state (n > 1 only for PostgreSQL).
	open func(b *testing.B, n int) []store.Backend
}

func backends(b *testing.B) []backendUnderTest {
	pg := testmail.StartPostgres(b, testmail.PostgresOptions{Durable: true})
	return []backendUnderTest{
		{"sqlite", func(b *testing.B, n int) []store.Backend {
			s, err := sqlite.Open(b.TempDir(), store.Options{})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close() })
			return []store.Backend{s}
		}},
		{"postgres", func(b *testing.B, n int) []store.Backend {
			dsn := pg.NewDatabase(b)
			var out []store.Backend
			for i := range n {
				s, err := Open(context.Background(), dsn, store.Options{Owner: fmt.Sprintf("r%d", i)}, Options{Logger: quietLog()})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { s.Close() })
				out = append(out, leased{s})
			}
			return out
		}},
	}
}

func p50(ds []time.Duration) float64 {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return float64(ds[len(ds)/2]) / float64(time.Millisecond)
}

// BenchmarkCommit: one message with a webhook and a dependent post-action, fenced on PostgreSQL.
func BenchmarkCommit(b *testing.B) {
	for _, be := range backends(b) {
		b.Run(be.name, func(b *testing.B) {
			s := be.open(b, 1)[0]
			ctx := context.Background()
			w, err := s.Mailbox(ctx, "acct", "INBOX")
			if err != nil {
				b.Fatal(err)
			}
			body := bytes.Repeat([]byte("x"), 2048)
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := range b.N {
				uid := uint32(i + 1)
				hook := store.Job{ID: store.JobID("acct", "INBOX", 7, uid, "r", 0), Kind: store.KindWebhook, Target: "ci",
					Account: "acct", Mailbox: "INBOX", UIDValidity: 7, UID: uid, Rule: "r", Body: body}
				move := store.Job{ID: store.JobID("acct", "INBOX", 7, uid, "r", 1), Kind: store.KindPostAction, Target: "mark_seen",
					Account: "acct", Mailbox: "INBOX", UIDValidity: 7, UID: uid, Rule: "r", DependsOn: []string{hook.ID}}
				t0 := time.Now()
				if err := w.Commit(ctx, []store.Commit{{Checkpoint: store.Checkpoint{UIDValidity: 7, LastUID: uid},
					Key: fmt.Sprintf("<%d@example.org>", uid), Jobs: []store.Job{hook, move}}}); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
			}
			b.StopTimer()
			b.ReportMetric(p50(lat), "p50-ms")
		})
	}
}

// BenchmarkDrain: b.N webhook jobs delivered to a loopback receiver, as an endpoint lane of the
// dispatcher works (concurrency 4: each claim takes as many due jobs as there are free slots, each
// job is delivered in its own goroutine and finished when its response is in), one lane per
// handle: three handles (replicas) on PostgreSQL, one on SQLite. Reported: jobs/s.
func BenchmarkDrain(b *testing.B) {
	var hits atomic.Int64
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		hits.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer recv.Close()
	for _, be := range backends(b) {
		b.Run(be.name, func(b *testing.B) {
			replicas := 1
			if be.name == "postgres" {
				replicas = 3
			}
			ss := be.open(b, replicas)
			ctx := context.Background()
			w, err := ss[0].Mailbox(ctx, "acct", "INBOX")
			if err != nil {
				b.Fatal(err)
			}
			var batch []store.Commit
			for i := range b.N {
				uid := uint32(i + 1)
				batch = append(batch, store.Commit{Checkpoint: store.Checkpoint{UIDValidity: 7, LastUID: uid},
					Jobs: []store.Job{{ID: store.JobID("acct", "INBOX", 7, uid, "r", 0), Kind: store.KindWebhook, Target: "ci",
						Account: "acct", Mailbox: "INBOX", UIDValidity: 7, UID: uid, Rule: "r", Body: []byte(`{"n":1}`)}}})
			}
			if err := w.Commit(ctx, batch); err != nil {
				b.Fatal(err)
			}
			hits.Store(0)
			client := recv.Client()
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for _, s := range ss {
				wg.Go(func() { drainLane(ctx, b, s, client, recv.URL) })
			}
			wg.Wait()
			el := time.Since(start)
			b.StopTimer()
			if got := hits.Load(); got != int64(b.N) {
				b.Fatalf("receiver got %d deliveries for %d jobs", got, b.N)
			}
			b.ReportMetric(float64(b.N)/el.Seconds(), "jobs/s")
		})
	}
}

// BenchmarkTakeover: six mailboxes, lease TTL 2 s. takeover: the replica holding them dies at a
// random point of its renewal cycle (its lease and heartbeat rows stop being renewed; it last
// renewed up to TTL/3 before), and a running replica watches all six again after takeover-ms.
// handover: of two replicas sharing them, one stops cleanly (SIGTERM) and the other watches all
// six after handover-ms. p50 and max over b.N runs; run with -benchtime=10x or so.
func BenchmarkTakeover(b *testing.B) {
	pg := testmail.StartPostgres(b, testmail.PostgresOptions{})
	dsn := pg.NewDatabase(b)
	admin := openStore(b, dsn, testOpts{replica: "admin"})
	ctx := context.Background()
	var takeovers, handovers []time.Duration
	held := func(s *Store) int { return s.Leases().Stats().Held }
	wait := func(what string, cond func() bool) {
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				b.Fatalf("%s: not within 30 s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	for i := range b.N {
		want := make([]MailboxKey, 6)
		for k := range want {
			want[k] = MailboxKey{Account: fmt.Sprintf("run%d", i), Mailbox: fmt.Sprintf("box%d", k)}
		}
		// takeover: a dead replica's rows, last renewed a random part of TTL/3 ago.
		ghost := fmt.Sprintf("ghost-%d", i)
		left := testTTL - time.Duration(rand.Int64N(int64(testTTL/3)))
		if _, err := admin.pool.Exec(ctx, `INSERT INTO replicas VALUES ($1, 'h', clock_timestamp(), clock_timestamp(),
clock_timestamp() + $2 * interval '1 microsecond')`, ghost, left.Microseconds()); err != nil {
			b.Fatal(err)
		}
		if _, err := admin.pool.Exec(ctx, `INSERT INTO mailbox_leases
SELECT account, mailbox, $3, 1, clock_timestamp() + $4 * interval '1 microsecond', clock_timestamp()
FROM unnest($1::text[], $2::text[]) AS w (account, mailbox)`, keyCol(want, 0), keyCol(want, 1), ghost, left.Microseconds()); err != nil {
			b.Fatal(err)
		}
		died := time.Now()
		s1 := openStore(b, dsn, testOpts{replica: fmt.Sprintf("a%d", i), ttl: testTTL})
		stop1 := runLeases(s1, want)
		wait("takeover", func() bool { return held(s1) == 6 })
		takeovers = append(takeovers, time.Since(died))

		// handover: a second replica gets its share, then the first stops cleanly.
		s2 := openStore(b, dsn, testOpts{replica: fmt.Sprintf("b%d", i), ttl: testTTL})
		stop2 := runLeases(s2, want)
		wait("share", func() bool { return held(s1) == 3 && held(s2) == 3 })
		stopped := time.Now()
		stop1()
		wait("handover", func() bool { return held(s2) == 6 })
		handovers = append(handovers, time.Since(stopped))
		stop2()
	}
	b.ReportMetric(p50(slices.Clone(takeovers)), "takeover-p50-ms")
	b.ReportMetric(float64(slices.Max(takeovers))/float64(time.Millisecond), "takeover-max-ms")
	b.ReportMetric(p50(slices.Clone(handovers)), "handover-p50-ms")
	b.ReportMetric(float64(slices.Max(handovers))/float64(time.Millisecond), "handover-max-ms")
}

// runLeases runs s's lease manager over want, every runner waiting for its context; the returned
// function stops it cleanly (releasing the leases) and waits.
func runLeases(s *Store, want []MailboxKey) func() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Leases().Run(ctx, want, func(ctx context.Context, _ Held) { <-ctx.Done() })
	}()
	return func() { cancel(); <-done }
}

// drainLane claims and delivers jobs of target "ci" from s until none is left, holding at most 4
// at once, as the dispatcher's endpoint lane does.
func drainLane(ctx context.Context, b *testing.B, s store.Backend, client *http.Client, url string) {
	const concurrency = 4
	slots := make(chan struct{}, concurrency)
	var inflight sync.WaitGroup
	defer inflight.Wait()
	for {
		slots <- struct{}{}
		n := 1
		for n < concurrency {
			select {
			case slots <- struct{}{}:
				n++
				continue
			default:
			}
			break
		}
		jobs, err := s.Claim(ctx, store.Selector{Kind: store.KindWebhook, Target: "ci"}, time.Now(), n)
		if err != nil {
			b.Error(err)
			return
		}
		for range n - len(jobs) {
			<-slots
		}
		if len(jobs) == 0 {
			inflight.Wait() // the last jobs in flight may fail and come back; none do here
			return
		}
		for _, j := range jobs {
			inflight.Go(func() {
				defer func() { <-slots }()
				resp, err := client.Post(url, "application/json", bytes.NewReader(j.Body))
				if err != nil {
					b.Error(err)
					return
				}
				_ = resp.Body.Close()
				if err := s.Finish(ctx, j.ID, store.StateDone, time.Time{}, store.Attempt{Status: "http 204"}); err != nil {
					b.Error(err)
				}
			})
		}
	}
}
