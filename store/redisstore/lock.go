package redisstore

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// LockKey is the fetch lock's key for a token key: the ":token" suffix
// becomes ":lock", so both share the hash tag and the Cluster slot.
func LockKey(key string) string {
	if base, ok := strings.CutSuffix(key, ":token"); ok {
		return base + ":lock"
	}
	return key + ":lock"
}

// acquireLock is SET NX PX that also answers 1 when the lock already holds
// this owner, so that acquiring is idempotent (safe to retry after a
// timed-out attempt whose SET may have landed).
var acquireLock = redis.NewScript(`
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
	return 1
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
	return 1
end
return 0
`)

// releaseLock deletes KEYS[1] only if it still holds this holder's random
// owner value, so a holder whose lock expired cannot free the next one's.
var releaseLock = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
	return redis.call('DEL', KEYS[1])
end
return 0
`)

// TryLock implements store.Locker: SET NX PX with a random owner value,
// released by compare-and-delete. With the breaker open it fails at once;
// the service then fetches without the lock.
func (b *Backend) TryLock(ctx context.Context, key string, ttl time.Duration) (func(), bool, error) {
	lockKey := LockKey(key)
	owner := randomHex(16)
	ttlMillis := max(ttl.Milliseconds(), 1)
	// The longer lock timeout rides out a stall of this process; once a
	// command has just failed, Redis may be going down and the ordinary
	// timeout applies.
	timeout := b.opts.LockTimeout
	if b.breaker.suspect() {
		timeout = b.opts.OpTimeout
	}
	var acquired bool
	err := b.doWithin(ctx, timeout, func(ctx context.Context) error {
		n, err := acquireLock.Run(ctx, b.client, []string{lockKey}, owner, ttlMillis).Int64()
		acquired = n == 1
		return err
	})
	if err != nil {
		return nil, false, fmt.Errorf("redisstore: lock: %w", err)
	}
	if !acquired {
		return nil, false, nil
	}
	release := func() {
		// Best effort: a lock that is not released expires after ttl.
		_ = b.doRetry(context.Background(), func(ctx context.Context) error {
			return releaseLock.Run(ctx, b.client, []string{lockKey}, owner).Err()
		})
	}
	return release, true, nil
}
