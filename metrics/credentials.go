package metrics

import "github.com/prometheus/client_golang/prometheus"

// EventStats count credential events by what became of them, over every
// sink (cumulative since start).
type EventStats struct {
	// Sent were accepted by a sink; Failed were given up after the
	// retries; Dropped found a sink's queue full.
	Sent, Failed, Dropped uint64
}

var descCredentialEvents = prometheus.NewDesc(namespace+"_credential_events_total",
	"Credential state change events per sink delivery, by result: sent, failed (retries spent), dropped (queue full).",
	[]string{"result"}, nil)

// WatchCredentialEvents makes every scrape read stats (cheap, safe for
// concurrent use) and report them.
func (m *Metrics) WatchCredentialEvents(stats func() EventStats) error {
	return m.registry.Register(eventsCollector(stats))
}

type eventsCollector func() EventStats

func (c eventsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- descCredentialEvents }

func (c eventsCollector) Collect(ch chan<- prometheus.Metric) {
	s := c()
	for _, r := range []struct {
		result string
		n      uint64
	}{{"sent", s.Sent}, {"failed", s.Failed}, {"dropped", s.Dropped}} {
		ch <- prometheus.MustNewConstMetric(descCredentialEvents, prometheus.CounterValue, float64(r.n), r.result)
	}
}
