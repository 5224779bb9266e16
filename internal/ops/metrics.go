package ops

import (
	"context"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/mailhook/mailhook/dispatch"
	"github.com/mailhook/mailhook/reply"
	"github.com/mailhook/mailhook/store"
	"github.com/mailhook/mailhook/watcher"
)

// metrics holds mailhook's own registry (no global registry, so tests run several in one process)
// and the counters fed as things happen.
type metrics struct {
	reg *prometheus.Registry

	seen        *prometheus.CounterVec // account, mailbox
	matched     *prometheus.CounterVec // account, mailbox
	ruleMatches *prometheus.CounterVec // rule
	deliveries  *prometheus.CounterVec // webhook, outcome
	retries     *prometheus.CounterVec // webhook
	deadLetters *prometheus.CounterVec // webhook, reason

	// Replies are fed by the reply workers (replyOutcome) and the pipeline's loop guards
	// (replySkipped); an account that sent or skipped none has no series.
	repliesSent    *prometheus.CounterVec // account
	repliesSkipped *prometheus.CounterVec // account, reason
}

// newMetrics creates the registry with the Go runtime and process collectors, build info and the
// event counters. The scrape-time collector is registered separately (ops.collector).
func newMetrics(version string) *metrics {
	reg := prometheus.NewRegistry()
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "mailhook", Name: name, Help: help}, labels)
		reg.MustRegister(c)
		return c
	}
	m := &metrics{
		reg:         reg,
		seen:        counter("messages_seen_total", "New messages handed to the rules (a message already processed under another UID is not counted).", "account", "mailbox"),
		matched:     counter("messages_matched_total", "Messages that matched at least one rule with an action.", "account", "mailbox"),
		ruleMatches: counter("rule_matches_total", "Messages each rule matched.", "rule"),
		deliveries: counter("webhook_deliveries_total",
			"Settled webhook delivery attempts by outcome: delivered, retry (scheduled again), dead (dead-lettered), interrupted (shutdown; pending again), held (the endpoint is disabled).",
			"webhook", "outcome"),
		retries:        counter("webhook_retries_total", "Failed webhook attempts scheduled for a later retry.", "webhook"),
		deadLetters:    counter("dead_letters_total", "Jobs dead-lettered, by reason: rejected, gone, max_age, refused_address, webhook_removed.", "webhook", "reason"),
		repliesSent:    counter("replies_sent_total", "Auto-replies accepted by the SMTP server.", "account"),
		repliesSkipped: counter("replies_skipped_total", "Auto-replies not sent, by reason (loop guard, rate limit, once_per, …).", "account", "reason"),
	}
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "mailhook", Name: "build_info", Help: "Always 1; the labels say which build runs.",
			ConstLabels: prometheus.Labels{"version": version, "go_version": runtime.Version()},
		}, func() float64 { return 1 }),
	)
	return m
}

// Delivered counts one settled delivery attempt; it fits the dispatcher's Options.Observe.
func (o *Ops) Delivered(ev dispatch.Event) { o.metrics.delivered(ev) }

// ReplyOutcome counts one settled reply job; it fits reply.Options.OnOutcome.
func (o *Ops) ReplyOutcome(account, outcome string) { o.metrics.replyOutcome(account, outcome) }

// ReplySkipped counts a reply the pipeline's loop guards skipped; it fits pipeline.Config.OnSkip.
func (o *Ops) ReplySkipped(account, _, reason string) { o.metrics.replySkipped(account, reason) }

// Counting wraps the pipeline so every handled message is counted as seen, and as matched when
// the rules turned it into at least one job.
func (o *Ops) Counting(next watcher.Handler) watcher.Handler { return o.metrics.counting(next) }

// delivered counts one settled delivery attempt.
func (m *metrics) delivered(ev dispatch.Event) {
	outcome := ev.Outcome()
	m.deliveries.WithLabelValues(ev.Webhook, outcome).Inc()
	switch outcome {
	case dispatch.OutcomeRetry:
		m.retries.WithLabelValues(ev.Webhook).Inc()
	case dispatch.OutcomeDead:
		m.deadLetters.WithLabelValues(ev.Webhook, ev.DeadReason()).Inc()
	}
}

// replyOutcome counts one settled reply job; it fits reply.Options.OnOutcome. "sent" is a
// sent reply; every other outcome (duplicate, paused, retry, dead, unknown, …) is counted as not
// sent, with the outcome as the reason.
func (m *metrics) replyOutcome(account, outcome string) {
	if outcome == reply.OutcomeSent {
		m.repliesSent.WithLabelValues(account).Inc()
		return
	}
	m.replySkipped(account, outcome)
}

// replySkipped counts a reply not sent, for a reason from a fixed set (a loop guard's name, an
// outcome of the reply dispatcher).
func (m *metrics) replySkipped(account, reason string) {
	m.repliesSkipped.WithLabelValues(account, reason).Inc()
}

