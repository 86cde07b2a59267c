// Package redisstore is the Redis side of tokenbroker's shared cache: a
// byte store for sealed values (sealed.Backend) whose writes are fenced by
// generation, the cross-replica fetch lease (store.Leaser, lease.go), and
// the channels that keep each replica's L1 (package tiered) honest and wake
// the replicas waiting on a lease. It works with a standalone server,
// Sentinel or Cluster through go-redis's UniversalClient; every command is
// bounded by a timeout and a breaker, so an outage costs the broker economy,
// never availability.
//
// Every key and channel name is built by package store (keys.go). The
// keys, values and channels are docs/design.md, Storage; the lease,
// the fenced writes, the breakers and what each outage does are
// docs/design.md, The lease and generation protocol.
package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokenbroker/tokenbroker/store"
	"github.com/tokenbroker/tokenbroker/store/sealed"
)

// ErrUnavailable is returned, at once, while the breaker is open.
var ErrUnavailable = errors.New("redisstore: Redis unavailable (circuit breaker open)")

// ErrClosed is returned by a Backend after Close.
var ErrClosed = errors.New("redisstore: closed")

// Options tune a Backend; zero values are the defaults.
type Options struct {
	// OpTimeout bounds each command (DefaultOpTimeout); LeaseTimeout the
	// lease's acquisition (DefaultLeaseTimeout).
	OpTimeout    time.Duration
	LeaseTimeout time.Duration
	// FailureThreshold consecutive failures over at least MinOutage open
	// the breaker (DefaultFailureThreshold, DefaultMinOutage).
	FailureThreshold int
	MinOutage        time.Duration
	// ProbeInterval is how often an open breaker probes (DefaultProbeInterval).
	ProbeInterval time.Duration
	// Channel is the invalidation channel (store.InvalidationChannel),
	// LeaseChannel the lease release channel (store.LeaseChannel).
	Channel      string
	LeaseChannel string
	// LeaseTTL is how long a fetch lease outlives its last renewal
	// (config cache.lease_ttl, ranged there; 0 means
	// store.DefaultLeaseTTL).
	LeaseTTL time.Duration
	// ClaimWait bounds the wait for a replica to acknowledge a
	// refresh-token claim (DefaultClaimWait, claim.go).
	ClaimWait time.Duration
	// ClaimAcks > 0 makes every refresh-token claim wait for a replica's
	// acknowledgement, even while the master reports none: set where a
	// replica can be promoted (Sentinel), since a replica that is
	// reconnecting still may be, and a failover must not forget a claim
	// (docs/design.md, The lease and generation protocol).
	ClaimAcks int
	Logger    *slog.Logger
}

// Stats are a Backend's counters.
type Stats struct {
	// Errors counts commands that failed (timeouts, network, error replies).
	Errors uint64
	// Skipped counts commands refused because the breaker was open.
	Skipped uint64
	// BreakerOpen is true while Redis (in a Cluster: any master) is
	// considered down.
	BreakerOpen bool
	// BreakerOpens counts times a breaker opened.
	BreakerOpens uint64
	// Resyncs counts (re)subscriptions to the invalidation channel, after
	// which every in-process entry is revalidated.
	Resyncs uint64
	// LeasesLost counts leases that expired before their holder ended
	// (refused writes are counted by the service, per vendor).
	LeasesLost uint64
	// ClaimsInDoubt counts refresh-token claims no replica acknowledged
	// within ClaimWait: the primary grant was used instead.
	ClaimsInDoubt uint64
}

