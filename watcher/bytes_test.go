package watcher_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailhook/mailhook/internal/testmail"
	"github.com/mailhook/mailhook/message"
	"github.com/mailhook/mailhook/watcher"
)

// The byte figures of issue 3: what the IMAP server sends for 20 messages with 3 MB attachments,
// per fetch plan, against Dovecot's own count (imap_logout_format "in=%i out=%o"), and the same
// for a naive client that fetches every whole message.

const (
	bigCount      = 20
	bigAttachment = 3_000_000 // encoded octets of each message's attachment
)

// bigMail is one generated message and the sizes the bounds are built from.
type bigMail struct {
	raw          []byte
	header       int // octets of the header section, blank line included
	textOctets   int // encoded octets of the text/plain part, as BODYSTRUCTURE reports them
	attachOctets int // encoded octets of the attachment (base64 lines with their CRLFs)
	attachBytes  int // decoded octets of the attachment
}

// bigMessage builds message i: a realistic Gmail-sized header section (Received chain, DKIM and
// ARC signatures, Authentication-Results), then multipart/mixed of multipart/alternative
// (text/plain, text/html) and a base64 PDF attachment of attach encoded octets.
func bigMessage(i, attach int) bigMail {
	var h strings.Builder
	for hop := range 4 {
		fmt.Fprintf(&h, "Received: from mx%d.mail.example.net (mx%d.mail.example.net [198.51.100.%d])\r\n"+
			"        by mx.google.com with ESMTPS id a%02d-20020a05600c%04d.2026.11.26.10.00.%02d\r\n"+
			"        for <demo@example.test>\r\n        (version=TLS1_3 cipher=TLS_AES_256_GCM_SHA384 bits=256/256);\r\n"+
			"        Thu, 26 Nov 2026 10:%02d:00 +0000\r\n", hop, hop, 10+hop, i, hop, hop, i%60)
	}
	sig := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{byte(i), 0x5a, 0xa5}, 128))
	for _, name := range []string{"ARC-Seal", "ARC-Message-Signature", "DKIM-Signature"} {
		fmt.Fprintf(&h, "%s: i=1; a=rsa-sha256; d=vendor.example; s=s2026; t=17956892%02d;\r\n        b=%s\r\n",
			name, i, fold(sig))
	}
	h.WriteString("Authentication-Results: mx.google.com;\r\n       dkim=pass header.i=@vendor.example;\r\n" +
		"       spf=pass smtp.mailfrom=billing@vendor.example;\r\n       dmarc=pass (p=REJECT) header.from=vendor.example\r\n")
	fmt.Fprintf(&h, "From: Vendor Billing <billing@vendor.example>\r\nTo: demo@example.test\r\n"+
		"Subject: Invoice 2026-%04d with scans\r\nDate: Thu, 26 Nov 2026 10:%02d:00 +0000\r\n"+
		"Message-ID: <big-%d@vendor.example>\r\nMIME-Version: 1.0\r\n"+
		"Content-Type: multipart/mixed; boundary=\"mix\"\r\n\r\n", i, i%60, i)
	header := h.Len()

	text := strings.Repeat(fmt.Sprintf("Invoice 2026-%04d: please find the scanned documents attached.\r\n", i), 30)
	html := "<html><body>" + strings.Repeat("<p>Please find the scanned documents attached.</p>\r\n", 60) + "</body></html>\r\n"
	pdf := bytes.Repeat([]byte("%PDF-1.7 scan "), attach*3/4/14+1)
	enc := base64.StdEncoding.EncodeToString(pdf)
	enc = enc[:attach/78*76] // whole 76-character lines: attach octets with CRLFs, give or take a line
	decoded := len(enc) / 4 * 3
	var b strings.Builder
	b.WriteString(h.String())
	b.WriteString("--mix\r\nContent-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n")
	b.WriteString("--alt\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n")
	b.WriteString(text)
	b.WriteString("\r\n--alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n")
	b.WriteString(html)
	b.WriteString("\r\n--alt--\r\n\r\n--mix\r\nContent-Type: application/pdf; name=\"scan.pdf\"\r\n" +
		"Content-Disposition: attachment; filename=\"scan.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	attachStart := b.Len()
	for len(enc) > 0 {
		n := min(76, len(enc))
		b.WriteString(enc[:n] + "\r\n")
		enc = enc[n:]
	}
	attachOctets := b.Len() - attachStart
	b.WriteString("--mix--\r\n")
	return bigMail{raw: []byte(b.String()), header: header, textOctets: len(text),
		attachOctets: attachOctets, attachBytes: decoded}
}

