package ops

import "github.com/prometheus/client_golang/prometheus"

// LeaseCounts are the counters of a replica's mailbox leases on a store shared by replicas.
type LeaseCounts struct {
	Held       int    // leases held now
	Acquired   uint64 // acquisitions (free, released or expired leases)
	TakenOver  uint64 // acquisitions of a lease another replica held and let expire
	Lost       uint64 // leases lost: not renewed in time, or found taken over
	HandedOver uint64 // surplus leases released for another replica
}

// Lease metrics of a replica sharing a PostgreSQL store.
var (
	descLeasesHeld = prometheus.NewDesc("mailhook_leases_held",
		"Mailbox leases this replica holds (it watches those mailboxes).", nil, nil)
	descLeaseAcquired = prometheus.NewDesc("mailhook_lease_acquisitions_total",
		"Mailbox leases this replica acquired.", nil, nil)
	descLeaseTakeovers = prometheus.NewDesc("mailhook_lease_takeovers_total",
		"Mailbox leases this replica took over after another replica let them expire.", nil, nil)
	descLeasesLost = prometheus.NewDesc("mailhook_leases_lost_total",
		"Mailbox leases this replica lost: not renewed in time, or found taken over.", nil, nil)
	descLeaseHandovers = prometheus.NewDesc("mailhook_lease_handovers_total",
		"Surplus mailbox leases this replica handed over to another.", nil, nil)
)

// leaseCollector reports a lease manager's counters, read at every scrape.
type leaseCollector struct{ counts func() LeaseCounts }

var _ prometheus.Collector = (*leaseCollector)(nil)

func (c *leaseCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descLeasesHeld, descLeaseAcquired, descLeaseTakeovers, descLeasesLost, descLeaseHandovers} {
		ch <- d
	}
}

func (c *leaseCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.counts()
	ch <- prometheus.MustNewConstMetric(descLeasesHeld, prometheus.GaugeValue, float64(s.Held))
	ch <- prometheus.MustNewConstMetric(descLeaseAcquired, prometheus.CounterValue, float64(s.Acquired))
	ch <- prometheus.MustNewConstMetric(descLeaseTakeovers, prometheus.CounterValue, float64(s.TakenOver))
	ch <- prometheus.MustNewConstMetric(descLeasesLost, prometheus.CounterValue, float64(s.Lost))
	ch <- prometheus.MustNewConstMetric(descLeaseHandovers, prometheus.CounterValue, float64(s.HandedOver))
}
