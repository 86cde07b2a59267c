package config

import (
	"time"

	"github.com/tokenbroker/tokenbroker/store"
)

// The defaults of docs/design.md, Configuration: a key the file leaves out
// takes its value from Defaults, and a key whose documented zero means
// "the default" gets it from applyDefaults. Packages that receive these
// values take them as given; those a library user can build without a
// Config (service.Config, auth.Config, redisstore.Options, ...) fall back
// to these same constants when a field is zero and zero is not a value
// of its range.
const (
	DefaultGRPCAddr = "127.0.0.1:9090"
	DefaultHTTPAddr = "127.0.0.1:8080"
	// DefaultShutdownDelay is shutdown_delay: not ready but serving this
	// long after SIGTERM, so load balancers stop sending first.
	DefaultShutdownDelay = 5 * time.Second

	// DefaultL1MaxEntries is cache.l1_max_entries, the bound of L1 and of
	// the memory store (store.DefaultMaxEntries, the lowest package that
	// applies it).
	DefaultL1MaxEntries = store.DefaultMaxEntries
	// DefaultLeaseTTL is cache.lease_ttl: how long a fetch lease outlives
	// its holder's last renewal, the longest a crashed holder delays the
	// other replicas (store.DefaultLeaseTTL, which redisstore applies).
	DefaultLeaseTTL = store.DefaultLeaseTTL

	// DefaultMinTTL is service.default_min_ttl, the min_ttl of requests
	// that leave it unset.
	DefaultMinTTL = 30 * time.Second
	// DefaultForceRefreshInterval is service.force_refresh_interval: a
	// force_refresh this soon after a fetch gets that token.
	DefaultForceRefreshInterval = 5 * time.Second
	// DefaultRefreshAhead is service.refresh_ahead: the fraction of a
	// token's life after which a hit starts one background refresh.
	DefaultRefreshAhead = 0.8
	// DefaultKeepWarmMax is service.keep_warm_max, the most profiles with
	// keep_warm (each costs its vendor a request per token lifetime,
	// callers or not).
	DefaultKeepWarmMax = 100

	// DefaultRefreshPerMinute and DefaultRefreshBurst are
	// limits.refresh_per_minute and limits.refresh_burst: each client's
	// force_refresh GetToken and InvalidateToken calls.
	DefaultRefreshPerMinute = 60
	DefaultRefreshBurst     = 30
	// DefaultMissesPerMinute and DefaultMissBurst are
	// limits.misses_per_minute and limits.miss_burst: the vendor requests
	// one client's cache misses may cause, fleet-wide.
	DefaultMissesPerMinute = 600
	DefaultMissBurst       = 300
	// DefaultMaxClientShare is limits.max_client_share: while other
	// clients wait for a vendor's budget, one client may take at most
	// half of it.
	DefaultMaxClientShare = 0.5

	// DefaultMaxTokenLifetime is auth.jwt_issuers[].max_token_lifetime:
	// the longest exp - iat of a caller's JWT (the longest a
	// kubelet-projected token may live is 48h, a day is common).
	DefaultMaxTokenLifetime = 24 * time.Hour
)

// The ranges that validate checks (docs/design.md, Configuration).
const (
	// MinLeaseTTL and MaxLeaseTTL bound cache.lease_ttl: a lease is
	// renewed every third of it, so much shorter would spend Redis round
	// trips on renewals, and much longer would let a crashed holder stall
	// the fleet.
	MinLeaseTTL = 300 * time.Millisecond
	MaxLeaseTTL = time.Minute
	// MaxMinTTL is the largest min_ttl a request, or
	// service.default_min_ttl, may ask for.
	MaxMinTTL = 24 * time.Hour
	// maxSampleOneIn bounds access_log.sample_one_in: beyond it a sampled
	// log is as good as none, which says so more plainly.
	maxSampleOneIn = 1_000_000
)

// Defaults is the configuration of an empty file: the table of every
// default a key the file leaves out keeps. Parse decodes the file onto
// it; LoadWith lets a caller start from another (--dev: no shutdown
// delay).
func Defaults() *Config {
	return &Config{
		GRPCAddr:      DefaultGRPCAddr,
		HTTPAddr:      DefaultHTTPAddr,
		ShutdownDelay: DefaultShutdownDelay,
		Cache: Cache{
			L1MaxEntries: DefaultL1MaxEntries,
			LeaseTTL:     DefaultLeaseTTL,
		},
		Service: ServiceTuning{
			DefaultMinTTL:        DefaultMinTTL,
			ForceRefreshInterval: DefaultForceRefreshInterval,
			RefreshAhead:         DefaultRefreshAhead,
			KeepWarmMax:          DefaultKeepWarmMax,
		},
		Limits: Limits{
			RefreshPerMinute: DefaultRefreshPerMinute,
			RefreshBurst:     DefaultRefreshBurst,
			MissesPerMinute:  DefaultMissesPerMinute,
			MissBurst:        DefaultMissBurst,
			MaxClientShare:   DefaultMaxClientShare,
		},
		AccessLog: AccessLog{CacheHits: CacheHitsAll},
	}
}

// applyDefaults fills in what decoding onto Defaults cannot: the entries
// of lists (each decoded from zero), and the keys whose documented zero
// means the default (cache.l1_max_entries: 0, cache.lease_ttl: 0s,
// service.refresh_ahead: 0, service.keep_warm_max: 0, limits.*: 0,
// access_log.cache_hits: ""), so files written against that rule keep
// their meaning; likewise service.refresh_ahead above 1 is 1 (off). A zero that is a value of its key (shutdown_delay,
// service.default_min_ttl, service.force_refresh_interval: 0s) is kept.
func (c *Config) applyDefaults() {
	def := Defaults()
	orDefault(&c.Cache.L1MaxEntries, def.Cache.L1MaxEntries)
	orDefault(&c.Cache.LeaseTTL, def.Cache.LeaseTTL)
	orDefault(&c.Service.RefreshAhead, def.Service.RefreshAhead)
	if c.Service.RefreshAhead > 1 {
		// Documented since the first release as ">= 1: off": 1 says it.
		c.Service.RefreshAhead = 1
	}
	orDefault(&c.Service.KeepWarmMax, def.Service.KeepWarmMax)
	orDefault(&c.Limits.RefreshPerMinute, def.Limits.RefreshPerMinute)
	orDefault(&c.Limits.RefreshBurst, def.Limits.RefreshBurst)
	orDefault(&c.Limits.MissesPerMinute, def.Limits.MissesPerMinute)
	orDefault(&c.Limits.MissBurst, def.Limits.MissBurst)
	orDefault(&c.Limits.MaxClientShare, def.Limits.MaxClientShare)
	orDefault(&c.AccessLog.CacheHits, def.AccessLog.CacheHits)
	for i := range c.Auth.JWTIssuers {
		orDefault(&c.Auth.JWTIssuers[i].MaxTokenLifetime, DefaultMaxTokenLifetime)
	}
}

// orDefault sets *v to def when it is zero.
func orDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}
