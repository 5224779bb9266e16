package ops

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mailhook/mailhook/store"
)

// descWebhookDisabled is the metric that reports disabled webhook endpoints, read from the store at
// scrape time, so an enable by `mailhook webhooks enable` shows at once.
var descWebhookDisabled = prometheus.NewDesc("mailhook_webhook_disabled",
	"1 while the webhook is disabled (HTTP 410, or failing for its disable_after period) and its jobs are held, else 0.",
	[]string{"webhook"}, nil)

// EndpointLister is the part of the store the endpoint collector reads.
type EndpointLister interface {
	Endpoints(ctx context.Context) ([]store.EndpointState, error)
}

var _ EndpointLister = store.Backend(nil)

// endpointCollector reports mailhook_webhook_disabled for every configured webhook.
type endpointCollector struct {
	states EndpointLister
	names  []string // configured webhooks, in configuration order
}

var _ prometheus.Collector = (*endpointCollector)(nil)

// Describe sends the collector's one descriptor.
func (c *endpointCollector) Describe(ch chan<- *prometheus.Desc) { ch <- descWebhookDisabled }

// Collect reads the endpoint states; a failed read is reported as an invalid metric.
func (c *endpointCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), countsTimeout)
	defer cancel()
	states, err := c.states.Endpoints(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descWebhookDisabled, fmt.Errorf("read endpoint states: %w", err))
		return
	}
	disabled := map[string]bool{}
	for _, s := range states {
		disabled[s.Name] = s.Disabled()
	}
	for _, name := range c.names {
		ch <- prometheus.MustNewConstMetric(descWebhookDisabled, prometheus.GaugeValue, boolFloat(disabled[name]), name)
	}
}
