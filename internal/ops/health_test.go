package ops

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mailhook/mailhook/dispatch"
	"github.com/mailhook/mailhook/internal/testmail"
	"github.com/mailhook/mailhook/reply"
	"github.com/mailhook/mailhook/store"
	"github.com/mailhook/mailhook/watcher"
)

// fakeDispatch is a heartbeater with a settable heartbeat.
type fakeDispatch struct{ at time.Time }

func (f *fakeDispatch) Heartbeat() time.Time { return f.at }

// fakeOutbox is an OutboxCounter.
type fakeOutbox struct {
	counts map[string]int
	err    error
}

func (f *fakeOutbox) Counts(context.Context) (map[string]int, error) { return f.counts, f.err }

// fakeReplies is a ReplyCounter.
type fakeReplies map[string]int

func (f fakeReplies) RepliesSent(_ context.Context, account string, _ time.Time) (int, error) {
	return f[account], nil
}

// testOps builds an ops whose clock is now and whose one mailbox (acct/INBOX, idle_refresh 10m,
// poll_interval 10m, command_timeout 2m) reports st.
func testOps(now time.Time, st *watcher.Status, hb *fakeDispatch) *Ops {
	o := New(Options{Version: "test", Logger: slog.New(slog.DiscardHandler)})
	o.now = func() time.Time { return now }
	o.started = now.Add(-time.Hour)
	o.mailboxes = []*watchedMailbox{{account: "acct", mailbox: "INBOX", idleRefresh: 10 * time.Minute,
		pollInterval: 10 * time.Minute, commandTimeout: 2 * time.Minute, status: func() watcher.Status { return *st }}}
	if hb != nil {
		o.AddLoop("dispatch", hb)
	}
	return o
}

