package redisstore

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// Timeouts of the shared cache. Redis answers in well under a millisecond
// on a LAN; anything slower is an outage, and the broker would rather ask
// the vendor than wait (docs/design.md, Token semantics: Redis outages add no latency).
const (
	DefaultOpTimeout = 50 * time.Millisecond
	// DefaultLeaseTimeout bounds taking the fetch lease. It is longer
	// because the lease is taken only just before a vendor request (which
	// takes far longer), and failing to take it means a second upstream
	// request: a process stalled for a moment under CPU pressure should
	// wait rather than duplicate the fetch. Right after a failed command
	// the ordinary timeout applies, and a Redis that is really down opens
	// the breaker, after which taking the lease fails at once.
	DefaultLeaseTimeout = 250 * time.Millisecond
	// dialTimeout bounds background dials; a request's dial is bounded by
	// its operation timeout.
	dialTimeout = 200 * time.Millisecond
	// PoolSize is the connections per Redis server, and the commands a
	// Backend runs at once (more wait their turn before their timeout
	// starts).
	PoolSize = 64
)

// ClientConfig says where Redis is (config section cache.redis).
type ClientConfig struct {
	// Addrs: one address is a standalone server, several a Cluster; with
	// MasterName they are Sentinels.
	Addrs      []string
	MasterName string
	Username   string
	Password   string
	// SentinelUsername and SentinelPassword authenticate to Sentinels;
	// empty means Username and Password.
	SentinelUsername string
	SentinelPassword string
	TLS              bool
	// RootCAs verify the servers' certificates with TLS (nil: the
	// system's trust store).
	RootCAs *x509.CertPool
	DB      int
	// OpTimeout bounds every command, dial included (0: DefaultOpTimeout).
	OpTimeout time.Duration
}

// NewClient returns a go-redis UniversalClient (standalone, Sentinel or
// Cluster, as go-redis chooses from the addresses and master name) tuned
// for a cache that must fail fast: short timeouts, one retry, one dial
// attempt per command, and a bounded wait for a pooled connection.
func NewClient(cfg ClientConfig) (redis.UniversalClient, error) {
	if len(cfg.Addrs) == 0 {
		return nil, errors.New("redisstore: no address")
	}
	op := cfg.OpTimeout
	if op <= 0 {
		op = DefaultOpTimeout
	}
	opts := &redis.UniversalOptions{
		Addrs:            cfg.Addrs,
		MasterName:       cfg.MasterName,
		Username:         cfg.Username,
		Password:         cfg.Password,
		SentinelUsername: cmp.Or(cfg.SentinelUsername, cfg.Username),
		SentinelPassword: cmp.Or(cfg.SentinelPassword, cfg.Password),
		DB:               cfg.DB,
		ClientName:       "tokenbroker",

		DialTimeout:           dialTimeout,
		DialerRetries:         1,
		ReadTimeout:           op,
		WriteTimeout:          op,
		ContextTimeoutEnabled: true,
		// The Backend runs at most PoolSize commands at once, so a
		// connection is free when a command starts.
		PoolSize:    PoolSize,
		PoolTimeout: op,
		// One retry covers a pooled connection that died with a restarted
		// server; a second would only double an outage's cost.
		MaxRetries:      1,
		MinRetryBackoff: time.Millisecond,
		MaxRetryBackoff: 5 * time.Millisecond,

		// Skip handshake extras that older servers refuse: each would be a
		// wasted round trip per new connection.
		DisableIdentity:          true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	}
	if cfg.TLS {
		opts.Dialer = tlsDialer(cfg.RootCAs)
	}
	routeClientLogs.Do(func() { redis.SetLogger(debugLogger{}) })
	if len(cfg.Addrs) > 1 && cfg.MasterName == "" {
		cluster := opts.Cluster()
		// go-redis reloads the slot map on MOVED and ASK, and every
		// minute; a dead master answers neither. The Backend also reloads
		// it after each failed command.
		cluster.ClusterStateReloadInterval = ClusterStateReloadInterval
		return redis.NewClusterClient(cluster), nil
	}
	return redis.NewUniversalClient(opts), nil
}

// ClusterStateReloadInterval is how old a Cluster's slot map may grow
// before a command reloads it in the background: after a failover, keys
// reach the promoted replica within about this long even when nothing
// fails.
const ClusterStateReloadInterval = time.Second

// routeClientLogs sends go-redis's own log lines (one per failed dial
// during an outage) to slog at debug level instead of stderr: the breaker
// logs what an operator needs, once per outage.
var routeClientLogs sync.Once

type debugLogger struct{}

func (debugLogger) Printf(ctx context.Context, format string, v ...any) {
	slog.Default().DebugContext(ctx, "go-redis: "+fmt.Sprintf(format, v...))
}

// tlsDialer verifies each server's certificate against the host it dials,
// which go-redis's single TLSConfig cannot do for a Cluster's several
// hosts.
func tlsDialer(roots *x509.CertPool) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		d := &tls.Dialer{
			NetDialer: &net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second},
			Config:    &tls.Config{ServerName: host, RootCAs: roots, MinVersion: tls.VersionTLS12},
		}
		return d.DialContext(ctx, network, addr)
	}
}
