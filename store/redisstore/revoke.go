package redisstore

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokenbroker/tokenbroker/store"
)

// Revocation (docs/design.md, The lease and generation protocol: a rejected token stays
// rejected). A caller that reports a token rejected (InvalidateToken) names
// it; the replica it reaches may find nothing to delete in Redis, because
// the token lives only in another replica's in-process level, fetched while
// that replica could not reach Redis. Were the report forgotten, that
// replica would write the token back for the whole fleet once Redis
// answers it again. So every compare-and-delete also marks the token's tag
// in the key's :revoked sibling, deleted or not, and saveFenced refuses a
// token whose tag is marked.
//
// :revoked is a sorted set: the member is the tag (the SHA-256 of the
// access token), the score the time, in ms of the Redis server's clock,
// until which the token is refused: its remaining life when Redis held it,
// else RevokedFallback (a token already marked keeps its mark: the first
// report knew its life best). Expired marks are dropped at each mark, at most
// MaxRevoked are kept (the ones that expire last), and the set expires
// with its last mark.

// TagLen is the length of the tag every value stored through a Backend
// starts with, naming its token without opening the value (package sealed:
// the SHA-256 of the access token). Compare-and-delete and revocation work
// on it.
const TagLen = sha256.Size

// RevokedFallback is how long a token reported rejected is refused when
// Redis no longer held it, so its remaining life is unknown: longer than
// the tokens the vendors issue live (an hour, typically) and than an
// outage a replica's in-process copy could outlast.
const RevokedFallback = 24 * time.Hour

// MaxRevoked bounds the marks kept per token key: a caller allowed the key
// that reports random tokens (itself bounded by the per-client limit) can
// make the set no larger.
const MaxRevoked = 1024

// revokeToken deletes KEYS[1] if its value starts with the tag ARGV[1],
// and marks ARGV[1] in KEYS[2] either way, until the deleted value's
// expiry or, unless already marked, for ARGV[2] ms; it keeps at most
// ARGV[3] marks. It answers 1
// when it deleted, else 0, and remembers the answer under the operation
// key KEYS[3] for ARGV[4] ms (opid.go).
var revokeToken = redis.NewScript(`
local done = redis.call('GET', KEYS[3])
if done then
	return tonumber(done)
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local life = tonumber(ARGV[2])
local deleted = 0
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, string.len(ARGV[1])) == ARGV[1] then
	local left = redis.call('PTTL', KEYS[1])
	if left > 0 then
		life = left
	end
	redis.call('DEL', KEYS[1])
	deleted = 1
end
local mark = now + life
local prev = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not prev or (deleted == 1 and tonumber(prev) < mark) then
	redis.call('ZADD', KEYS[2], mark, ARGV[1])
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local extra = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[3])
if extra > 0 then
	redis.call('ZREMRANGEBYRANK', KEYS[2], 0, extra - 1)
end
local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
if last[2] then
	redis.call('PEXPIRE', KEYS[2], math.max(1, tonumber(last[2]) - now))
end
redis.call('SET', KEYS[3], deleted, 'PX', ARGV[4])
return deleted
`)

// DeleteIfPrefix implements sealed.Backend with a Lua script, atomic in
// Redis: it deletes key if its value starts with prefix (a TagLen-byte
// tag), and in any case marks the tag revoked (see above), so Save refuses
// the token from now on.
func (b *Backend) DeleteIfPrefix(ctx context.Context, key string, prefix []byte) (bool, error) {
	if len(prefix) != TagLen {
		return false, errors.New("redisstore: compare-and-delete: the prefix must be a token's tag")
	}
	op := newOpID()
	var n int64
	err := b.doRetry(ctx, key, func(ctx context.Context) error {
		var err error
		n, err = revokeToken.Run(ctx, b.client, []string{key, store.RevokedKey(key), store.OpKey(key, op)},
			prefix, RevokedFallback.Milliseconds(), MaxRevoked, opMemory.Milliseconds()).Int64()
		return err
	})
	if err != nil {
		return false, fmt.Errorf("redisstore: compare-and-delete: %w", err)
	}
	return n == 1, nil
}
