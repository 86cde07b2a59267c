package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// JWKSStatus is one JWT issuer's key state (docs/design.md, Security
// model), read at each scrape.
type JWKSStatus struct {
	// Issuer is the configured issuer (a fixed set: the configuration's).
	Issuer string
	// Stale is true while the last attempt to read the keys failed and
	// the last good keys are in use.
	Stale bool
	// Failures counts failed attempts to read the keys.
	Failures uint64
}

// WatchJWKS makes every scrape read status (cheap, safe for concurrent
// use) and report each issuer's key state.
func (m *Metrics) WatchJWKS(status func() []JWKSStatus) error {
	return m.registry.Register(&jwksCollector{status: status})
}

var (
	descJWKSStale = prometheus.NewDesc(namespace+"_jwks_stale",
		"1 while an issuer's keys could not be refreshed and the last good keys verify its tokens.",
		[]string{"issuer"}, nil)
	descJWKSFailures = prometheus.NewDesc(namespace+"_jwks_fetch_failures_total",
		"Failed attempts to read an issuer's keys (JWKS file, URL or discovery).",
		[]string{"issuer"}, nil)
)

type jwksCollector struct {
	status func() []JWKSStatus
}

func (c *jwksCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descJWKSStale
	ch <- descJWKSFailures
}

func (c *jwksCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.status() {
		stale := 0.0
		if s.Stale {
			stale = 1
		}
		ch <- prometheus.MustNewConstMetric(descJWKSStale, prometheus.GaugeValue, stale, s.Issuer)
		ch <- prometheus.MustNewConstMetric(descJWKSFailures, prometheus.CounterValue, float64(s.Failures), s.Issuer)
	}
}