func TestReadinessAndLiveness(t *testing.T) {
	now := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	for _, tc := range []struct {
		name       string
		st         watcher.Status
		dispatchHB time.Duration // age of the dispatcher heartbeat
		ready      bool
		reason     string
		until      bool // the body carries until
		live       bool
		stalled    string // loop named in /healthz
	}{
		{name: "idle fresh", st: watcher.Status{State: watcher.StateIdle, Since: ago(3 * time.Minute), LastActivity: ago(time.Minute), Heartbeat: ago(3 * time.Minute)},
			ready: true, live: true},
		{name: "idle silent beyond idle_refresh + 60s", st: watcher.Status{State: watcher.StateIdle, Since: ago(15 * time.Minute), LastActivity: ago(12 * time.Minute), Heartbeat: ago(15 * time.Minute)},
			reason: ReasonStale, live: true},
		{name: "polling fresh", st: watcher.Status{State: watcher.StatePolling, Since: ago(9 * time.Minute), Heartbeat: ago(9 * time.Minute)},
			ready: true, live: true},
		{name: "fetching", st: watcher.Status{State: watcher.StateFetching, Since: ago(5 * time.Minute), LastActivity: ago(time.Second), Heartbeat: ago(5 * time.Minute)},
			ready: true, live: true},
		{name: "auth failed", st: watcher.Status{State: watcher.StateBackoff, Since: ago(time.Second), NextAttempt: now.Add(time.Minute), Heartbeat: ago(time.Second),
			Reason: `login as "me@example.test": imap: NO [AUTHENTICATIONFAILED] Authentication failed.`},
			reason: ReasonAuthFailed, until: true, live: true},
		{name: "alert", st: watcher.Status{State: watcher.StateBackoff, Since: ago(time.Second), NextAttempt: now.Add(time.Minute), Heartbeat: ago(time.Second),
			Reason: "alert: Please log in via your web browser"},
			reason: ReasonAlert, until: true, live: true},
		{name: "over quota", st: watcher.Status{State: watcher.StateBackoff, Since: ago(time.Second), NextAttempt: now.Add(time.Hour), Heartbeat: ago(time.Second),
			Reason: "select \"INBOX\": imap: NO [OVERQUOTA] Account exceeded command or bandwidth limits."},
			reason: ReasonOverQuota, until: true, live: true},
		{name: "outage: reconnecting, long backoff keeps liveness", st: watcher.Status{State: watcher.StateBackoff, Since: ago(40 * time.Minute), NextAttempt: now.Add(4 * time.Minute), Heartbeat: ago(40 * time.Minute),
			Reason: "dial 127.0.0.1:993: connection refused"},
			reason: ReasonReconnecting, until: true, live: true},
		{name: "throttled until", st: watcher.Status{State: watcher.StateThrottled, Since: ago(3 * time.Hour), ThrottledUntil: now.Add(5 * time.Hour), Heartbeat: ago(3 * time.Hour),
			Reason: "download budget of 2000MB per 24h used up"},
			reason: ReasonThrottled, until: true, live: true},
		{name: "connecting", st: watcher.Status{State: watcher.StateConnecting, Since: ago(time.Second), Heartbeat: ago(time.Second)},
			reason: ReasonConnecting, live: true},
		{name: "idle loop stuck past 2 × idle_refresh + 60s", st: watcher.Status{State: watcher.StateIdle, Since: ago(22 * time.Minute), LastActivity: ago(22 * time.Minute), Heartbeat: ago(22 * time.Minute)},
			reason: ReasonStale, stalled: "watcher"},
		{name: "backoff overslept its wake-up by more than 60s", st: watcher.Status{State: watcher.StateBackoff, Since: ago(30 * time.Minute), NextAttempt: ago(2 * time.Minute), Heartbeat: ago(30 * time.Minute)},
			reason: ReasonReconnecting, stalled: "watcher"},
		{name: "stopped while running", st: watcher.Status{State: watcher.StateStopped, Since: ago(time.Second), Heartbeat: ago(time.Second)},
			reason: ReasonStopped, stalled: "watcher"},
		{name: "standby: another replica holds the lease, for hours", st: watcher.Status{State: watcher.StateStandby, Since: ago(5 * time.Hour)},
			ready: true, live: true},
		{name: "dispatcher stuck", st: watcher.Status{State: watcher.StateIdle, Since: ago(time.Minute), Heartbeat: ago(time.Minute)},
			dispatchHB: 22 * time.Minute, ready: true, stalled: "dispatch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := tc.st
			o := testOps(now, &st, &fakeDispatch{at: now.Add(-tc.dispatchHB)})
			srv := httptest.NewServer(o.handler())
			defer srv.Close()

			var ready ReadyReport
			code := getJSON(t, srv.URL+"/readyz", &ready)
			if want := map[bool]int{true: 200, false: 503}[tc.ready]; code != want || ready.Ready != tc.ready {
				t.Errorf("/readyz = %d ready=%v, want %d", code, ready.Ready, want)
			}
			if len(ready.Mailboxes) != 1 {
				t.Fatalf("/readyz names %d mailboxes, want 1", len(ready.Mailboxes))
			}
			mb := ready.Mailboxes[0]
			if mb.Account != "acct" || mb.Mailbox != "INBOX" || mb.Reason != tc.reason || (mb.Until != nil) != tc.until {
				t.Errorf("/readyz mailbox = %+v, want reason %q, until %v", mb, tc.reason, tc.until)
			}
			// The detail is scrubbed: a server's words (which name the user) stay in the log.
			if strings.Contains(mb.Detail, "me@example.test") || strings.Contains(mb.Detail, "web browser") ||
				strings.Contains(mb.Detail, "127.0.0.1") || strings.Contains(mb.Detail, "INBOX") {
				t.Errorf("detail %q carries the server's or the error's own text", mb.Detail)
			}
			if tc.st.State == watcher.StateBackoff && mb.Detail == "" {
				t.Errorf("no detail for reason %s", mb.Reason)
			}

			var live LiveReport
			code = getJSON(t, srv.URL+"/healthz", &live)
			wantLive := tc.stalled == ""
			if want := map[bool]int{true: 200, false: 503}[wantLive]; code != want || live.Live != wantLive {
				t.Errorf("/healthz = %d live=%v (%+v), want %d", code, live.Live, live.Stalled, want)
			}
			if tc.stalled != "" && (len(live.Stalled) != 1 || live.Stalled[0].Loop != tc.stalled) {
				t.Errorf("/healthz stalled = %+v, want the %s loop", live.Stalled, tc.stalled)
			}
		})
	}
}

// During shutdown readiness fails at once (drain) while liveness holds, even for stopped loops.
func TestStoppingFailsReadinessOnly(t *testing.T) {
	now := time.Now()
	st := watcher.Status{State: watcher.StateStopped, Since: now, Heartbeat: now}
	o := testOps(now, &st, &fakeDispatch{})
	o.stopping.Store(true)
	if r := o.readiness(now); r.Ready || !r.Stopping {
		t.Errorf("readiness while stopping = %+v", r)
	}
	if l := o.liveness(now); !l.Live {
		t.Errorf("liveness while stopping = %+v", l)
	}
}