// Backend is the Redis byte store, leaser and invalidation channel.
type Backend struct {
	client redis.UniversalClient
	// cluster is client when it is a Cluster client, else nil.
	cluster *redis.ClusterClient
	opts    Options
	log     *slog.Logger
	// breaker guards a standalone or Sentinel-managed server, and the
	// commands that name no key; in a Cluster, nodes holds one per master
	// address.
	breaker breaker
	nodes   sync.Map // address -> *breaker
	// id tells this process's invalidation messages from other replicas'.
	id string

	errors        atomic.Uint64
	skipped       atomic.Uint64
	resyncs       atomic.Uint64
	leasesLost    atomic.Uint64
	claimsInDoubt atomic.Uint64

	// replicas caches, by master address, how many replicas it has
	// (claim.go).
	replicas sync.Map

	// commands holds a permit per command in flight: at most PoolSize, so
	// a command never waits for a pooled connection inside its timeout
	// (a cold start of thousands of tokens queues here, which says
	// nothing about Redis, instead of timing out and opening the breaker).
	commands chan struct{}

	// waiters are the channels Notify handed out, by key.
	waitMu  sync.Mutex
	waiters map[string]map[chan struct{}]struct{}

	// ctx ends at Close; wg owns the prober and subscriber goroutines.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	pubsub  *redis.PubSub // current subscription, closed by Close
	watcher Watcher       // what Watch was given, told when Redis recovers
	closed  bool
}

var (
	_ sealed.Backend = (*Backend)(nil)
	_ store.Leaser   = (*Backend)(nil)
)

// New returns a Backend using client, which it owns: Close closes it.
func New(client redis.UniversalClient, opts Options) *Backend {
	if opts.OpTimeout <= 0 {
		opts.OpTimeout = DefaultOpTimeout
	}
	if opts.LeaseTimeout <= 0 {
		opts.LeaseTimeout = DefaultLeaseTimeout
	}
	if opts.FailureThreshold <= 0 {
		opts.FailureThreshold = DefaultFailureThreshold
	}
	if opts.MinOutage <= 0 {
		opts.MinOutage = DefaultMinOutage
	}
	if opts.ProbeInterval <= 0 {
		opts.ProbeInterval = DefaultProbeInterval
	}
	if opts.Channel == "" {
		opts.Channel = store.InvalidationChannel
	}
	if opts.LeaseChannel == "" {
		opts.LeaseChannel = store.LeaseChannel
	}
	if opts.LeaseTTL <= 0 {
		opts.LeaseTTL = store.DefaultLeaseTTL
	}
	if opts.ClaimWait <= 0 {
		opts.ClaimWait = DefaultClaimWait
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	b := &Backend{
		client:   client,
		opts:     opts,
		log:      opts.Logger,
		breaker:  breaker{threshold: opts.FailureThreshold, minOutage: opts.MinOutage, now: time.Now},
		id:       randomHex(8),
		waiters:  make(map[string]map[chan struct{}]struct{}),
		commands: make(chan struct{}, PoolSize),
	}
	b.cluster, _ = client.(*redis.ClusterClient)
	b.ctx, b.cancel = context.WithCancel(context.Background())
	return b
}

// breakerFor returns the breaker that guards key's node: in a Cluster the
// current master of its slot, else the one breaker.
func (b *Backend) breakerFor(ctx context.Context, key string) *breaker {
	if b.cluster == nil || key == "" {
		return &b.breaker
	}
	node, err := b.cluster.MasterForKey(ctx, key)
	if err != nil {
		return &b.breaker
	}
	addr := node.Options().Addr
	if br, ok := b.nodes.Load(addr); ok {
		return br.(*breaker)
	}
	br, _ := b.nodes.LoadOrStore(addr, &breaker{threshold: b.opts.FailureThreshold, minOutage: b.opts.MinOutage, now: time.Now})
	return br.(*breaker)
}

// breakers calls f with every breaker.
func (b *Backend) breakers(f func(*breaker)) {
	f(&b.breaker)
	b.nodes.Range(func(_, br any) bool {
		f(br.(*breaker))
		return true
	})
}

// Close stops the background goroutines and closes the client.
func (b *Backend) Close() error {
	b.mu.Lock()
	b.closed = true
	ps := b.pubsub
	b.mu.Unlock()
	b.cancel()
	if ps != nil {
		_ = ps.Close()
	}
	b.wg.Wait()
	return b.client.Close()
}

// Stats returns the counters.
func (b *Backend) Stats() Stats {
	open, opens := false, uint64(0)
	b.breakers(func(br *breaker) {
		open = open || !br.allow()
		opens += br.opens.Load()
	})
	return Stats{
		Errors:        b.errors.Load(),
		Skipped:       b.skipped.Load(),
		BreakerOpen:   open,
		BreakerOpens:  opens,
		Resyncs:       b.resyncs.Load(),
		LeasesLost:    b.leasesLost.Load(),
		ClaimsInDoubt: b.claimsInDoubt.Load(),
	}
}

// Ping checks Redis once, through the breaker (fails at once while it is
// open).
func (b *Backend) Ping(ctx context.Context) error {
	return b.do(ctx, "", func(ctx context.Context) error { return b.client.Ping(ctx).Err() })
}

// Warm connects to Redis ahead of the first request, within ctx and
// outside the breaker: it PINGs the server or, in a Cluster, every master
// (which also loads the slot map), so the first requests do not spend
// their short timeouts on dialing.
func (b *Backend) Warm(ctx context.Context) error {
	if cc, ok := b.client.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
			return node.Ping(ctx).Err()
		})
	}
	return b.client.Ping(ctx).Err()
}

