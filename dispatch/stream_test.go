package dispatch

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/mailhook/mailhook/message"
	"github.com/mailhook/mailhook/payload"
	"github.com/mailhook/mailhook/spool"
	"github.com/mailhook/mailhook/store"
)

// randomBytes returns n reproducible pseudo-random octets.
func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n+8)
	for i := 0; i < n; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	return b[:n:n]
}

// inlineJob builds a webhook job whose payload ships the given contents inline (section →
// content, sections "2", "3", …) and links the files into sp, as the pipeline does.
func inlineJob(t *testing.T, sp *spool.Spool, id string, contents [][]byte) store.Job {
	t.Helper()
	m := &message.Message{Subject: "scans", Size: 1}
	incoming := t.TempDir()
	files := map[string]string{}
	for i, c := range contents {
		sec := strconv.Itoa(i + 2)
		m.Attachments = append(m.Attachments, message.Attachment{Filename: "f" + sec + ".pdf",
			ContentType: "application/pdf", Size: int64(len(c)), Section: sec, Encoding: "base64"})
		path := filepath.Join(incoming, sec)
		if err := os.WriteFile(path, c, 0o600); err != nil {
			t.Fatal(err)
		}
		files[sec] = path
	}
	p := payload.New(id, "r", "personal", "INBOX", 7, 42, m, message.Auth{}, payload.BodyNone, 0)
	for i, a := range m.Attachments {
		p.InlineFromSpool(i, a.Section)
	}
	body, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := sp.Attach(context.Background(), id, files); err != nil {
		t.Fatalf("Attach: %v", err)
	}
	j := newJob(id, "ci", time.Now())
	j.Body = body
	return j
}

// contentsOf decodes the content_base64 of every attachment of a received body.
func contentsOf(t *testing.T, body []byte) [][]byte {
	t.Helper()
	var p payload.Payload
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("received body is not JSON: %v", err)
	}
	var out [][]byte
	for _, a := range p.Attachments {
		b, err := base64.StdEncoding.Strict().DecodeString(a.ContentBase64)
		if err != nil {
			t.Fatalf("content_base64 of %s: %v", a.Filename, err)
		}
		out = append(out, b)
	}
	return out
}

