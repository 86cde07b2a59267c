package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The service's events (service.Observer).

// CacheResult counts a GetToken answered from the cache (hit) or not.
// It runs on every call: each vendor's two series are resolved once
// (vendor ids are configuration, so the map is bounded).
func (m *Metrics) CacheResult(vendor string, hit bool) {
	c, ok := m.cacheBound.Load(vendor)
	if !ok {
		c, _ = m.cacheBound.LoadOrStore(vendor, &[2]prometheus.Counter{
			m.cacheRequests.WithLabelValues(vendor, hitLabel(false)),
			m.cacheRequests.WithLabelValues(vendor, hitLabel(true)),
		})
	}
	i := 0
	if hit {
		i = 1
	}
	c.(*[2]prometheus.Counter)[i].Inc()
}

// Upstream counts one vendor token request and observes its latency.
// outcome is "ok" or a vendors.Kind string.
func (m *Metrics) Upstream(vendor, outcome string, took time.Duration) {
	m.upstreamRequests.WithLabelValues(vendor, outcome).Inc()
	m.upstreamDuration.WithLabelValues(vendor).Observe(took.Seconds())
}

// LeaseWait observes a wait for another replica's fetch.
func (m *Metrics) LeaseWait(vendor string, waited time.Duration) {
	m.lockWait.WithLabelValues(vendor).Observe(waited.Seconds())
}

// RefreshAhead counts a background refresh.
func (m *Metrics) RefreshAhead(vendor string) {
	m.refreshAhead.WithLabelValues(vendor).Inc()
}

// NegativeHit counts a request answered from the negative cache.
func (m *Metrics) NegativeHit(vendor string) {
	m.negativeHits.WithLabelValues(vendor).Inc()
}

// Invalidated counts an InvalidateToken call.
func (m *Metrics) Invalidated(vendor string, deleted bool) {
	result := "kept"
	if deleted {
		result = "deleted"
	}
	m.invalidations.WithLabelValues(vendor, result).Inc()
}

// StaleWrite counts a fetched token the shared cache refused to store
// because a later lease holder had stored one.
func (m *Metrics) StaleWrite(vendor string) {
	m.staleWrites.WithLabelValues(vendor).Inc()
}