// counting wraps the pipeline so every handled message is counted as seen, and as matched when the
// rules turned it into at least one job.
func (m *metrics) counting(next watcher.Handler) watcher.Handler {
	return &countingHandler{next: next, m: m}
}

// countingHandler is the watcher.Handler that counts what the pipeline does. A message whose commit
// fails is offered again after reconnecting and counted again; that is rare and visible in the log.
type countingHandler struct {
	next watcher.Handler
	m    *metrics
}

var _ watcher.Handler = (*countingHandler)(nil)

// Match returns the wrapped handler's match, counted when its jobs are made.
func (h *countingHandler) Match(ev *watcher.Event) watcher.Matched {
	return countingMatch{Matched: h.next.Match(ev), m: h.m}
}

// countingMatch counts the message and the rules its jobs came from.
type countingMatch struct {
	watcher.Matched
	m *metrics
}

// Jobs runs the wrapped match's Jobs and counts the message and the rules its jobs came from.
func (c countingMatch) Jobs(ctx context.Context, ev *watcher.Event) ([]store.Job, error) {
	jobs, err := c.Matched.Jobs(ctx, ev)
	if err != nil {
		return jobs, err
	}
	c.m.seen.WithLabelValues(ev.Account, ev.Mailbox).Inc()
	var rules []string
	for _, j := range jobs {
		if !slices.Contains(rules, j.Rule) {
			rules = append(rules, j.Rule)
		}
	}
	if len(rules) > 0 {
		c.m.matched.WithLabelValues(ev.Account, ev.Mailbox).Inc()
	}
	for _, r := range rules {
		c.m.ruleMatches.WithLabelValues(r).Inc()
	}
	return jobs, nil
}

// OutboxCounter is the part of the store the collector reads.
type OutboxCounter interface {
	Counts(ctx context.Context) (map[string]int, error)
}

var _ OutboxCounter = store.Backend(nil)

// ReplyCounter is the reply ledger the collector reads.
type ReplyCounter interface {
	RepliesSent(ctx context.Context, account string, now time.Time) (int, error)
}

var _ ReplyCounter = store.Backend(nil)

// countsTimeout bounds the outbox query of one scrape.
const countsTimeout = 5 * time.Second

// Descriptors of the scrape-time metrics.
var (
	mbLabels = []string{"account", "mailbox"}

	descOutboxJobs   = prometheus.NewDesc("mailhook_outbox_jobs", "Jobs in the outbox by state.", []string{"state"}, nil)
	descOutboxDepth  = prometheus.NewDesc("mailhook_outbox_depth", "Jobs waiting to be delivered: pending plus in flight.", nil, nil)
	descDeadDepth    = prometheus.NewDesc("mailhook_dead_letter_depth", "Jobs in the dead-letter queue.", nil, nil)
	descBytes        = prometheus.NewDesc("mailhook_imap_downloaded_bytes_total", "Bytes read from the IMAP server since start, TLS overhead included.", mbLabels, nil)
	descSessions     = prometheus.NewDesc("mailhook_imap_sessions_total", "IMAP sessions started since start.", mbLabels, nil)
	descReconnects   = prometheus.NewDesc("mailhook_imap_reconnects_total", "IMAP sessions started after the first one.", mbLabels, nil)
	descIdles        = prometheus.NewDesc("mailhook_imap_idle_commands_total", "IDLE commands issued (one per refresh or wake-up).", mbLabels, nil)
	descSinceAct     = prometheus.NewDesc("mailhook_imap_seconds_since_last_activity", "Seconds since the last byte read from the IMAP server (absent before the first).", mbLabels, nil)
	descState        = prometheus.NewDesc("mailhook_imap_state", "1 for the watcher's current state, 0 for the others.", append(slices.Clone(mbLabels), "state"), nil)
	descIdle         = prometheus.NewDesc("mailhook_imap_idle", "1 while the watcher waits in IDLE, else 0.", mbLabels, nil)
	descLastUID      = prometheus.NewDesc("mailhook_imap_last_uid", "Last UID committed.", mbLabels, nil)
	descReady        = prometheus.NewDesc("mailhook_mailbox_ready", "1 when the mailbox passes the /readyz check, else 0.", mbLabels, nil)
	descLive         = prometheus.NewDesc("mailhook_live", "1 when every loop passes the /healthz check, else 0.", nil, nil)
	descDownloaded24 = prometheus.NewDesc("mailhook_imap_downloaded_24h_bytes", "Bytes downloaded from the account's IMAP server in the rolling 24-hour budget window.", []string{"account"}, nil)
	descBudgetLeft   = prometheus.NewDesc("mailhook_imap_download_budget_remaining_bytes", "Bytes the account may still download in the rolling 24-hour window (limit − used − reserved).", []string{"account"}, nil)
	descBudgetLimit  = prometheus.NewDesc("mailhook_imap_download_budget_bytes", "The account's download_per_day limit.", []string{"account"}, nil)
	descReplies24    = prometheus.NewDesc("mailhook_replies_sent_24h", "Auto-replies sent by the account in the last 24 hours.", []string{"account"}, nil)
)

