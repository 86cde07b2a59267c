package redisstore

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokenbroker/tokenbroker/store"
)

// takeBudget is the generic cell rate algorithm (GCRA) for one request:
// KEYS[1] holds the theoretical arrival time (TAT) in microseconds of the
// Redis server's clock (TIME), so replicas with skewed clocks agree.
// ARGV[1] is the emission interval (1/rate) and ARGV[3] the longest wait
// the caller accepts, both in microseconds; ARGV[2] is the burst. A request
// that may go at once or within the accepted wait advances the TAT (a
// reservation: the caller sleeps the answered wait, then sends) and answers
// {1, wait}; otherwise nothing changes and it answers {0, wait needed}.
// The key expires when the bucket is full again. Redis 5 and later
// replicate scripts by their effects, which allows TIME before a write.
// The answer is remembered under the operation key KEYS[2] for ARGV[4] ms
// (opid.go): a request sent again after its answer was lost is charged
// once, and answered as the first time.
var takeBudget = redis.NewScript(`
local done = redis.call('GET', KEYS[2])
if done then
	local allowed, w = string.match(done, '^(%d+) (%d+)$')
	return {tonumber(allowed), tonumber(w)}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or 0) or 0
if tat < now then
	tat = now
end
local new_tat = tat + interval
local wait = new_tat - burst * interval - now
if wait < 0 then
	wait = 0
end
if wait > max_wait then
	redis.call('SET', KEYS[2], '0 ' .. string.format('%d', wait), 'PX', ARGV[4])
	return {0, wait}
end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
redis.call('SET', KEYS[2], '1 ' .. string.format('%d', wait), 'PX', ARGV[4])
return {1, wait}
`)

// TakeBudget takes one request from vendor's fleet-wide budget of
// ratePerSec requests per second with bursts of burst (below 1: 1). When
// the budget is spent it takes nothing and answers how long until a
// request would be allowed.
func (b *Backend) TakeBudget(ctx context.Context, vendor string, ratePerSec float64, burst int) (allowed bool, retryAfter time.Duration, err error) {
	wait, reserved, err := b.ReserveBudget(ctx, vendor, ratePerSec, burst, 0)
	if err != nil || !reserved {
		return false, wait, err
	}
	return true, 0, nil
}

// ReserveBudget is TakeBudget for a caller that can wait up to maxWait: it
// reserves the next free slot of the budget if that is at most maxWait
// away and answers reserved with the wait before the request may be sent
// (0: at once). Otherwise it takes nothing and answers the wait that would
// have been needed. Waiters thus queue in Redis in arrival order, with one
// command each, instead of polling.
func (b *Backend) ReserveBudget(ctx context.Context, vendor string, ratePerSec float64, burst int, maxWait time.Duration) (wait time.Duration, reserved bool, err error) {
	if vendor == "" {
		return 0, false, errors.New("redisstore: budget: empty vendor id")
	}
	if !(ratePerSec > 0) || math.IsInf(ratePerSec, 0) {
		return 0, false, fmt.Errorf("redisstore: budget: rate %v is not a positive number", ratePerSec)
	}
	// Rounded up, so the fleet never goes faster than the rate.
	interval := int64(math.Ceil(1e6 / ratePerSec))
	burst = max(burst, 1)
	maxWaitMicros := max(maxWait.Microseconds(), 0)
	var reply []int64
	// go-redis sends the script again when its answer is late (a read
	// timeout); the operation id makes that a question, not a second
	// charge.
	key := store.BudgetKey(vendor)
	keys := []string{key, store.BudgetOpKey(vendor, newOpID())}
	err = b.doWithin(ctx, key, b.opts.LeaseTimeout, func(ctx context.Context) error {
		var err error
		reply, err = takeBudget.Run(ctx, b.client, keys, interval, burst, maxWaitMicros, opMemory.Milliseconds()).Int64Slice()
		return err
	})
	if err != nil {
		return 0, false, fmt.Errorf("redisstore: budget: %w", err)
	}
	if len(reply) != 2 {
		return 0, false, fmt.Errorf("redisstore: budget: unexpected reply %v", reply)
	}
	return time.Duration(reply[1]) * time.Microsecond, reply[0] == 1, nil
}

// BudgetReachable implements budget.Reachability: false while the breaker
// of the budget's node is open (Redis is down, each process keeps its own
// budget), true when a failed command was this process's saturation or a
// passing stall.
func (b *Backend) BudgetReachable(vendor string) bool {
	return b.breakerFor(b.ctx, store.BudgetKey(vendor)).allow()
}
