package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/tokenbroker/tokenbroker/metrics"
	"github.com/tokenbroker/tokenbroker/store"
)

// cacheStatser is the shared cache's counters (cache.go).
type cacheStatser interface {
	CacheStats() CacheStats
}

// pinger is a shared store's round trip.
type pinger interface {
	Ping(ctx context.Context) error
}

// errBreakerOpen: the shared cache's breaker has given up on Redis for now.
var errBreakerOpen = errors.New("redis circuit breaker open")

// watchSharedCache exposes the shared cache's counters as metrics and
// builds readiness's Redis check: degraded while the breaker is open, or
// when Redis does not answer a ping (if the store can ping).
func (o *ops) watchSharedCache(st store.Store, l store.Leaser, withL1 bool) error {
	stats, _ := st.(cacheStatser)
	ping := findPinger(st, l)
	if stats == nil && ping == nil {
		o.log.Warn("the Redis store offers neither counters nor a ping: no Redis metrics, and readiness cannot report a Redis outage")
		return nil
	}
	if stats != nil {
		if err := o.metrics.WatchStore(func() metrics.StoreStats { return storeStats(stats.CacheStats(), withL1) }); err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
	}
	o.redisDown = func(ctx context.Context) error {
		if stats != nil && stats.CacheStats().Redis.BreakerOpen {
			return errBreakerOpen
		}
		if ping != nil {
			return ping.Ping(ctx)
		}
		return nil
	}
	return nil
}

func storeStats(c CacheStats, withL1 bool) metrics.StoreStats {
	return metrics.StoreStats{
		L1Enabled:        withL1,
		L1Hits:           c.L1.Hits,
		L1Misses:         c.L1.Misses,
		L1Fallbacks:      c.L1.Fallbacks,
		L1Entries:        c.L1.Entries,
		RedisReads:       c.L1.Reads,
		SharedReads:      c.L1.Shared,
		RedisErrors:      c.Redis.Errors,
		RedisSkipped:     c.Redis.Skipped,
		BreakerOpen:      c.Redis.BreakerOpen,
		BreakerOpens:     c.Redis.BreakerOpens,
		Resyncs:          c.Redis.Resyncs,
		LeasesLost:       c.Redis.LeasesLost,
		ClaimsInDoubt:    c.Redis.ClaimsInDoubt,
		Invalidations:    c.L1.Forgotten,
		PublishErrors:    c.L1.PublishErrors,
		SealOpenFailures: c.Sealing.OpenFailures,
	}
}

// findPinger returns the first of candidates that can ping its backend.
func findPinger(candidates ...any) pinger {
	for _, c := range candidates {
		if p, ok := c.(pinger); ok && p != nil {
			return p
		}
	}
	return nil
}