// TestInlineStreamed: a body with spooled attachments goes out as valid JSON whose content_base64
// values are the files' base64 (sizes around the encoder's chunk and its 3-octet quantum), with an
// exact Content-Length, signed so that the official Standard Webhooks library verifies it; the
// stored body holds references only. After a 503 — retried in process or from the outbox — the
// same bytes are sent again, read from the spool (the dispatcher has no other source).
func TestInlineStreamed(t *testing.T) {
	secret, key := testSecret(t, 9, 32)
	contents := [][]byte{nil, randomBytes(1, 1), randomBytes(2, 2), randomBytes(chunk-1, 3),
		randomBytes(chunk, 4), randomBytes(3*chunk+2, 5)}
	for _, tc := range []struct {
		name  string
		quick QuickRetry
	}{
		{"quick retry", QuickRetry{Max: 1, WaitMin: time.Millisecond, WaitMax: 2 * time.Millisecond}},
		{"durable retry", noQuick},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sp, err := spool.Open(t.TempDir(), spool.Options{})
			if err != nil {
				t.Fatal(err)
			}
			var lengths []int64
			var mu sync.Mutex
			srv, reqs := receiver(t, func(w http.ResponseWriter, r *http.Request, n int) {
				mu.Lock()
				lengths = append(lengths, r.ContentLength)
				mu.Unlock()
				if n == 1 {
					w.WriteHeader(http.StatusServiceUnavailable)
				}
			})
			out := newFakeOutbox()
			ev := &events{}
			d := mustNew(t, out, []Endpoint{{Name: "ci", URL: srv.URL, Secrets: [][]byte{key}, Retry: fastRetry}},
				Options{Quick: tc.quick, Spool: sp, Observe: ev.observe})
			j := inlineJob(t, sp, "msg_INLINE", contents)
			if bytes.Contains(j.Body, []byte("AAAA")) || len(j.Body) > 4096 {
				t.Fatalf("stored body carries content (%d bytes): %.300s", len(j.Body), j.Body)
			}
			start(t, d)
			out.add(j)
			first, second := next(t, reqs), next(t, reqs)
			out.waitState(t, j.ID, store.StateDone)
			// The observer is told the done job ships spooled content: the daemon's spool then
			// removes its files (and asks nothing about jobs without any).
			if got := ev.of(j.ID); len(got) == 0 || !got[len(got)-1].Inline || got[len(got)-1].State != store.StateDone {
				t.Errorf("observed %+v, want the last event done with Inline set", got)
			}

			if !bytes.Equal(first.body, second.body) {
				t.Fatalf("retry sent other bytes (%d vs %d)", len(first.body), len(second.body))
			}
			got := contentsOf(t, second.body)
			if len(got) != len(contents) {
				t.Fatalf("%d attachments received, want %d", len(got), len(contents))
			}
			for i := range contents {
				if !bytes.Equal(got[i], contents[i]) {
					t.Errorf("attachment %d: %d octets received, want %d (content differs)", i, len(got[i]), len(contents[i]))
				}
			}
			mu.Lock()
			for i, n := range lengths {
				if n != int64(len(second.body)) {
					t.Errorf("request %d: Content-Length %d, body %d octets", i+1, n, len(second.body))
				}
			}
			mu.Unlock()
			wh, err := standardwebhooks.NewWebhook(secret)
			if err != nil {
				t.Fatal(err)
			}
			for i, r := range []recorded{first, second} {
				if err := wh.Verify(r.body, r.header); err != nil {
					t.Errorf("request %d: official library rejects the streamed body: %v", i+1, err)
				}
			}
		})
	}
}

