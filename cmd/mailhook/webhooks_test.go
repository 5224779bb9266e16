package main

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"
)

// D87 reported: mailhook_webhook_disabled is 1 for a disabled webhook, 0 for the others, read from
// the store at every scrape (so an enable from another process shows at once).
func TestWebhookDisabledMetric(t *testing.T) {
	st, err := openStore(context.Background(), t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	if _, err := st.DisableEndpoint(ctx, "gone", "http 410 Gone", time.Now()); err != nil {
		t.Fatal(err)
	}
	o := newOps("test", slog.New(slog.DiscardHandler))
	o.metrics.reg.MustRegister(&endpointCollector{states: st, names: []string{"ok", "gone"}})
	srv := httptest.NewServer(o.handler())
	defer srv.Close()
	m := scrape(t, srv.URL)
	if m[`mailhook_webhook_disabled{webhook="gone"}`] != 1 || m[`mailhook_webhook_disabled{webhook="ok"}`] != 0 {
		t.Errorf("before enable: %v, %v", m[`mailhook_webhook_disabled{webhook="gone"}`], m[`mailhook_webhook_disabled{webhook="ok"}`])
	}
	if _, ok := m[`mailhook_webhook_disabled{webhook="ok"}`]; !ok {
		t.Error("no series for the enabled webhook")
	}
	if _, err := st.EnableEndpoint(ctx, "gone", time.Now()); err != nil {
		t.Fatal(err)
	}
	if m := scrape(t, srv.URL); m[`mailhook_webhook_disabled{webhook="gone"}`] != 0 {
		t.Errorf("after enable: %v", m[`mailhook_webhook_disabled{webhook="gone"}`])
	}
}