// Load implements sealed.Backend.
func (b *Backend) Load(ctx context.Context, key string) ([]byte, error) {
	var value []byte
	err := b.do(ctx, key, func(ctx context.Context) error {
		var err error
		value, err = b.client.Get(ctx, key).Bytes()
		return err
	})
	switch {
	case errors.Is(err, redis.Nil):
		return nil, store.ErrNotFound
	case err != nil:
		return nil, fmt.Errorf("redisstore: GET: %w", err)
	}
	return value, nil
}

// Save implements sealed.Backend for a token under its token key: SET
// with PX = the time left until expiresAt, rounded down to the
// millisecond, unless the key's fence generation is newer than fence
// (store.ErrStale) or the value's tag is marked revoked
// (store.ErrRevoked, revoke.go); it deletes the negative cache entry
// beside the token. A value with less than a millisecond left is not
// stored.
func (b *Backend) Save(ctx context.Context, key string, value []byte, expiresAt time.Time, fence uint64) error {
	return b.save(ctx, key, store.NegativeKey(key), value, expiresAt, fence)
}

// SaveRejection implements sealed.Backend for a negative cache entry
// under its store.NegativeKey: Save without the revocation check and the
// delete.
func (b *Backend) SaveRejection(ctx context.Context, key string, value []byte, expiresAt time.Time, fence uint64) error {
	return b.save(ctx, key, key, value, expiresAt, fence)
}

// save runs saveFenced for key; negative is the negative cache entry a
// token write deletes, key itself for a rejection's write (saveFenced
// tells the two apart by that).
func (b *Backend) save(ctx context.Context, key, negative string, value []byte, expiresAt time.Time, fence uint64) error {
	var n int64
	err := b.doRetry(ctx, key, func(ctx context.Context) error {
		// Measured here, as late as possible, so queueing does not stretch
		// the TTL past the token's life.
		ttl := time.Until(expiresAt).Truncate(time.Millisecond)
		if ttl <= 0 {
			n = 1
			return nil
		}
		var err error
		n, err = saveFenced.Run(ctx, b.client, []string{key, store.FenceKey(key), negative, store.RevokedKey(key)},
			value, ttl.Milliseconds(), fence, fenceFloor.Milliseconds(), TagLen).Int64()
		return err
	})
	if err != nil {
		return fmt.Errorf("redisstore: SET: %w", err)
	}
	switch n {
	case 0:
		return store.ErrStale
	case -1:
		return store.ErrRevoked
	}
	return nil
}

// doRetry is do with one more attempt when the first timed out. It is for
// the fetch path's idempotent commands (store, delete, lease release), where a
// spurious failure costs a second upstream request: one stall of the
// process or the network should not. Redis down costs at most two
// timeouts until the breaker opens, then nothing.
func (b *Backend) doRetry(ctx context.Context, key string, op func(context.Context) error) error {
	return b.doRetryWithin(ctx, key, b.opts.OpTimeout, op)
}

// doRetryWithin is doRetry with another timeout per attempt.
func (b *Backend) doRetryWithin(ctx context.Context, key string, timeout time.Duration, op func(context.Context) error) error {
	err := b.doWithin(ctx, key, timeout, op)
	if err != nil && ctx.Err() == nil && isTimeout(err) && b.breakerFor(ctx, key).allow() {
		err = b.doWithin(ctx, key, timeout, op)
	}
	return err
}