// TestInlineSpoolMissing: a job whose spooled content is gone is dead-lettered at once with the
// reason spool_missing, and nothing is sent.
func TestInlineSpoolMissing(t *testing.T) {
	sp, err := spool.Open(t.TempDir(), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv, reqs := receiver(t, nil)
	out := newFakeOutbox()
	var reasons []string
	var mu sync.Mutex
	_, key := testSecret(t, 3, 32)
	d := mustNew(t, out, []Endpoint{{Name: "ci", URL: srv.URL, Secrets: [][]byte{key}}}, Options{Spool: sp,
		Observe: func(e Event) { mu.Lock(); reasons = append(reasons, e.DeadReason()); mu.Unlock() }})
	j := inlineJob(t, sp, "msg_GONE", [][]byte{[]byte("%PDF")})
	if err := sp.Remove(context.Background(), j.ID); err != nil {
		t.Fatal(err)
	}
	start(t, d)
	out.add(j)
	out.waitState(t, j.ID, store.StateDead)
	noMore(t, reqs)
	if h := out.history(j.ID); len(h) != 1 || h[0].Status != "spool" || !strings.Contains(h[0].Error, "no such file") {
		t.Errorf("history = %+v, want one spool failure naming the missing file", h)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(reasons) != 1 || reasons[0] != DeadSpool {
		t.Errorf("dead reasons %q, want [%s]", reasons, DeadSpool)
	}
}

// TestInlineLargeBoundedHeap delivers a 50 MB attachment inline (67 MB of base64 on the wire)
// and samples the heap meanwhile: it must grow by less than 32 MB, so the body is streamed, not
// built. The receiver writes the body to a file; afterwards the official library verifies the
// signature over it and the content is compared.
func TestInlineLargeBoundedHeap(t *testing.T) {
	if testing.Short() {
		t.Skip("50 MB delivery")
	}
	const size = 50_000_000
	secret, key := testSecret(t, 5, 32)
	sp, err := spool.Open(t.TempDir(), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	content := randomBytes(size, 50)
	want := sha256.Sum256(content)
	j := inlineJob(t, sp, "msg_LARGE", [][]byte{content})
	content = nil

	bodyFile := filepath.Join(t.TempDir(), "body")
	headers := make(chan http.Header, 1)
	var received atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, err := os.Create(bodyFile)
		if err != nil {
			t.Error(err)
			return
		}
		n, err := io.Copy(f, r.Body)
		f.Close()
		if err != nil {
			t.Errorf("receiver: %v", err)
		}
		received.Store(n)
		headers <- r.Header.Clone()
	}))
	t.Cleanup(srv.Close)
	out := newFakeOutbox()
	d := mustNew(t, out, []Endpoint{{Name: "ci", URL: srv.URL, Secrets: [][]byte{key}, Timeout: MaxTimeout}},
		Options{Spool: sp})

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base, peak := ms.HeapAlloc, ms.HeapAlloc
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				peak = max(peak, ms.HeapAlloc)
			}
		}
	}()
	start(t, d)
	out.add(j)
	deadline := time.Now().Add(2 * time.Minute) // 67 MB under -race on a shared machine
	for out.job(j.ID).State != store.StateDone {
		if time.Now().After(deadline) {
			t.Fatalf("not delivered within 2 minutes: %+v", out.history(j.ID))
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	<-sampled
	growth := int64(peak) - int64(base)
	t.Logf("50 MB attachment inline: %d octets sent, heap grew by %.1f MB at most (HeapAlloc %d → peak %d)",
		received.Load(), float64(growth)/1e6, base, peak)
	if growth >= 32<<20 {
		t.Errorf("heap grew by %d bytes while delivering, want < 32 MiB: the body is not streamed", growth)
	}

	header := <-headers
	body, err := os.ReadFile(bodyFile)
	if err != nil {
		t.Fatal(err)
	}
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	if err := wh.Verify(body, header); err != nil {
		t.Errorf("official library rejects the streamed body: %v", err)
	}
	got := contentsOf(t, body)
	if len(got) != 1 || sha256.Sum256(got[0]) != want {
		t.Error("received content differs from the spooled file")
	}
}

// TestSignatureOfMatchesSignature: the streaming signature equals the one over the whole body.
func TestSignatureOfMatchesSignature(t *testing.T) {
	keys := [][]byte{bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 24)}
	body := randomBytes(100_000, 7)
	ts := time.Unix(1795689278, 0)
	got, err := signatureOf(keys, "msg_X", ts, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if want := signature(keys, "msg_X", ts, body); got != want {
		t.Errorf("signatureOf = %q, signature = %q", got, want)
	}
	mac := hmac.New(sha256.New, keys[0])
	mac.Write([]byte("msg_X.1795689278."))
	mac.Write(body)
	if first := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil)); !strings.HasPrefix(got, first+" ") {
		t.Errorf("first signature is not HMAC-SHA256 of id.timestamp.body")
	}
}

// TestOpenBodyMalformed: references the dispatcher cannot resolve are spool errors, never sent.
func TestOpenBodyMalformed(t *testing.T) {
	sp, err := spool.Open(t.TempDir(), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		sp   *spool.Spool
		id   string
		body string
	}{
		"unterminated": {sp, "msg_A", `{"content_base64":"\u0000spool:2"}`},
		"no spool":     {nil, "msg_A", `{"content_base64":"\u0000spool:2\u0000"}`},
		"bad section":  {sp, "msg_A", `{"content_base64":"\u0000spool:../x\u0000"}`},
		"bad job id":   {sp, "../etc", `{"content_base64":"\u0000spool:2\u0000"}`},
		"missing file": {sp, "msg_A", `{"content_base64":"\u0000spool:2\u0000"}`},
	} {
		b, err := openBody(context.Background(), tc.sp, tc.id, []byte(tc.body))
		var se *spoolError
		if b != nil || !errors.As(err, &se) {
			t.Errorf("%s: openBody = %v, %v; want a spool error", name, b, err)
		}
	}
}
