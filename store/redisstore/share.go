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

// store.WaitingKey is the sorted set of the clients with a reserved slot
// of vendor's budget still ahead, scored by when it is due (µs of Redis
// TIME).

// takeBudgetShare is takeBudget (the same GCRA on KEYS[1]) for a request
// of client ARGV[5], who may take at most the fraction ARGV[4] of the
// budget while other clients wait for it (docs/design.md, Security model:
// max_client_share). The budget is contended when the request would have
// to wait for its slot; other clients wait when KEYS[3] holds another
// client's slot still ahead. Then the client's own GCRA on KEYS[2], with
// the interval divided by the share and no burst, must have a slot no
// later than the budget's, or nothing is taken and the answer is
// {0, wait until the client's next share slot, 1}. The client's share is
// only charged under contention: alone, a client may use the whole
// budget. The answer is remembered under the operation key KEYS[4] for
// ARGV[6] ms (opid.go): a request sent again after its answer was lost
// is charged once.
var takeBudgetShare = redis.NewScript(`
local done = redis.call('GET', KEYS[4])
if done then
	local a, w, s = string.match(done, '^(%d+) (%d+) (%d+)$')
	return {tonumber(a), tonumber(w), tonumber(s)}
end
local function answer(a, w, s)
	redis.call('SET', KEYS[4], a .. ' ' .. string.format('%d', w) .. ' ' .. s, 'PX', ARGV[6])
	return {a, w, s}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3])
local share = tonumber(ARGV[4])
local client = ARGV[5]
local tat = tonumber(redis.call('GET', KEYS[1]) or 0) or 0
if tat < now then
	tat = now
end
local new_tat = tat + interval
local wait = new_tat - burst * interval - now
if wait < 0 then
	wait = 0
end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
if wait > 0 then
	-- This client waits (queued, or refused and about to retry) until
	-- its slot, and for at least a second when refused.
	local until_ = now + math.max(math.min(wait, 1000000), 1000)
	if wait > max_wait then
		until_ = now + 1000000
	end
	local prev = tonumber(redis.call('ZSCORE', KEYS[3], client) or 0) or 0
	if until_ > prev then
		redis.call('ZADD', KEYS[3], until_, client)
	end
	redis.call('PEXPIRE', KEYS[3], 2000)
end
if wait > max_wait then
	return answer(0, wait, 0)
end
local others = redis.call('ZCARD', KEYS[3])
if redis.call('ZSCORE', KEYS[3], client) then
	others = others - 1
end
if wait > 0 and others > 0 then
	local cinterval = math.ceil(interval / share)
	local ctat = tonumber(redis.call('GET', KEYS[2]) or 0) or 0
	if ctat < now then
		ctat = now
	end
	local cwait = ctat - now
	if cwait > wait then
		return answer(0, cwait, 1)
	end
	local cnew = ctat + cinterval
	redis.call('SET', KEYS[2], string.format('%d', cnew), 'PX', math.ceil((cnew - now) / 1000) + 1)
end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return answer(1, wait, 0)
`)

// ReserveBudgetShare is ReserveBudget for a request of client, who may
// take at most share (0 < share < 1) of the budget while other clients
// wait for it. byShare reports a refusal because of the client's share
// (wait is then when its next share slot comes), not the budget's.
func (b *Backend) ReserveBudgetShare(ctx context.Context, vendor, client string, ratePerSec float64, burst int, maxWait time.Duration, share float64) (wait time.Duration, reserved, byShare bool, err error) {
	if vendor == "" || client == "" {
		return 0, false, false, errors.New("redisstore: budget share: empty vendor or client")
	}
	if !(ratePerSec > 0) || math.IsInf(ratePerSec, 0) || !(share > 0 && share < 1) {
		return 0, false, false, fmt.Errorf("redisstore: budget share: rate %v or share %v out of range", ratePerSec, share)
	}
	interval := int64(math.Ceil(1e6 / ratePerSec))
	burst = max(burst, 1)
	maxWaitMicros := max(maxWait.Microseconds(), 0)
	var reply []int64
	// go-redis sends the script again when its answer is late; the
	// operation id makes that a question, not a second charge (opid.go).
	keys := []string{store.BudgetKey(vendor), store.ShareKey(vendor, client), store.WaitingKey(vendor), store.BudgetOpKey(vendor, newOpID())}
	err = b.doWithin(ctx, store.BudgetKey(vendor), b.opts.LeaseTimeout, func(ctx context.Context) error {
		var err error
		reply, err = takeBudgetShare.Run(ctx, b.client, keys,
			interval, burst, maxWaitMicros, share, client, opMemory.Milliseconds()).Int64Slice()
		return err
	})
	if err != nil {
		return 0, false, false, fmt.Errorf("redisstore: budget share: %w", err)
	}
	if len(reply) != 3 {
		return 0, false, false, fmt.Errorf("redisstore: budget share: unexpected reply %v", reply)
	}
	return time.Duration(reply[1]) * time.Microsecond, reply[0] == 1, reply[2] == 1, nil
}
