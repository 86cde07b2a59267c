package metrics

import "github.com/prometheus/client_golang/prometheus"

// newConfigReloads counts configuration reloads by result: ok, invalid
// (the previous configuration keeps serving), restart_required (the file
// changes what only a restart can; nothing of it was applied).
func newConfigReloads() *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "config_reloads_total",
		Help: "Configuration reloads (SIGHUP or a changed file) by result: ok, invalid, restart_required.",
	}, []string{"result"})
	// Every series from the start, so a rate() or an alert sees the first
	// failure.
	for _, result := range []string{"ok", "invalid", "restart_required"} {
		c.WithLabelValues(result)
	}
	return c
}

// ConfigReload counts one reload with its result.
func (m *Metrics) ConfigReload(result string) {
	m.configReloads.WithLabelValues(result).Inc()
}
