package dispatch

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"time"

	"github.com/mailhook/mailhook/payload"
	"github.com/mailhook/mailhook/store"
)

// TestResult is the outcome of one test request (Dispatcher.Test).
type TestResult struct {
	ID      string        // the event id, sent as webhook-id
	Bytes   int           // the size of the body sent
	Status  int           // the HTTP status; 0 when no response came
	Latency time.Duration // from sending the request until its response was read
	Error   string        // the transport error or the non-2xx status, without URL or secrets
}

// OK reports whether the endpoint answered 2xx.
func (r TestResult) OK() bool { return r.Error == "" && r.Status >= 200 && r.Status <= 299 }

// Test sends the test event of payload.TestEvent, rendered by f (the endpoint's format), to the
// endpoint named name once, as a delivery would (same headers, signed with the endpoint's secrets),
// with no retry, and reports the status and latency. It records nothing: the endpoint's health
// and the outbox are left alone.
func (d *Dispatcher) Test(ctx context.Context, name string, f *payload.Formatter) (TestResult, error) {
	ep, ok := d.endpoints[name]
	if !ok {
		return TestResult{}, fmt.Errorf("webhook %q is not configured", name)
	}
	id := "test_" + rand.Text()
	body, err := f.RenderTest(payload.TestEvent(id, name, d.now()))
	if err != nil {
		return TestResult{}, err
	}
	once := *d
	once.quick.Max = 0
	start := d.now()
	o := once.send(ctx, ep, store.Job{ID: id, Kind: store.KindWebhook, Target: name, Body: body})
	r := TestResult{ID: id, Bytes: len(body), Status: o.status, Latency: d.now().Sub(start)}
	switch {
	case o.err != nil:
		r.Error = ep.redact(o.err)
	case o.status < 200 || o.status > 299:
		r.Error = fmt.Sprintf("http %d %s", o.status, http.StatusText(o.status))
	}
	return r, nil
}
