package app

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/tokenbroker/tokenbroker/config"
	"github.com/tokenbroker/tokenbroker/store"
	"github.com/tokenbroker/tokenbroker/store/redisstore"
	"github.com/tokenbroker/tokenbroker/store/sealed"
	"github.com/tokenbroker/tokenbroker/store/tiered"
)

// startupPing bounds the check, at startup, that Redis answers. A Redis
// that does not is logged, not fatal: the broker serves without it and
// the breaker lets it in when it comes.
const startupPing = time.Second

// CacheStats are the shared cache's counters, for metrics and /readyz.
type CacheStats struct {
	// L1 is the in-process level (with cache.l1_disabled it keeps
	// nothing, and counts the reads of Redis and those shared by
	// concurrent callers).
	L1 tiered.Stats
	// Sealing counts values that failed to open (each was a miss).
	Sealing sealed.Stats
	// Redis counts errors and tells the breaker state (Redis.BreakerOpen:
	// the broker is degraded).
	Redis redisstore.Stats
}

// sharedCache is the Redis-backed store.Store and store.Leaser: L1 (with
// cache.l1_disabled, read coalescing only) over sealing over Redis.
type sharedCache struct {
	store.Store
	leases  store.Leaser
	l1      *tiered.Store
	sealer  *sealed.Store
	backend *redisstore.Backend
}

// CacheStats returns the counters; metrics reach it with a type assertion
// on the configured store: st.(interface{ CacheStats() CacheStats }).
func (c *sharedCache) CacheStats() CacheStats {
	return CacheStats{L1: c.l1.Stats(), Sealing: c.sealer.Stats(), Redis: c.backend.Stats()}
}

// Ping checks Redis through the breaker (for /readyz).
func (c *sharedCache) Ping(ctx context.Context) error { return c.backend.Ping(ctx) }

func (c *sharedCache) close() {
	c.l1.Close()
	_ = c.backend.Close()
}

// buildSharedCache builds the store of cfg.Cache.Redis (docs/design.md, Storage).
func buildSharedCache(ctx context.Context, cfg *config.Config, logger *slog.Logger) (*sharedCache, error) {
	rc := cfg.Cache.Redis
	ring, err := encryptionKeys(cfg.Cache)
	if err != nil {
		return nil, err
	}
	var roots *x509.CertPool
	if rc.TLSCAFile != "" {
		pem, err := os.ReadFile(rc.TLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("cache.redis.tls_ca_file: %w", err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("cache.redis.tls_ca_file %s: no PEM certificate in it", rc.TLSCAFile)
		}
	}
	client, err := redisstore.NewClient(redisstore.ClientConfig{
		Addrs:      rc.Addrs,
		MasterName: rc.MasterName,
		Username:   rc.Username,
		Password:   rc.Password.Reveal(),
		// Sentinel credentials default to the data nodes' (redisstore).
		SentinelUsername: rc.SentinelUsername,
		SentinelPassword: rc.SentinelPassword.Reveal(),
		TLS:              rc.TLS,
		RootCAs:          roots,
		DB:               rc.DB,
	})
	if err != nil {
		return nil, fmt.Errorf("cache.redis: %w", err)
	}
	opts := redisstore.Options{Logger: logger, LeaseTTL: cfg.Cache.LeaseTTL}
	if rc.MasterName != "" {
		// Sentinel promotes replicas: a refresh token's claim must reach
		// one before the token is presented (docs/design.md, The lease and generation protocol).
		opts.ClaimAcks = 1
	}
	c := &sharedCache{backend: redisstore.New(client, opts)}
	c.leases = c.backend
	if ring != nil {
		c.sealer = sealed.New(c.backend, ring)
	} else {
		logger.Warn("cache.allow_plaintext: Redis holds clear access and refresh tokens; set cache.encryption_keys")
		c.sealer = sealed.NewPlaintext(c.backend)
	}
	// With cache.l1_disabled nothing is kept in process; concurrent
	// callers of one token still share one GET and one decryption, and
	// replicas that do keep tokens in process hear of this one's changes.
	c.l1 = tiered.New(c.sealer, tiered.Options{MaxEntries: cfg.Cache.L1MaxEntries, NoL1: cfg.Cache.L1Disabled, Publish: c.backend.Publish})
	c.Store = c.l1

	pctx, cancel := context.WithTimeout(ctx, startupPing)
	defer cancel()
	if err := c.backend.Warm(pctx); err != nil {
		logger.Warn("redis does not answer at startup; serving without the shared cache until it does; its maxmemory-policy is not checked", "addrs", strings.Join(rc.Addrs, ","), "err", err)
	} else if err := checkEviction(ctx, c.backend, rc.AllowEviction, logger); err != nil {
		c.close()
		return nil, err
	}
	c.backend.Watch(c.l1)
	return c, nil
}

// checkEviction refuses a Redis that may evict the broker's keys, unless
// cache.redis.allow_eviction (docs/operations.md, Redis requirements).
func checkEviction(ctx context.Context, b *redisstore.Backend, allow bool, logger *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, startupPing)
	defer cancel()
	err := b.CheckEviction(ctx)
	var evicting *redisstore.EvictionError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &evicting) && allow:
		logger.Warn("cache.redis.allow_eviction: "+err.Error(), "maxmemory_policy", evicting.Policy)
		return nil
	case errors.As(err, &evicting):
		return fmt.Errorf("cache.redis: %w; set maxmemory-policy noeviction on Redis (a full Redis then refuses writes, which the broker survives), "+
			"or set cache.redis.allow_eviction: true to run with the risk", err)
	case errors.Is(err, redisstore.ErrPolicyUnknown):
		logger.Warn("could not check Redis's maxmemory-policy (CONFIG GET and INFO refused); it must be noeviction", "err", err)
	default:
		logger.Warn("could not check Redis's maxmemory-policy; it must be noeviction", "err", err)
	}
	return nil
}
