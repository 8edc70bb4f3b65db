package metrics

import "github.com/prometheus/client_golang/prometheus"

var leaseHeldDesc = prometheus.NewDesc(ns+"_lease_held",
	"1 when this replica holds the lease of the background job (so runs it), 0 when another replica does.", []string{"lease"}, nil)

// Leases exports which background jobs' leases this replica holds
// (lease.Runner.Held), read at each scrape: with replicas, exactly one
// has 1 for each lease.
func (m *Metrics) Leases(held func() map[string]bool) {
	if m != nil {
		m.reg.MustRegister(leaseCollector(held))
	}
}

type leaseCollector func() map[string]bool

func (c leaseCollector) Describe(ch chan<- *prometheus.Desc) { ch <- leaseHeldDesc }

func (c leaseCollector) Collect(ch chan<- prometheus.Metric) {
	for name, held := range c() {
		v := 0.0
		if held {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(leaseHeldDesc, prometheus.GaugeValue, v, name)
	}
}
