package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailhook/mailhook/internal/testmail"
)

// The latency benchmarks measure mailhook's own overhead between a message's arrival and its
// webhook: APPEND→webhook received, minus APPEND→`* N EXISTS` as a bare IMAP client idling on the
// same mailbox sees it in the same run. That removes the server's own push delay (Dovecot holds every
// IDLE notification for 500 ms). Appends are 700 ms apart (Dovecot merges closer ones), state is on
// disk. Run with
//
//	go test ./cmd/mailhook -run '^$' -bench Latency -benchtime 1x
//
// MAILHOOK_LATENCY_SAMPLES sets the sample count (default 300 on loopback, 60 over the latency
// proxy). The RTT50 variants put a latency proxy (25 ms each way) between the server and both
// clients, so the reference is told through the same link: the overhead then counts the round
// trips mailhook needs after the push, for a header-only plan (a header rule, `body: none`) and
// for the default `body: text`.

func BenchmarkLatencyDovecot(b *testing.B) {
	dc := testmail.StartDovecot(b, testmail.DovecotOptions{})
	benchLatency(b, dc.Addr(), dc.User(), dc.Password(), dc.Append, latencyOpts{})
}

func BenchmarkLatencyDovecotRTT50HeaderOnly(b *testing.B) {
	dc := testmail.StartDovecot(b, testmail.DovecotOptions{})
	benchLatency(b, dc.Addr(), dc.User(), dc.Password(), dc.Append, latencyOpts{oneWay: 25 * time.Millisecond, body: "none"})
}

func BenchmarkLatencyDovecotRTT50Text(b *testing.B) {
	dc := testmail.StartDovecot(b, testmail.DovecotOptions{})
	benchLatency(b, dc.Addr(), dc.User(), dc.Password(), dc.Append, latencyOpts{oneWay: 25 * time.Millisecond, body: "text"})
}

func BenchmarkLatencyMemServer(b *testing.B) {
	mem := testmail.StartMemServer(b, testmail.MemOptions{})
	benchLatency(b, mem.Addr(), mem.User(), mem.Password(), mem.Append, latencyOpts{})
}

// latencyOpts vary benchLatency: oneWay > 0 puts a latency proxy in front of the server; body is
// the webhook's body: ("" means text).
type latencyOpts struct {
	oneWay time.Duration
	body   string
}

func benchLatency(b *testing.B, addr, user, password string, appendMsg func(string, []byte) (uint32, error), o latencyOpts) {
	samples := 300
	if o.oneWay > 0 {
		samples = 60
		addr = testmail.StartDelayProxy(b, addr, o.oneWay).Addr()
	}
	if s, err := strconv.Atoi(os.Getenv("MAILHOOK_LATENCY_SAMPLES")); err == nil && s > 0 {
		samples = s
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	webhooks := make(chan time.Time, samples)
	recv := testmail.StartReceiver(b, testmail.ReceiverOptions{Secret: testSecret, OnRequest: func(r testmail.Request) {
		webhooks <- r.Received
	}})

	// The reference: a bare client idling on the same mailbox.
	exists := make(chan time.Time, samples*2)
	ref, err := imapclient.DialInsecure(addr, &imapclient.Options{UnilateralDataHandler: &imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				select {
				case exists <- time.Now():
				default:
				}
			}
		},
	}})
	if err != nil {
		b.Fatal(err)
	}
	defer ref.Close()
	if err := ref.Login(user, password).Wait(); err != nil {
		b.Fatal(err)
	}
	if _, err := ref.Select("INBOX", nil).Wait(); err != nil {
		b.Fatal(err)
	}
	// The reference client idles the way mailhook does: IDLE, and after each EXISTS, DONE and a
	// fresh IDLE. Dovecot's notification delay runs per session, so a client that never leaves
	// IDLE is told at a different moment than one that re-enters it after every message.
	idle, err := ref.Idle()
	if err != nil {
		b.Fatal(err)
	}
	reIdle := func() {
		if err := idle.Close(); err == nil {
			_ = idle.Wait()
		}
		if idle, err = ref.Idle(); err != nil {
			b.Fatal(err)
		}
	}
	defer func() { _ = idle.Close() }()

	dir := b.TempDir()
	path, env := writeConfig(b, dir, addr, user, password, recv.URL()+"/hook", func(p *cfgParams) { p.IdleRefresh = "10m"; p.Body = o.body })
	getenv := func(k string) (string, bool) {
		for _, e := range env {
			if len(e) > len(k) && e[:len(k)+1] == k+"=" {
				return e[len(k)+1:], true
			}
		}
		return "", false
	}
	l, code := load(path, getenv, io.Discard)
	if code != exitOK {
		b.Fatalf("load config: exit %d", code)
	}
	a, err := newApp(context.Background(), l, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	if err := waitWatching(ctx, a, 30*time.Second); err != nil {
		b.Fatal(err)
	}

	var overhead, total, push []time.Duration
	base := time.Now()
	b.ResetTimer()
	for i := range samples {
		start := time.Now()
		raw := testmail.Sample(i+1, testmail.SampleOptions{Kind: testmail.CIFailure, Date: base})
		if _, err := appendMsg("INBOX", raw); err != nil {
			b.Fatal(err)
		}
		var tE, tW time.Time
		deadline := time.After(10 * time.Second)
		for tE.IsZero() || tW.IsZero() {
			select {
			case tE = <-exists:
			case tW = <-webhooks:
			case <-deadline:
				b.Fatalf("sample %d: no EXISTS or webhook within 10s", i)
			}
		}
		reIdle()
		overhead = append(overhead, tW.Sub(tE))
		total = append(total, tW.Sub(start))
		push = append(push, tE.Sub(start))
		time.Sleep(time.Until(start.Add(700 * time.Millisecond))) // pacing, see above
	}
	b.StopTimer()
	cancel()
	<-done

	p := func(d []time.Duration, q float64) float64 {
		s := slices.Clone(d)
		slices.Sort(s)
		return float64(s[int(q*float64(len(s)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(p(overhead, 0.5), "overhead-p50-ms")
	b.ReportMetric(p(overhead, 0.99), "overhead-p99-ms")
	b.ReportMetric(p(total, 0.5), "append-to-webhook-p50-ms")
	b.ReportMetric(p(push, 0.5), "append-to-exists-p50-ms")
	b.ReportMetric(float64(samples), "samples")
	if o.oneWay > 0 {
		b.ReportMetric(p(overhead, 0.5)/float64((2*o.oneWay).Milliseconds()), "overhead-p50-rtts")
	}
}
