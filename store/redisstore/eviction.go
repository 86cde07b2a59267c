package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Redis must keep what it is given (docs/operations.md, Redis
// requirements). Every key of the broker has a TTL, so a maxmemory-policy
// that evicts keys with one (volatile-*) evicts them as surely as one that
// evicts any key (allkeys-*): under memory pressure the fetch lease
// (:lock), the fence generation (:gen) and the refresh-token
// claim (:rt) would vanish silently, and two replicas could fetch at once,
// a stalled holder's late write be accepted, or one refresh token be
// presented twice. Only noeviction keeps them: a full Redis then refuses
// writes, which the broker survives as it survives an outage.

// EvictionError says that a Redis server's maxmemory-policy may evict the
// broker's keys.
type EvictionError struct {
	Addr   string
	Policy string
}

func (e *EvictionError) Error() string {
	return fmt.Sprintf("redis %s has maxmemory-policy %s, which evicts keys with a TTL under memory pressure; "+
		"every key of the broker has one, so the fetch lease, the write generations and the refresh-token claims "+
		"could vanish (two replicas fetching at once, a refresh token presented twice)", e.Addr, e.Policy)
}

// ErrPolicyUnknown is returned by CheckEviction when a server refused
// both CONFIG GET and INFO (a managed service that renames or forbids
// them): the policy could not be checked.
var ErrPolicyUnknown = errors.New("redisstore: maxmemory-policy could not be read (CONFIG GET and INFO refused)")

// CheckEviction reads maxmemory-policy on the server, the Sentinels'
// master or every Cluster master, and returns an *EvictionError for the
// first whose policy is anything but noeviction, an error wrapping
// ErrPolicyUnknown when one refused to tell, or another error when one
// could not be reached. It runs outside the breaker, once, at startup.
func (b *Backend) CheckEviction(ctx context.Context) error {
	if b.cluster != nil {
		return b.cluster.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
			return checkNode(ctx, node, node.Options().Addr)
		})
	}
	addr := "server"
	if c, ok := b.client.(*redis.Client); ok {
		addr = c.Options().Addr
	}
	return checkNode(ctx, b.client, addr)
}

func checkNode(ctx context.Context, c redis.Cmdable, addr string) error {
	policy, err := maxmemoryPolicy(ctx, c)
	if err != nil {
		return fmt.Errorf("redisstore: redis %s: %w", addr, err)
	}
	if policy != "noeviction" {
		return &EvictionError{Addr: addr, Policy: policy}
	}
	return nil
}

// maxmemoryPolicy asks CONFIG GET, and INFO memory when CONFIG is refused
// (renamed, or not allowed to the broker's ACL user).
func maxmemoryPolicy(ctx context.Context, c redis.Cmdable) (string, error) {
	cfg, err := c.ConfigGet(ctx, "maxmemory-policy").Result()
	if err == nil {
		if p, ok := cfg["maxmemory-policy"]; ok && p != "" {
			return p, nil
		}
	} else if !answered(err) {
		return "", err
	}
	info, err := c.Info(ctx, "memory").Result()
	if err != nil {
		if answered(err) {
			return "", ErrPolicyUnknown
		}
		return "", err
	}
	for line := range strings.SplitSeq(info, "\n") {
		if p, ok := strings.CutPrefix(strings.TrimSpace(line), "maxmemory_policy:"); ok && p != "" {
			return p, nil
		}
	}
	return "", ErrPolicyUnknown
}
