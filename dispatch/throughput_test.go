package dispatch

import (
	"context"
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mailhook/mailhook/outbox"
	"github.com/mailhook/mailhook/store"
	"github.com/mailhook/mailhook/store/sqlite"
)

// BenchmarkDrain10k measures how fast the dispatcher drains a backlog of 10,000 queued webhook
// jobs to one loopback receiver, with the real SQLite outbox in a directory on disk
// (synchronous=FULL, as the daemon opens it) and the daemon's settings otherwise: concurrency 4,
// quick retries on, the store as EndpointStates, the dispatcher's lanes in an outbox.Consumer. Each iteration commits a fresh backlog (not
// timed), runs the dispatcher until every job has been delivered and Run has returned (so every
// outcome is durably recorded, not merely sent), and reports deliveries/s (successful deliveries
// per second of wall time), requests/delivery and cpu-µs/delivery (CPU time of the whole process,
// receiver included: unlike the rate, it does not depend on what else the machine runs).
//
//   - ok: the receiver answers 200 to everything.
//   - fail30: it answers 503 to 30 % of first attempts (chosen by a hash of the webhook-id), with
//     min_backoff 10ms. That is shorter than the quick retry's first wait, so the failed third goes
//     round the outbox's durable schedule (pending, due 10ms later, claimed again).
//
// Run it alone, a few times, and take the median, e.g.:
//
//	go test ./dispatch -run '^$' -bench Drain10k -benchtime 1x -count 3
func BenchmarkDrain10k(b *testing.B) {
	cases := []struct {
		name string
		fail bool
	}{
		{name: "ok"},
		{name: "fail30", fail: true},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) { benchDrain(b, 10_000, c.fail) })
	}
}

func benchDrain(b *testing.B, n int, fail bool) {
	key := make([]byte, 32)
	for i := range key {
		key[i] = byte(i)
	}
	var seen sync.Map // webhook-id → struct{}: ids that had their first attempt
	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		requests.Add(1)
		if fail {
			id := r.Header.Get(HeaderID)
			if _, again := seen.LoadOrStore(id, struct{}{}); !again && failFirst(id) {
				w.WriteHeader(http.StatusServiceUnavailable)
			}
		}
	}))
	b.Cleanup(srv.Close)

	body := []byte(`{"version":1,"subject":"` + strings.Repeat("x", 2000) + `"}`)
	var total, cpu time.Duration
	var delivered int
	for i := range b.N {
		b.StopTimer()
		st, err := sqlite.Open(fmt.Sprintf("%s/%d", b.TempDir(), i), store.Options{})
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		const perCommit = 500
		for k := 0; k < n; k += perCommit {
			jobs := make([]store.Job, 0, perCommit)
			for u := k; u < min(k+perCommit, n); u++ {
				jobs = append(jobs, store.Job{ID: store.JobID("acct", "INBOX", 1, uint32(u+1), "r", 0),
					Kind: store.KindWebhook, Target: "sink", Account: "acct", Mailbox: "INBOX",
					UIDValidity: 1, UID: uint32(u + 1), Rule: "r", Body: body})
			}
			cp := store.Checkpoint{UIDValidity: 1, LastUID: uint32(min(k+perCommit, n))}
			if err := store.CommitMessage(ctx, st, "acct", "INBOX", store.Commit{Checkpoint: cp, Key: fmt.Sprint("k", k), Jobs: jobs}); err != nil {
				b.Fatal(err)
			}
		}
		var events atomic.Int64
		allSent := make(chan struct{})
		opts := Options{States: st,
			Observe: func(e Event) {
				if e.State == store.StateDone && events.Add(1) == int64(n) {
					close(allSent)
				}
			}}
		d, err := New([]Endpoint{{Name: "sink", URL: srv.URL, Secrets: [][]byte{key},
			Retry: outbox.RetryPolicy{MinBackoff: 10 * time.Millisecond}}}, opts)
		if err != nil {
			b.Fatal(err)
		}
		c := consumer(st, d, opts)
		runCtx, cancel := context.WithCancel(ctx)
		stopped := make(chan struct{})

		b.StartTimer()
		t0, cpu0 := time.Now(), cpuTime(b)
		go func() { _ = c.Run(runCtx); close(stopped) }()
		select {
		case <-allSent:
		case <-time.After(10 * time.Minute):
			b.Fatalf("%d of %d delivered after 10 minutes", events.Load(), n)
		}
		// Sent is not recorded: Run returns once every outcome is written.
		cancel()
		<-stopped
		elapsed := time.Since(t0)
		cpu += cpuTime(b) - cpu0
		b.StopTimer()
		if c, err := st.Counts(ctx); err != nil || c[store.StateDone] != n {
			b.Fatalf("after the drain: counts %v (err %v), want %d done", c, err, n)
		}
		total += elapsed
		delivered += n
		if err := st.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(delivered)/total.Seconds(), "deliveries/s")
	b.ReportMetric(float64(requests.Load())/float64(delivered), "requests/delivery")
	b.ReportMetric(float64(cpu.Microseconds())/float64(delivered), "cpu-µs/delivery")
}

// cpuTime is the user and system CPU time of this process so far (dispatcher, store and receiver
// alike). Per delivery it tells what the machine's load does not: how much work a delivery is.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// failFirst picks the 30 % of ids whose first attempt the receiver fails.
func failFirst(id string) bool {
	h := fnv.New32a()
	_, _ = h.Write([]byte(id))
	return h.Sum32()%100 < 30
}
