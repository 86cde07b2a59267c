package redisstore

import (
	"context"
	"crypto/sha256"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokenbroker/tokenbroker/store"
)

// The fetch lease (docs/design.md, The lease and generation protocol): SET NX PX on
// the key's ":lock" sibling with a random owner value, renewed by its
// holder while the vendor call runs and released by compare-and-delete,
// so a dead holder delays the others by at most one lease TTL. Taking it
// increments the key's ":gen" counter; every token written under the lease
// carries that generation, and Save refuses a write older than the
// generation Redis holds (a fencing token), so a holder that stalled past
// its lease never overwrites what a later holder stored.

// fenceFloor is the least time a fence generation counter is kept after it last
// changed: longer than any fetch, so a stalled holder's generation cannot
// outlive the counter that makes it stale.
const fenceFloor = 24 * time.Hour

// acquireLease takes KEYS[1] (the lease) for ARGV[1] (the owner) for
// ARGV[2] ms and returns the new generation from KEYS[2], or 0 when
// another owner holds it. It answers the current generation when the lease
// already holds this owner, so a retry after a timed-out attempt whose SET
// landed still succeeds.
var acquireLease = redis.NewScript(`
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
	local g = redis.call('INCR', KEYS[2])
	if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[3]) then
		redis.call('PEXPIRE', KEYS[2], ARGV[3])
	end
	return g
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
	return tonumber(redis.call('GET', KEYS[2]) or '0')
end
return 0
`)

// renewLease extends KEYS[1] by ARGV[2] ms if it still holds ARGV[1].
var renewLease = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
	return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
`)

// releaseLease deletes KEYS[1] if it still holds ARGV[1], and then
// publishes ARGV[3] on channel ARGV[2] to wake the waiters.
var releaseLease = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
	redis.call('DEL', KEYS[1])
	redis.call('PUBLISH', ARGV[2], ARGV[3])
	return 1
end
return 0
`)

// claimRefresh marks the refresh token whose digest is ARGV[3] as spent in
// KEYS[2] (for ARGV[4] ms) if KEYS[1] still holds ARGV[1], extending the
// lease by ARGV[2] ms: 1. It answers 0 when the token was already marked
// (an earlier holder presented it and never stored its successor), -1
// when the lease is not ours. It remembers its answer under the operation
// key KEYS[3] for ARGV[5] ms (opid.go): a retry of a claim that landed
// answers 1, not 0.
var claimRefresh = redis.NewScript(`
local done = redis.call('GET', KEYS[3])
if done then
	return tonumber(done)
end
local r = 1
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
	r = -1
elseif redis.call('GET', KEYS[2]) == ARGV[3] then
	r = 0
else
	redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4])
	redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
redis.call('SET', KEYS[3], r, 'PX', ARGV[5])
return r
`)

// spentFloor is how long the mark of a presented refresh token is kept:
// longer than any token lives with it.
const spentFloor = 31 * 24 * time.Hour

// saveFenced stores ARGV[1] under KEYS[1] for ARGV[2] ms unless the
// generation in KEYS[2] is newer than ARGV[3] (then it answers 0). The
// counter keeps the newest generation written and lives at least as long
// as the value (and ARGV[4] ms). A token write (KEYS[3] differs from
// KEYS[1]) is refused, answering -1, when the value's tag (its first
// ARGV[5] bytes) is marked in KEYS[4] until a time still to come (the token
// was reported rejected, revoke.go); otherwise it also deletes the
// negative cache entry KEYS[3]: the credentials work again.
var saveFenced = redis.NewScript(`
local cur = tonumber(redis.call('GET', KEYS[2]) or '0')
local gen = tonumber(ARGV[3])
if gen < cur then
	return 0
end
if KEYS[3] ~= KEYS[1] then
	local mark = redis.call('ZSCORE', KEYS[4], string.sub(ARGV[1], 1, tonumber(ARGV[5])))
	if mark then
		local t = redis.call('TIME')
		if tonumber(mark) > tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) then
			return -1
		end
	end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if gen > 0 then
	local keep = math.max(tonumber(ARGV[2]), tonumber(ARGV[4]))
	if gen > cur then
		redis.call('SET', KEYS[2], ARGV[3], 'PX', keep)
	elseif redis.call('PTTL', KEYS[2]) < keep then
		redis.call('PEXPIRE', KEYS[2], keep)
	end
end
if KEYS[3] ~= KEYS[1] then
	redis.call('DEL', KEYS[3])
end
return 1
`)

// TryLease implements store.Leaser. With the breaker open it fails at
// once; the service then fetches without the lease (availability over
// economy).
func (b *Backend) TryLease(ctx context.Context, key string) (store.Lease, error) {
	l := &lease{b: b, key: key, leaseKey: store.LeaseKey(key), owner: randomHex(16), stop: make(chan struct{})}
	// The longer lease timeout rides out a stall of this process; once a
	// command has just failed, Redis may be going down and the ordinary
	// timeout applies.
	timeout := b.opts.LeaseTimeout
	if b.breakerFor(ctx, key).suspect() {
		timeout = b.opts.OpTimeout
	}
	acquire := func(ctx context.Context) error {
		g, err := acquireLease.Run(ctx, b.client, []string{l.leaseKey, store.FenceKey(key)},
			l.owner, b.opts.LeaseTTL.Milliseconds(), fenceFloor.Milliseconds()).Int64()
		l.fence = uint64(g)
		return err
	}
	err := b.doWithin(ctx, key, timeout, acquire)
	if err != nil && ctx.Err() == nil && isTimeout(err) && b.breakerFor(ctx, key).allow() {
		// The script may have run and its answer come late (a stalled
		// process): asking again with the same owner is safe, and
		// better than fetching without the lease beside its holder.
		err = b.doWithin(ctx, key, timeout, acquire)
	}
	if err != nil {
		// Should an attempt have landed, free it rather than make the
		// others wait a lease TTL for nobody.
		b.background(func() { l.release(b.ctx) })
		return nil, fmt.Errorf("redisstore: lease: %w", err)
	}
	if l.fence == 0 {
		return nil, nil
	}
	if !b.background(l.renew) {
		l.release(context.Background())
		return nil, fmt.Errorf("redisstore: lease: %w", ErrClosed)
	}
	return l, nil
}

