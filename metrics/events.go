package metrics

import "time"

// The service's events (service.Observer).

// CacheResult counts a GetToken answered from the cache (hit) or not.
func (m *Metrics) CacheResult(vendor string, hit bool) {
	m.cacheRequests.WithLabelValues(vendor, hitLabel(hit)).Inc()
}

// Upstream counts one vendor token request and observes its latency.
// outcome is "ok" or a vendors.Kind string.
func (m *Metrics) Upstream(vendor, outcome string, took time.Duration) {
	m.upstreamRequests.WithLabelValues(vendor, outcome).Inc()
	m.upstreamDuration.WithLabelValues(vendor).Observe(took.Seconds())
}

// LockWait observes a wait for another replica's fetch.
func (m *Metrics) LockWait(vendor string, waited time.Duration) {
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