// do runs one command on key ("" for none) under its node's breaker and
// the operation timeout.
func (b *Backend) do(ctx context.Context, key string, op func(context.Context) error) error {
	return b.doWithin(ctx, key, b.opts.OpTimeout, op)
}

// doWithin runs one command on key under its node's breaker and timeout.
func (b *Backend) doWithin(ctx context.Context, key string, timeout time.Duration, op func(context.Context) error) error {
	br := b.breakerFor(ctx, key)
	if !br.allow() {
		b.skipped.Add(1)
		return ErrUnavailable
	}
	select {
	case b.commands <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-b.commands }()
	octx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err := op(octx)
	if err != nil && !errors.Is(err, redis.Nil) {
		b.log.Debug("redis command failed", "err", err)
	}
	switch {
	case err == nil || errors.Is(err, redis.Nil):
		br.success()
	case ctx.Err() != nil:
		// The caller gave up; that says nothing about Redis.
	case answered(err):
		b.errors.Add(1)
		br.success()
	case errors.Is(err, redis.ErrPoolTimeout):
		// Every pooled connection was busy: this process is saturated,
		// which says nothing about Redis (a stalled Redis shows as the
		// busy connections' own timeouts).
		b.errors.Add(1)
	default:
		b.errors.Add(1)
		if b.cluster != nil {
			// A master that died never answers MOVED: ask the cluster
			// where the slots are now (coalesced, in the background).
			b.cluster.ReloadState(b.ctx)
		}
		if br.failure(refused(err)) {
			b.log.Warn("redis unreachable: circuit breaker open; serving from the in-process cache and the vendor", "err", err)
			b.startProbe(br, key)
		}
	}
	return err
}

// answered reports whether err is a reply from a working server (a script
// or type error), as opposed to one that cannot serve.
func answered(err error) bool {
	var rerr redis.Error
	if !errors.As(err, &rerr) {
		return false
	}
	for _, down := range []string{"LOADING", "CLUSTERDOWN", "MASTERDOWN", "TRYAGAIN", "READONLY", "BUSY"} {
		if strings.HasPrefix(rerr.Error(), down) {
			return false
		}
	}
	return true
}

// refused reports whether err says for certain that nothing serves Redis
// there: the connection was refused, reset or closed.
func refused(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// recovered tells the watcher that Redis answers again: what it holds may
// have changed meanwhile, and what it could not do there may be done now.
func (b *Backend) recovered() {
	b.mu.Lock()
	w := b.watcher
	b.mu.Unlock()
	if w != nil {
		w.Resync()
	}
}

// startProbe starts the goroutine that closes br once Redis answers PING
// again: the server, or in a Cluster the master that serves key now
// (after a failover, the promoted replica).
func (b *Backend) startProbe(br *breaker, key string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed || !br.probing.CompareAndSwap(false, true) {
		return
	}
	ping := func(ctx context.Context) error { return b.client.Ping(ctx).Err() }
	if b.cluster != nil && key != "" {
		ping = func(ctx context.Context) error {
			node, err := b.cluster.MasterForKey(ctx, key)
			if err != nil {
				return err
			}
			return node.Ping(ctx).Err()
		}
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		defer br.probing.Store(false)
		ticker := time.NewTicker(b.opts.ProbeInterval)
		defer ticker.Stop()
		for {
			select {
			case <-b.ctx.Done():
				return
			case <-ticker.C:
			}
			ctx, cancel := context.WithTimeout(b.ctx, b.opts.OpTimeout)
			err := ping(ctx)
			cancel()
			if err == nil {
				br.reset()
				b.recovered()
				b.log.Info("redis reachable again: circuit breaker closed")
				return
			}
			if b.cluster != nil {
				// The slot may have a new master by now (a promoted
				// replica): the next ping asks the map as reloaded, not
				// the dead node until go-redis's periodic reload.
				b.cluster.ReloadState(b.ctx)
			}
		}
	}()
}

func randomHex(n int) string {
	buf := make([]byte, n)
	_, _ = rand.Read(buf) // never fails (crypto/rand documents it)
	return hex.EncodeToString(buf)
}
