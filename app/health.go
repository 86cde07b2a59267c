package app

import (
	"os"
	"strconv"

	"github.com/tokenbroker/tokenbroker/config"
	"github.com/tokenbroker/tokenbroker/events"
	"github.com/tokenbroker/tokenbroker/metrics"
	"github.com/tokenbroker/tokenbroker/service"
	"github.com/tokenbroker/tokenbroker/store"
)

// configureHealth wires credential status (docs/design.md, Operations,
// "Credential status and events"): with Redis the fleet's status book is
// the Redis backend, and the status answer reports its breaker; with
// events.sinks a dispatcher sends the changes (counted in metrics; call it
// after instrument).
func (a *App) configureHealth(svcCfg *service.Config, st store.Store, cfg *config.Config) error {
	svcCfg.Health.Replica = replicaName()
	if sc, ok := st.(*sharedCache); ok {
		svcCfg.Health.Book = sc.backend
		svcCfg.Health.BreakerOpen = func() bool { return sc.backend.Stats().BreakerOpen }
	}
	if len(cfg.Events.Sinks) == 0 {
		return nil
	}
	sinks := make([]events.Sink, len(cfg.Events.Sinks))
	for i, s := range cfg.Events.Sinks {
		headers := make(map[string]string, len(s.Headers))
		for k, v := range s.Headers {
			headers[k] = v.Reveal()
		}
		sinks[i] = events.Sink{URL: s.URL, Headers: headers}
	}
	d, err := events.New(events.Options{Sinks: sinks, Logger: a.log})
	if err != nil {
		return err
	}
	a.closers = append(a.closers, d.Close)
	svcCfg.Health.Events = d
	return a.ops.metrics.WatchCredentialEvents(func() metrics.EventStats {
		var sum metrics.EventStats
		for _, s := range d.Stats() {
			sum.Sent += s.Sent
			sum.Failed += s.Failed
			sum.Dropped += s.Dropped
		}
		return sum
	})
}

// replicaName names this process in status records and events: the host
// (a pod's name) and the process id, so that replicas on one host differ.
func replicaName() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown-host"
	}
	return host + "/" + strconv.Itoa(os.Getpid())
}
