package ops

import (
	"context"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/mailhook/mailhook/internal/testmail"
	"github.com/mailhook/mailhook/store"
)

// mailhook_webhook_disabled is 1 for a disabled webhook, 0 for the others, read from the store at
// every scrape (so an enable from another process shows at once).
func TestWebhookDisabledMetric(t *testing.T) {
	st := &fakeEndpoints{disabled: map[string]string{"gone": "http 410 Gone"}}
	o := New(Options{Version: "test", Endpoints: st, Webhooks: []string{"ok", "gone"}})
	srv := httptest.NewServer(o.handler())
	defer srv.Close()
	m := testmail.Scrape(t, srv.URL)
	if m[`mailhook_webhook_disabled{webhook="gone"}`] != 1 || m[`mailhook_webhook_disabled{webhook="ok"}`] != 0 {
		t.Errorf("before enable: %v, %v", m[`mailhook_webhook_disabled{webhook="gone"}`], m[`mailhook_webhook_disabled{webhook="ok"}`])
	}
	if _, ok := m[`mailhook_webhook_disabled{webhook="ok"}`]; !ok {
		t.Error("no series for the enabled webhook")
	}
	st.enable("gone") // as `mailhook webhooks enable` does from another process
	if m := testmail.Scrape(t, srv.URL); m[`mailhook_webhook_disabled{webhook="gone"}`] != 0 {
		t.Errorf("after enable: %v", m[`mailhook_webhook_disabled{webhook="gone"}`])
	}
}

// fakeEndpoints is an EndpointLister whose endpoints another process may enable.
type fakeEndpoints struct {
	mu       sync.Mutex
	disabled map[string]string // name → reason
}

func (f *fakeEndpoints) Endpoints(context.Context) ([]store.EndpointState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []store.EndpointState
	for name, reason := range f.disabled {
		out = append(out, store.EndpointState{Name: name, DisabledAt: time.Now(), Reason: reason})
	}
	return out, nil
}

func (f *fakeEndpoints) enable(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.disabled, name)
}