func fold(s string) string {
	var b strings.Builder
	for len(s) > 70 {
		b.WriteString(s[:70] + "\r\n         ")
		s = s[70:]
	}
	b.WriteString(s)
	return b.String()
}

// countConn counts the bytes read through it.
type countConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// adminDial connects to Dovecot from 127.0.0.2, whose sessions LogoutBytes leaves out.
func adminDial(tb testing.TB, addr string, n *atomic.Int64) *imapclient.Client {
	tb.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 10 * time.Second}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(2 * time.Minute))
	return imapclient.New(countConn{conn, n}, nil)
}

// structureBytes returns what the server sends for "UID FETCH 1:* (UID BODYSTRUCTURE)" on INBOX:
// the BODYSTRUCTURE responses with their FETCH syntax, an upper bound on the BODYSTRUCTUREs alone.
func structureBytes(tb testing.TB, srv *testmail.Dovecot) int64 {
	tb.Helper()
	var n atomic.Int64
	c := adminDial(tb, srv.Addr(), &n)
	defer c.Close()
	if err := c.Login(srv.User(), srv.Password()).Wait(); err != nil {
		tb.Fatal(err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		tb.Fatal(err)
	}
	before := n.Load()
	if _, err := c.Fetch(imap.UIDSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{
		UID: true, BodyStructure: &imap.FetchItemBodyStructure{Extended: true}}).Collect(); err != nil {
		tb.Fatal(err)
	}
	return n.Load() - before
}

// naiveFetchBytes is the baseline of the byte figures, and benchmark-only code: a client that
// fetches every whole message (BODY.PEEK[]), as simple IMAP bridges do. It returns the bytes
// Dovecot reports sending for the session.
func naiveFetchBytes(tb testing.TB, srv *testmail.Dovecot) int64 {
	tb.Helper()
	_, before := srv.LogoutBytes()
	c, err := imapclient.DialInsecure(srv.Addr(), nil)
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(srv.User(), srv.Password()).Wait(); err != nil {
		tb.Fatal(err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		tb.Fatal(err)
	}
	cmd := c.Fetch(imap.UIDSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true,
		BodySection: []*imap.FetchItemBodySection{{Peek: true}}})
	for m := cmd.Next(); m != nil; m = cmd.Next() {
		for it := m.Next(); it != nil; it = m.Next() {
			if bs, ok := it.(imapclient.FetchItemDataBodySection); ok && bs.Literal != nil {
				io.Copy(io.Discard, bs.Literal)
			}
		}
	}
	if err := cmd.Close(); err != nil {
		tb.Fatal(err)
	}
	if err := c.Logout().Wait(); err != nil {
		tb.Fatal(err)
	}
	return waitLogout(tb, srv, before) - before
}

// waitLogout waits until Dovecot logged a session ending after before (its out= total) and
// returns the new total.
func waitLogout(tb testing.TB, srv *testmail.Dovecot, before int64) int64 {
	tb.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		if _, out := srv.LogoutBytes(); out > before {
			return out
		}
		if time.Now().After(deadline) {
			tb.Fatalf("no logout line after %v", waitTimeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// planRun is one watcher run over the mailbox: what Dovecot sent and what mailhook counted.
type planRun struct {
	served, counted int64
}

// runPlan runs a fresh watcher with plan over the whole INBOX until every message is handled,
// stops it, and returns the bytes Dovecot served to its session and the watcher's own count.
func runPlan(tb testing.TB, srv *testmail.Dovecot, plan watcher.Plan, want int, opts ...func(*watcher.Config, *recorder)) (planRun, *recorder) {
	tb.Helper()
	_, before := srv.LogoutBytes()
	logs := &syncBuffer{}
	cfg := baseConfig(srv.Addr(), srv.User(), srv.Password(), logs)
	cfg.Start = watcher.StartAll
	cfg.Plan = plan
	rec := newRecorder()
	for _, o := range opts {
		o(&cfg, rec)
	}
	w, err := watcher.New(cfg, newFakeState(), rec)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	deadline := time.Now().Add(2 * waitTimeout)
	for len(rec.uids()) < want || w.Status().State != watcher.StateIdle {
		if time.Now().After(deadline) {
			cancel()
			tb.Fatalf("handled %d of %d messages; log:\n%s", len(rec.uids()), want, logs.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(waitTimeout):
		tb.Fatal("Run did not return")
	}
	after := waitLogout(tb, srv, before)
	return planRun{served: after - before, counted: w.Status().BytesRead}, rec
}

// fetchFigures appends the 20 messages to a fresh Dovecot and measures each case.
type fetchFigures struct {
	mail                     int64 // bytes of mail (sum of message sizes)
	headers, text, structure int64
	attach                   int64 // encoded octets of the attachments
	none, textPlan, inline   planRun
	naive                    int64
	recNone, recText         *recorder
	// spooled are the sizes of the files the inline plan spooled, by UID; attachBytes the
	// decoded size of each attachment.
	spooled     map[uint32][]int64
	attachBytes int64
}

func measureFetchBytes(tb testing.TB) fetchFigures {
	srv := testmail.StartDovecot(tb, testmail.DovecotOptions{})
	var f fetchFigures
	for i := range bigCount {
		m := bigMessage(i, bigAttachment)
		if _, err := srv.Append("INBOX", m.raw); err != nil {
			tb.Fatal(err)
		}
		f.mail += int64(len(m.raw))
		f.headers += int64(m.header)
		f.text += int64(m.textOctets)
		f.attach += int64(m.attachOctets)
		f.attachBytes = int64(m.attachBytes)
	}
	f.structure = structureBytes(tb, srv)
	f.none, f.recNone = runPlan(tb, srv, watcher.Plan{}, bigCount)
	f.textPlan, f.recText = runPlan(tb, srv, watcher.Plan{Text: true}, bigCount)
	// A webhook with attachments: inline: the attachment content is streamed into the spool.
	var mu sync.Mutex
	f.spooled = map[uint32][]int64{}
	all := func(ev *watcher.Event) []message.Attachment { return ev.Message.Attachments }
	f.inline, _ = runPlan(tb, srv, watcher.Plan{Inline: true}, bigCount, func(c *watcher.Config, r *recorder) {
		c.Incoming = incoming(tb, tb.TempDir())
		r.inline = all
		r.hook = func(ev *watcher.Event) {
			mu.Lock()
			defer mu.Unlock()
			for _, path := range ev.Spooled {
				fi, err := os.Stat(path)
				if err != nil {
					tb.Errorf("uid %d: %v", ev.UID, err)
					continue
				}
				f.spooled[ev.UID] = append(f.spooled[ev.UID], fi.Size())
			}
		}
	})
	f.naive = naiveFetchBytes(tb, srv)
	return f
}

// TestDovecotFetchBytes checks the fetch plan's byte bounds and the budget's byte count: a
// header-only plan is served at most header + BODYSTRUCTURE + 1 KiB per message; a text plan
// only the text part's octets more; the watcher's own count agrees with Dovecot's within 2 %.
// Third case, a webhook with attachments: inline: the attachment octets are served once (no
// more than header-only + the attachments' octets + 1 KiB per message, no less than header-only
// + the attachments), every message's attachment is spooled decoded, and the count agrees too.
func TestDovecotFetchBytes(t *testing.T) {
	f := measureFetchBytes(t)
	slack := int64(bigCount * 1024)
	if max := f.headers + f.structure + slack; f.none.served > max {
		t.Errorf("header-only plan: served %d bytes, want ≤ %d (headers %d + structure %d + 1 KiB/message)",
			f.none.served, max, f.headers, f.structure)
	}
	if max := f.headers + f.structure + f.text + slack; f.textPlan.served > max {
		t.Errorf("text plan: served %d bytes, want ≤ %d (… + text parts %d)", f.textPlan.served, max, f.text)
	}
	if f.textPlan.served < f.none.served+f.text {
		t.Errorf("text plan served %d bytes, less than header-only %d + text %d: text not fetched?",
			f.textPlan.served, f.none.served, f.text)
	}
	if max := f.none.served + f.attach + slack; f.inline.served > max {
		t.Errorf("inline plan: served %d bytes, want ≤ %d (header-only %d + attachments %d + 1 KiB/message): fetched more than once?",
			f.inline.served, max, f.none.served, f.attach)
	}
	if f.inline.served < f.none.served+f.attach {
		t.Errorf("inline plan served %d bytes, less than header-only %d + attachments %d: content not fetched?",
			f.inline.served, f.none.served, f.attach)
	}
	if len(f.spooled) != bigCount {
		t.Errorf("inline plan spooled attachments of %d messages, want %d", len(f.spooled), bigCount)
	}
	for uid, sizes := range f.spooled {
		if len(sizes) != 1 || sizes[0] != f.attachBytes {
			t.Errorf("uid %d: spooled files of %v octets, want one of %d (decoded)", uid, sizes, f.attachBytes)
		}
	}
	for name, r := range map[string]planRun{"header-only": f.none, "text": f.textPlan, "inline": f.inline} {
		if diff := float64(r.counted-r.served) / float64(r.served); diff < -0.02 || diff > 0.02 {
			t.Errorf("%s plan: mailhook counted %d bytes, Dovecot served %d (%.2f %%): want within 2 %%",
				name, r.counted, r.served, 100*diff)
		}
	}
	if f.naive < f.mail {
		t.Errorf("naive baseline served %d bytes, less than the %d bytes of mail", f.naive, f.mail)
	}
	for _, rec := range []*recorder{f.recNone, f.recText} {
		rec.mu.Lock()
		for _, ev := range rec.events {
			if m := ev.Message; !strings.HasPrefix(m.Subject, "Invoice 2026-") || len(m.Attachments) != 1 || m.Truncated {
				t.Errorf("uid %d: subject %q, %d attachments, truncated %v", ev.UID, m.Subject, len(m.Attachments), m.Truncated)
			}
		}
		rec.mu.Unlock()
	}
	f.recText.mu.Lock()
	if m := f.recText.events[0].Message; !strings.Contains(m.Text, "scanned documents") || m.HTMLFetched {
		t.Errorf("text plan: text %q, html fetched %v", m.Text, m.HTMLFetched)
	}
	f.recText.mu.Unlock()
	t.Logf("mail %d bytes in %d messages (headers %d, BODYSTRUCTURE responses %d, text parts %d)",
		f.mail, bigCount, f.headers, f.structure, f.text)
	t.Logf("served ÷ mail: header-only %.5f (%d B; mailhook counted %d), text %.5f (%d B; counted %d), inline %.4f (%d B; counted %d; attachments %d B), naive whole-message %.4f (%d B)",
		ratio(f.none.served, f.mail), f.none.served, f.none.counted,
		ratio(f.textPlan.served, f.mail), f.textPlan.served, f.textPlan.counted,
		ratio(f.inline.served, f.mail), f.inline.served, f.inline.counted, f.attach,
		ratio(f.naive, f.mail), f.naive)
}

func ratio(a, b int64) float64 { return float64(a) / float64(b) }

// BenchmarkFetchBytes reproduces the byte figures against Dovecot (needs root and a dovecot
// binary): go test ./watcher -run '^$' -bench FetchBytes -benchtime 1x
func BenchmarkFetchBytes(b *testing.B) {
	var f fetchFigures
	for b.Loop() {
		f = measureFetchBytes(b)
	}
	b.ReportMetric(ratio(f.none.served, f.mail), "headeronly-served/mail")
	b.ReportMetric(ratio(f.textPlan.served, f.mail), "text-served/mail")
	b.ReportMetric(ratio(f.inline.served, f.mail), "inline-served/mail")
	b.ReportMetric(ratio(f.naive, f.mail), "naive-served/mail")
	b.ReportMetric(float64(f.none.served)/bigCount, "headeronly-B/msg")
	b.ReportMetric(float64(f.textPlan.served)/bigCount, "text-B/msg")
	b.ReportMetric(100*ratio(f.textPlan.counted-f.textPlan.served, f.textPlan.served), "count-error-%")
}

// BenchmarkHeapLargeBatch shows that a catch-up over many large messages holds no more than its
// plan needs: 200 messages with 3 MB attachments wait in Dovecot, a header-only plan processes
// them, and the live heap is sampled (runtime/metrics, every millisecond and at every Handle).
// The figure is the peak over the heap after a GC before the start; the target is < 32 MB.
//
//	go test ./watcher -run '^$' -bench HeapLargeBatch -benchtime 1x
func BenchmarkHeapLargeBatch(b *testing.B) {
	const count = 200
	srv := testmail.StartDovecot(b, testmail.DovecotOptions{})
	for i := range count {
		if _, err := srv.Append("INBOX", bigMessage(i, bigAttachment).raw); err != nil {
			b.Fatal(err)
		}
	}
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	heap := func() uint64 {
		metrics.Read(sample)
		return sample[0].Value.Uint64()
	}
	var peak atomic.Uint64
	note := func() {
		for h := heap(); ; {
			p := peak.Load()
			if h <= p || peak.CompareAndSwap(p, h) {
				return
			}
		}
	}
	var growth float64
	for b.Loop() {
		runtime.GC()
		base := heap()
		peak.Store(base)
		stop := make(chan struct{})
		sampled := make(chan struct{})
		go func() {
			defer close(sampled)
			t := time.NewTicker(time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					note()
				}
			}
		}()
		run, _ := runPlan(b, srv, watcher.Plan{}, count, func(_ *watcher.Config, r *recorder) {
			r.hook = func(*watcher.Event) { note() }
		})
		close(stop)
		<-sampled
		growth = float64(peak.Load()-base) / (1 << 20)
		b.ReportMetric(float64(run.served)/count, "served-B/msg")
	}
	b.ReportMetric(growth, "heap-growth-MB")
}
