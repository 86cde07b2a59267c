package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// StoreStats are the shared cache's counters (cumulative since start),
// read at each scrape.
type StoreStats struct {
	// L1 is the in-process level in front of Redis; without it (L1Enabled
	// false) its metrics are left out.
	L1Enabled bool
	// L1Hits and L1Misses count reads answered from L1 or not;
	// L1Fallbacks counts reads answered from L1 because Redis failed.
	L1Hits, L1Misses, L1Fallbacks uint64
	L1Entries                     int
	// Without L1, RedisReads counts token reads of Redis and SharedReads
	// the callers answered by another caller's concurrent read.
	RedisReads, SharedReads uint64
	// RedisErrors counts failed commands; RedisSkipped counts commands the
	// open breaker refused without trying.
	RedisErrors, RedisSkipped uint64
	// BreakerOpen is true while Redis is considered down (the broker is
	// degraded); BreakerOpens counts closed-to-open transitions.
	BreakerOpen  bool
	BreakerOpens uint64
	// Resyncs counts (re)subscriptions to the invalidation channel.
	Resyncs uint64
	// Invalidations counts L1 entries dropped on another replica's
	// message; PublishErrors counts this replica's messages that could not
	// be sent.
	Invalidations, PublishErrors uint64
	// SealOpenFailures counts sealed values that failed to open.
	SealOpenFailures uint64
	// LeasesLost counts fetch leases that expired before their holder
	// ended (a stalled process; its late write is refused).
	LeasesLost uint64
	// ClaimsInDoubt counts refresh-token claims no Redis replica
	// acknowledged in time (the primary grant was used instead).
	ClaimsInDoubt uint64
}

// WatchStore makes every scrape read stats (which must be cheap and safe
// for concurrent use) and report them.
func (m *Metrics) WatchStore(stats func() StoreStats) error {
	return m.registry.Register(&storeCollector{stats: stats})
}

var (
	descCacheLookups = prometheus.NewDesc(namespace+"_cache_level_lookups_total",
		"Reads of a cache level (l1: in-process, in front of Redis) by result (hit or miss).",
		[]string{"level", "result"}, nil)
	descL1Fallbacks = prometheus.NewDesc(namespace+"_cache_l1_fallbacks_total",
		"Reads answered from the in-process level because Redis failed.", nil, nil)
	descL1Entries = prometheus.NewDesc(namespace+"_cache_l1_entries",
		"Tokens held in the in-process level.", nil, nil)
	descRedisReads = prometheus.NewDesc(namespace+"_cache_redis_reads_total",
		"Without the in-process level: reads of a token in Redis (one per group of concurrent calls for it).", nil, nil)
	descSharedReads = prometheus.NewDesc(namespace+"_cache_shared_reads_total",
		"Without the in-process level: calls answered by another call's concurrent read of the same token in Redis.", nil, nil)
	descRedisErrors = prometheus.NewDesc(namespace+"_redis_errors_total",
		"Redis commands that failed (timeouts, connection errors, error replies).", nil, nil)
	descRedisSkipped = prometheus.NewDesc(namespace+"_redis_skipped_total",
		"Redis commands refused at once because the circuit breaker was open.", nil, nil)
	descBreakerOpen = prometheus.NewDesc(namespace+"_redis_breaker_open",
		"1 while the Redis circuit breaker is open (Redis considered down, the broker degraded), else 0.", nil, nil)
	descBreakerOpens = prometheus.NewDesc(namespace+"_redis_breaker_opens_total",
		"Times the Redis circuit breaker opened.", nil, nil)
	descResyncs = prometheus.NewDesc(namespace+"_redis_invalidation_resyncs_total",
		"(Re)subscriptions to the cross-replica invalidation channel; each revalidates the in-process level.", nil, nil)
	descInvalidations = prometheus.NewDesc(namespace+"_cache_l1_invalidations_received_total",
		"Entries dropped from the in-process level on another replica's invalidation message.", nil, nil)
	descPublishErrors = prometheus.NewDesc(namespace+"_redis_invalidation_publish_errors_total",
		"Invalidation messages this replica could not send; the other replicas' in-process levels catch up at their next revalidation (within seconds).", nil, nil)
	descLeasesLost = prometheus.NewDesc(namespace+"_redis_leases_lost_total",
		"Fetch leases that expired before their holder ended (this replica stalled past the lease TTL).", nil, nil)
	descClaimsInDoubt = prometheus.NewDesc(namespace+"_redis_refresh_claims_in_doubt_total",
		"Refresh-token claims no Redis replica acknowledged within the claim wait; each fetch used the primary grant instead of the refresh token.", nil, nil)
	descSealOpenFailures = prometheus.NewDesc(namespace+"_seal_open_failures_total",
		"Sealed cache values that failed to open (unknown key id, wrong key, tampering); each is treated as a miss.", nil, nil)
)

// storeCollector turns StoreStats into metrics at scrape time, so the
// store keeps plain atomic counters and knows nothing of Prometheus.
type storeCollector struct {
	stats func() StoreStats
}

func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descCacheLookups, descL1Fallbacks, descL1Entries, descRedisReads, descSharedReads, descRedisErrors,
		descRedisSkipped, descBreakerOpen, descBreakerOpens, descResyncs, descInvalidations, descPublishErrors, descSealOpenFailures, descLeasesLost, descClaimsInDoubt} {
		ch <- d
	}
}

func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.stats()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	if s.L1Enabled {
		counter(descCacheLookups, s.L1Hits, "l1", "hit")
		counter(descCacheLookups, s.L1Misses, "l1", "miss")
		counter(descL1Fallbacks, s.L1Fallbacks)
		ch <- prometheus.MustNewConstMetric(descL1Entries, prometheus.GaugeValue, float64(s.L1Entries))
		counter(descInvalidations, s.Invalidations)
	} else {
		counter(descRedisReads, s.RedisReads)
		counter(descSharedReads, s.SharedReads)
	}
	counter(descRedisErrors, s.RedisErrors)
	counter(descRedisSkipped, s.RedisSkipped)
	open := 0.0
	if s.BreakerOpen {
		open = 1
	}
	ch <- prometheus.MustNewConstMetric(descBreakerOpen, prometheus.GaugeValue, open)
	counter(descBreakerOpens, s.BreakerOpens)
	counter(descResyncs, s.Resyncs)
	counter(descPublishErrors, s.PublishErrors)
	counter(descSealOpenFailures, s.SealOpenFailures)
	counter(descLeasesLost, s.LeasesLost)
	counter(descClaimsInDoubt, s.ClaimsInDoubt)
}