// watcherStates are the states mailhook_imap_state always reports, so a dashboard sees zeros.
var watcherStates = []string{watcher.StateConnecting, watcher.StateFetching, watcher.StateIdle,
	watcher.StatePolling, watcher.StateBackoff, watcher.StateThrottled, watcher.StateStopped}

// stateCollector reads the watchers, the outbox and the health checks at scrape time.
type stateCollector struct {
	ops *Ops
}

var _ prometheus.Collector = (*stateCollector)(nil)

// Describe sends every descriptor Collect may use.
func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descOutboxJobs, descOutboxDepth, descDeadDepth, descBytes, descSessions,
		descReconnects, descIdles, descSinceAct, descState, descIdle, descLastUID, descReady, descLive,
		descDownloaded24, descBudgetLeft, descBudgetLimit, descReplies24} {
		ch <- d
	}
}

// Collect reads the current state. A failing outbox query is reported as an invalid metric, so
// the scrape shows the error and the other metrics still arrive.
func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	o := c.ops
	now := o.now()
	ctx, cancel := context.WithTimeout(context.Background(), countsTimeout)
	defer cancel()
	if o.outbox != nil {
		counts, err := o.outbox.Counts(ctx)
		if err != nil {
			ch <- prometheus.NewInvalidMetric(descOutboxDepth, fmt.Errorf("count outbox jobs: %w", err))
		} else {
			for _, state := range slices.Sorted(maps.Keys(counts)) {
				ch <- prometheus.MustNewConstMetric(descOutboxJobs, prometheus.GaugeValue, float64(counts[state]), state)
			}
			ch <- prometheus.MustNewConstMetric(descOutboxDepth, prometheus.GaugeValue,
				float64(counts[store.StatePending]+counts[store.StateInFlight]))
			ch <- prometheus.MustNewConstMetric(descDeadDepth, prometheus.GaugeValue, float64(counts[store.StateDead]))
		}
	}

	accounts := map[string]bool{}
	budgets := map[string]watcher.BudgetUsage{} // shared by an account's mailboxes: report it once
	for _, mb := range o.mailboxes {
		st := mb.status()
		h := mb.readiness(st, now)
		lv := []string{mb.account, mb.mailbox}
		gauge := func(d *prometheus.Desc, v float64, extra ...string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, append(slices.Clone(lv), extra...)...)
		}
		counter := func(d *prometheus.Desc, v float64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, lv...)
		}
		counter(descBytes, float64(st.BytesRead))
		counter(descSessions, float64(st.Connects))
		counter(descReconnects, float64(max(st.Connects-1, 0)))
		counter(descIdles, float64(st.Idles))
		if !st.LastActivity.IsZero() {
			gauge(descSinceAct, max(now.Sub(st.LastActivity).Seconds(), 0))
		}
		states := watcherStates
		if !slices.Contains(states, st.State) { // a state added later (e.g. throttled) still shows
			states = append(slices.Clone(states), st.State)
		}
		for _, s := range states {
			gauge(descState, boolFloat(s == st.State), s)
		}
		gauge(descIdle, boolFloat(st.State == watcher.StateIdle))
		gauge(descLastUID, float64(st.LastUID))
		gauge(descReady, boolFloat(h.Ready))
		accounts[mb.account] = true
		if st.Budget.Limit > 0 {
			budgets[mb.account] = st.Budget
		}
	}
	for _, acct := range slices.Sorted(maps.Keys(accounts)) {
		if b, ok := budgets[acct]; ok {
			ch <- prometheus.MustNewConstMetric(descDownloaded24, prometheus.GaugeValue, float64(b.Used), acct)
			ch <- prometheus.MustNewConstMetric(descBudgetLeft, prometheus.GaugeValue, float64(b.Remaining), acct)
			ch <- prometheus.MustNewConstMetric(descBudgetLimit, prometheus.GaugeValue, float64(b.Limit), acct)
		}
		if o.replies != nil {
			n, err := o.replies.RepliesSent(ctx, acct, now)
			if err != nil {
				ch <- prometheus.NewInvalidMetric(descReplies24, fmt.Errorf("count replies of %q: %w", acct, err))
			} else {
				ch <- prometheus.MustNewConstMetric(descReplies24, prometheus.GaugeValue, float64(n), acct)
			}
		}
	}
	live := o.liveness(now)
	ch <- prometheus.MustNewConstMetric(descLive, prometheus.GaugeValue, boolFloat(live.Live))
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
