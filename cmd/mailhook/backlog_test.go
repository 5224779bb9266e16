package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailhook/mailhook/internal/testmail"
)

// The backlog benchmarks measure catch-up: n messages wait in Dovecot's INBOX and mailhook starts
// with `start: all` on an empty state directory; the figure is messages per second from the
// daemon's start to the n-th webhook received (signed, verified, state on disk). In the same run,
// alternating with it, a floor client does the least any bridge must: log in, one batched
// `UID FETCH 1:* (UID BODY.PEEK[HEADER] BODYSTRUCTURE BODY.PEEK[1])`, and four keep-alive POSTs
// of the results (no rules, store or signing). The reported ratio is the median over rounds of
// mailhook ÷ floor, so that load from other processes on the machine cancels out. Run with
//
//	go test ./cmd/mailhook -run '^$' -bench Backlog -benchtime 1x
//
// MAILHOOK_BENCH_ROUNDS sets the number of rounds (default 5).

func BenchmarkBacklogLoopback2000(b *testing.B) { benchBacklog(b, 2000, 0) }

func BenchmarkBacklogRTT50x500(b *testing.B) { benchBacklog(b, 500, 25*time.Millisecond) }

func benchBacklog(b *testing.B, n int, oneWay time.Duration) {
	rounds := 5
	if r, err := strconv.Atoi(os.Getenv("MAILHOOK_BENCH_ROUNDS")); err == nil && r > 0 {
		rounds = r
	}
	dc := testmail.StartDovecot(b, testmail.DovecotOptions{})
	base := time.Now().Add(-time.Hour)
	raws := make([][]byte, n)
	for i := range raws {
		raws[i] = testmail.Sample(i+1, testmail.SampleOptions{Kind: testmail.CIFailure, Date: base.Add(time.Duration(i) * time.Second)})
	}
	if _, err := dc.AppendMany("INBOX", raws); err != nil {
		b.Fatal(err)
	}
	addr := dc.Addr()
	if oneWay > 0 {
		addr = testmail.StartDelayProxy(b, addr, oneWay).Addr()
	}

	var mh, fl, ratios []float64
	for b.Loop() {
		for range rounds {
			f := backlogFloor(b, addr, dc.User(), dc.Password(), n)
			m := backlogMailhook(b, addr, dc.User(), dc.Password(), n)
			fl = append(fl, float64(n)/f.Seconds())
			mh = append(mh, float64(n)/m.Seconds())
			ratios = append(ratios, f.Seconds()/m.Seconds())
		}
	}
	b.ReportMetric(median(mh), "mailhook-msg/s")
	b.ReportMetric(median(fl), "floor-msg/s")
	b.ReportMetric(median(ratios), "ratio-to-floor")
	b.ReportMetric(float64(len(ratios)), "rounds")
	b.Logf("%d messages, one-way delay %s: mailhook msg/s %.0f, floor msg/s %.0f, ratios %.3f", n, oneWay, mh, fl, ratios)
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// backlogMailhook runs the daemon with `start: all` on a fresh state directory until n distinct
// webhooks have arrived, and returns the time from its start.
func backlogMailhook(b *testing.B, addr, user, password string, n int) time.Duration {
	b.Helper()
	var mu sync.Mutex
	ids := map[string]bool{}
	all := make(chan struct{})
	recv := testmail.StartReceiver(b, testmail.ReceiverOptions{Secret: testSecret, OnRequest: func(r testmail.Request) {
		if !r.Verified {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		ids[r.Header.Get("webhook-id")] = true
		if len(ids) == n {
			close(all)
		}
	}})
	dir := b.TempDir()
	path, env := writeConfig(b, dir, addr, user, password, recv.URL()+"/hook", func(p *cfgParams) {
		p.Start = "all"
		p.IdleRefresh = "10m"
		p.CommandTimeout = "60s"
	})
	getenv := func(k string) (string, bool) {
		for _, e := range env {
			if len(e) > len(k) && e[:len(k)+1] == k+"=" {
				return e[len(k)+1:], true
			}
		}
		return "", false
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	l, code := load(path, getenv, io.Discard)
	if code != exitOK {
		b.Fatalf("load config: exit %d", code)
	}
	a, err := newApp(ctx, l, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	select {
	case <-all:
	case err := <-done:
		b.Fatalf("daemon stopped before %d webhooks: %v", n, err)
	case <-time.After(10 * time.Minute):
		mu.Lock()
		got := len(ids)
		mu.Unlock()
		b.Fatalf("only %d of %d webhooks within 10 minutes", got, n)
	}
	took := time.Since(start)
	cancel()
	<-done
	return took
}

// backlogFloor is the floor client: one batched fetch of what a webhook needs, then four POSTs of
// the results on one keep-alive connection.
func backlogFloor(b *testing.B, addr, user, password string, n int) time.Duration {
	b.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	defer srv.Close()
	hc := srv.Client()

	start := time.Now()
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(user, password).Wait(); err != nil {
		b.Fatal(err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		b.Fatal(err)
	}
	type msg struct {
		UID    uint32 `json:"uid"`
		Header []byte `json:"header"`
		Text   []byte `json:"text"`
		Parts  int    `json:"parts"`
	}
	var msgs []msg
	cmd := c.Fetch(imap.UIDSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{
		UID:           true,
		BodyStructure: &imap.FetchItemBodyStructure{},
		BodySection: []*imap.FetchItemBodySection{
			{Specifier: imap.PartSpecifierHeader, Peek: true},
			{Part: []int{1}, Peek: true},
		},
	})
	for {
		md := cmd.Next()
		if md == nil {
			break
		}
		buf, err := md.Collect()
		if err != nil {
			b.Fatal(err)
		}
		m := msg{UID: uint32(buf.UID)}
		for _, sec := range buf.BodySection {
			if sec.Section.Specifier == imap.PartSpecifierHeader {
				m.Header = sec.Bytes
			} else {
				m.Text = sec.Bytes
			}
		}
		if buf.BodyStructure != nil {
			buf.BodyStructure.Walk(func([]int, imap.BodyStructure) bool { m.Parts++; return true })
		}
		msgs = append(msgs, m)
	}
	if err := cmd.Close(); err != nil {
		b.Fatal(err)
	}
	if len(msgs) != n {
		b.Fatalf("floor fetched %d messages, want %d", len(msgs), n)
	}
	for chunk := range slices.Chunk(msgs, (n+3)/4) {
		body, err := json.Marshal(chunk)
		if err != nil {
			b.Fatal(err)
		}
		resp, err := hc.Post(srv.URL, "application/json", bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatal(fmt.Errorf("floor POST: %s", resp.Status))
		}
	}
	took := time.Since(start)
	_ = c.Logout().Wait()
	return took
}