// PollInterval implements store.Leaser: an eighth of the lease TTL, so a
// lost wake-up or a dead holder costs at most that much past the lease.
func (b *Backend) PollInterval() time.Duration { return b.opts.LeaseTTL / 8 }

// lease is a held fetch lease, renewed by its own goroutine until
// released.
type lease struct {
	b        *Backend
	key      string
	leaseKey string
	owner    string
	fence    uint64

	once sync.Once
	stop chan struct{}
	lost atomic.Bool
}

func (l *lease) Fence() uint64 { return l.fence }

// Release implements store.Lease: it stops the renewals and deletes the
// lease if this holder still owns it.
func (l *lease) Release() {
	l.once.Do(func() {
		close(l.stop)
		l.release(context.Background())
	})
}

func (l *lease) release(ctx context.Context) {
	// Best effort: a lease that is not released expires after its TTL.
	_ = l.b.doRetry(ctx, l.key, func(ctx context.Context) error {
		return releaseLease.Run(ctx, l.b.client, []string{l.leaseKey},
			l.owner, l.b.opts.LeaseChannel, l.key).Err()
	})
}

// renew extends the lease every third of its TTL until Release or Close.
// A renewal that finds another owner stops: the lease was lost (this
// process stalled past it), and the generation fences the late write.
func (l *lease) renew() {
	tick := time.NewTicker(l.b.opts.LeaseTTL / 3)
	defer tick.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-l.b.ctx.Done():
			return
		case <-tick.C:
		}
		if held, err := l.Extend(l.b.ctx); err == nil && !held {
			return
		}
	}
}

// Extend implements store.Lease.
func (l *lease) Extend(ctx context.Context) (bool, error) {
	var n int64
	err := l.b.do(ctx, l.key, func(ctx context.Context) error {
		var err error
		n, err = renewLease.Run(ctx, l.b.client, []string{l.leaseKey}, l.owner, l.b.opts.LeaseTTL.Milliseconds()).Int64()
		return err
	})
	if err != nil {
		return false, fmt.Errorf("redisstore: renew lease: %w", err)
	}
	if n == 0 && l.lost.CompareAndSwap(false, true) {
		l.b.leasesLost.Add(1)
		l.b.log.Warn("fetch lease lost before the fetch ended; its write is refused if another replica has leased the key since")
	}
	return n == 1, nil
}

// ClaimRefreshToken implements store.Lease. When the key's master has
// replicas, the claim is not trusted until one of them has it (claim.go).
func (l *lease) ClaimRefreshToken(ctx context.Context, refreshToken string) (bool, error) {
	digest := sha256.Sum256([]byte(refreshToken))
	keys := []string{l.leaseKey, store.SpentKey(l.key), store.OpKey(l.key, newOpID())}
	args := []any{l.owner, l.b.opts.LeaseTTL.Milliseconds(), digest[:], spentFloor.Milliseconds(), opMemory.Milliseconds()}
	n, replicated, err := l.b.claimReplicated(ctx, l.key, keys, args)
	if err != nil {
		return false, fmt.Errorf("redisstore: claim refresh token: %w", err)
	}
	if n == 1 && !replicated {
		// In doubt: the claim may die with the master (claim.go). The
		// primary grant presents no refresh token, so nothing can be
		// presented twice.
		l.b.claimsInDoubt.Add(1)
		l.b.log.Warn("refresh-token claim not acknowledged by a Redis replica in time; using the primary grant", "wait", l.b.opts.ClaimWait.String())
		return false, nil
	}
	return n == 1, nil
}

// Notify implements store.Leaser: the channel closes when a message about
// key arrives on either channel (a token stored, a lease released), from
// any replica this one included.
func (b *Backend) Notify(key string) (<-chan struct{}, func()) {
	ch := make(chan struct{})
	b.waitMu.Lock()
	set := b.waiters[key]
	if set == nil {
		set = make(map[chan struct{}]struct{})
		b.waiters[key] = set
	}
	set[ch] = struct{}{}
	b.waitMu.Unlock()
	return ch, func() {
		b.waitMu.Lock()
		if set, ok := b.waiters[key]; ok {
			if _, mine := set[ch]; mine {
				delete(set, ch)
				if len(set) == 0 {
					delete(b.waiters, key)
				}
			}
		}
		b.waitMu.Unlock()
	}
}

// wake closes the channels of key's waiters.
func (b *Backend) wake(key string) {
	b.waitMu.Lock()
	set := b.waiters[key]
	delete(b.waiters, key)
	b.waitMu.Unlock()
	for ch := range set {
		close(ch)
	}
}

// background runs f in a goroutine that Close waits for, unless the
// Backend is closed (then it reports false).
func (b *Backend) background(f func()) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		f()
	}()
	return true
}