func TestMetricsScrape(t *testing.T) {
	now := time.Now()
	st := watcher.Status{State: watcher.StateIdle, Since: now.Add(-time.Minute), LastActivity: now.Add(-30 * time.Second),
		Heartbeat: now, BytesRead: 4096, Connects: 3, Idles: 7, LastUID: 42,
		Budget: watcher.BudgetUsage{Limit: 2_000_000_000, Used: 1_000_000, Remaining: 1_999_000_000}}
	o := testOps(now, &st, &fakeDispatch{at: now})
	o.outbox = &fakeOutbox{counts: map[string]int{store.StatePending: 2, store.StateInFlight: 1, store.StateDead: 4, store.StateDone: 9}}
	o.replies = fakeReplies{"acct": 7}
	o.metrics.delivered(dispatch.Event{Webhook: "ci", State: store.StateDone, Status: "http 200"})
	o.metrics.delivered(dispatch.Event{Webhook: "ci", State: store.StatePending, Status: "http 503"})
	o.metrics.delivered(dispatch.Event{Webhook: "ci", State: store.StateDead, Status: "http 400"})
	o.metrics.replySkipped("acct", "loop_guard")
	o.metrics.replyOutcome("acct", reply.OutcomeSent)
	o.metrics.replyOutcome("acct", reply.OutcomeDuplicate)
	srv := httptest.NewServer(o.handler())
	defer srv.Close()

	m := testmail.Scrape(t, srv.URL)
	for _, tc := range []struct {
		series string
		want   float64
	}{
		{`mailhook_outbox_depth`, 3},
		{`mailhook_dead_letter_depth`, 4},
		{`mailhook_outbox_jobs{state="done"}`, 9},
		{`mailhook_imap_downloaded_bytes_total{account="acct",mailbox="INBOX"}`, 4096},
		{`mailhook_imap_reconnects_total{account="acct",mailbox="INBOX"}`, 2},
		{`mailhook_imap_sessions_total{account="acct",mailbox="INBOX"}`, 3},
		{`mailhook_imap_idle{account="acct",mailbox="INBOX"}`, 1},
		{`mailhook_imap_state{account="acct",mailbox="INBOX",state="idle"}`, 1},
		{`mailhook_imap_state{account="acct",mailbox="INBOX",state="backoff"}`, 0},
		{`mailhook_imap_last_uid{account="acct",mailbox="INBOX"}`, 42},
		{`mailhook_mailbox_ready{account="acct",mailbox="INBOX"}`, 1},
		{`mailhook_live`, 1},
		{`mailhook_imap_downloaded_24h_bytes{account="acct"}`, 1_000_000},
		{`mailhook_imap_download_budget_remaining_bytes{account="acct"}`, 1_999_000_000},
		{`mailhook_webhook_deliveries_total{outcome="delivered",webhook="ci"}`, 1},
		{`mailhook_webhook_deliveries_total{outcome="retry",webhook="ci"}`, 1},
		{`mailhook_webhook_deliveries_total{outcome="dead",webhook="ci"}`, 1},
		{`mailhook_webhook_retries_total{webhook="ci"}`, 1},
		{`mailhook_dead_letters_total{reason="rejected",webhook="ci"}`, 1},
		{`mailhook_replies_skipped_total{account="acct",reason="loop_guard"}`, 1},
		{`mailhook_replies_skipped_total{account="acct",reason="duplicate"}`, 1},
		{`mailhook_replies_sent_total{account="acct"}`, 1},
		{`mailhook_replies_sent_24h{account="acct"}`, 7},
	} {
		if got, ok := m[tc.series]; !ok || got != tc.want {
			t.Errorf("%s = %v (present %v), want %v", tc.series, got, ok, tc.want)
		}
	}
	if got := m[`mailhook_imap_seconds_since_last_activity{account="acct",mailbox="INBOX"}`]; got < 29 || got > 31 {
		t.Errorf("seconds since last activity = %v, want 30", got)
	}
	if _, ok := m[`go_goroutines`]; !ok {
		t.Error("no Go runtime metrics")
	}

	// A failing outbox query costs its own metrics, not the scrape.
	o.outbox = &fakeOutbox{err: errors.New("database is locked")}
	m = testmail.Scrape(t, srv.URL)
	if _, ok := m["mailhook_outbox_depth"]; ok {
		t.Error("outbox depth reported although the query failed")
	}
	if _, ok := m[`mailhook_imap_idle{account="acct",mailbox="INBOX"}`]; !ok {
		t.Error("a failing outbox query dropped the other metrics")
	}
}

// getJSON GETs url, decodes the JSON body into v and returns the status code.
func getJSON(t *testing.T, url string, v any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: body is not JSON: %v\n%s", url, err, body)
	}
	return resp.StatusCode
}
