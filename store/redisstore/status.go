package redisstore

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokenbroker/tokenbroker/store"
)

// A credential status record is a hash under store.StatusKey
// (docs/design.md, Storage), in clear: profile names are configured, not
// secret.

// StatusTTL is how long a record outlives its last update: a profile
// removed from the configuration leaves no record for long.
const StatusTTL = 31 * 24 * time.Hour

// statusTimeout bounds a status command. Neither is on a caller's path
// (the service records off it; the status RPC is for operators), so it is
// longer than DefaultOpTimeout: a loaded machine must not turn a record
// into a per-replica one (and a duplicate event), nor trip the breaker.
const statusTimeout = time.Second

var _ store.StatusBook = (*Backend)(nil)

// recordStatus is store.ApplyStatus in one script, so that replicas
// recording outcomes of one profile at once agree on the one that changed
// its state: only that one answers the event. Times are Unix
// milliseconds. ARGV: 1 outcome, 2 at, 3 vendor, 4 replica, 5 expires_at,
// 6 oauth_error, 7 http status, 8 remembered until, 9 failure kind,
// 10 failing after, 11 record TTL (ms). Answers {event, seq, from, to}.
var recordStatus = redis.NewScript(`
local k = KEYS[1]
local outcome, at = ARGV[1], ARGV[2]
local from = redis.call('HGET', k, 'state') or ''
local to, event = from, ''
redis.call('HSET', k, 'vendor', ARGV[3])
if outcome == 'fetched' then
	redis.call('HSET', k, 'expires_at', ARGV[5], 'fetched_at', at, 'fetched_by', ARGV[4], 'failures', 0, 'budget_exhausted', 0)
	to = 'working'
	if from == 'rejected' or from == 'failing' then event = 'recovered' end
elseif outcome == 'rejected' then
	redis.call('HINCRBY', k, 'failures', 1)
	redis.call('HSET', k, 'rej_oauth', ARGV[6], 'rej_status', ARGV[7], 'rej_at', at, 'rej_until', ARGV[8], 'fail_at', at, 'fail_kind', 'rejected')
	to = 'rejected'
	if from ~= 'rejected' then event = 'rejected' end
elseif outcome == 'failed' then
	local n = redis.call('HINCRBY', k, 'failures', 1)
	redis.call('HSET', k, 'fail_at', at, 'fail_kind', ARGV[9])
	if from ~= 'rejected' and from ~= 'failing' and n >= tonumber(ARGV[10]) then
		to, event = 'failing', 'failing'
	end
elseif outcome == 'budget_exhausted' then
	redis.call('HSET', k, 'budget_at', at, 'fail_at', at, 'fail_kind', 'budget_exhausted')
	if redis.call('HGET', k, 'budget_exhausted') ~= '1' then
		redis.call('HSET', k, 'budget_exhausted', 1)
		event = 'budget_exhausted'
	end
end
if to ~= from then redis.call('HSET', k, 'state', to, 'since', at) end
local seq = 0
if event ~= '' then seq = redis.call('HINCRBY', k, 'events', 1) end
redis.call('PEXPIRE', k, ARGV[11])
return {event, seq, from, to}
`)

// RecordStatus implements store.StatusBook: one script run, not retried
// (a retry after a timeout could count a failure twice).
func (b *Backend) RecordStatus(ctx context.Context, u store.StatusUpdate) (store.StatusChange, error) {
	if u.Profile == "" {
		return store.StatusChange{}, errors.New("redisstore: status: empty profile")
	}
	after := u.FailingAfter
	if after <= 0 {
		after = store.DefaultFailingAfter
	}
	key := store.StatusKey(u.Profile)
	var reply []any
	err := b.doWithin(ctx, key, statusTimeout, func(ctx context.Context) error {
		var err error
		reply, err = recordStatus.Run(ctx, b.client, []string{key},
			u.Outcome, millis(u.At), u.Vendor, u.Replica, millis(u.ExpiresAt),
			u.OAuthError, u.HTTPStatus, millis(u.RememberedUntil), u.Failure,
			after, StatusTTL.Milliseconds()).Slice()
		return err
	})
	if err != nil {
		return store.StatusChange{}, fmt.Errorf("redisstore: status: %w", err)
	}
	if len(reply) != 4 {
		return store.StatusChange{}, fmt.Errorf("redisstore: status: unexpected reply %v", reply)
	}
	event, _ := reply[0].(string)
	seq, _ := reply[1].(int64)
	from, _ := reply[2].(string)
	to, _ := reply[3].(string)
	return store.StatusChange{From: from, To: to, Event: event, Seq: uint64(seq)}, nil
}

// ListStatus implements store.StatusBook with one pipeline of HGETALLs.
func (b *Backend) ListStatus(ctx context.Context, profiles []string) ([]store.CredentialStatus, error) {
	if len(profiles) == 0 {
		return nil, nil
	}
	cmds := make([]*redis.MapStringStringCmd, len(profiles))
	err := b.doWithin(ctx, store.StatusKey(profiles[0]), statusTimeout, func(ctx context.Context) error {
		_, err := b.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, name := range profiles {
				cmds[i] = p.HGetAll(ctx, store.StatusKey(name))
			}
			return nil
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("redisstore: status: %w", err)
	}
	out := make([]store.CredentialStatus, 0, len(profiles))
	for i, cmd := range cmds {
		h := cmd.Val()
		if len(h) == 0 {
			continue
		}
		out = append(out, store.CredentialStatus{
			Profile:             profiles[i],
			Vendor:              h["vendor"],
			State:               h["state"],
			StateSince:          fromMillis(h["since"]),
			ExpiresAt:           fromMillis(h["expires_at"]),
			FetchedAt:           fromMillis(h["fetched_at"]),
			FetchedBy:           h["fetched_by"],
			RejectedOAuthError:  h["rej_oauth"],
			RejectedStatus:      atoi(h["rej_status"]),
			RejectedAt:          fromMillis(h["rej_at"]),
			RejectedUntil:       fromMillis(h["rej_until"]),
			ConsecutiveFailures: atoi(h["failures"]),
			LastFailureAt:       fromMillis(h["fail_at"]),
			LastFailure:         h["fail_kind"],
			BudgetExhausted:     h["budget_exhausted"] == "1",
			BudgetExhaustedAt:   fromMillis(h["budget_at"]),
			Events:              uint64(atoi(h["events"])),
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Profile < out[j].Profile })
	return out, nil
}

// millis is t in Unix milliseconds, 0 for the zero time.
func millis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMillis(s string) time.Time {
	ms, err := strconv.ParseInt(s, 10, 64)
	if err != nil || ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}
