package redisstore

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// A refresh-token claim (docs/design.md, The lease and generation protocol) is a write to the
// master. Replication is asynchronous: a master that fails right after the
// claim may take it along, the promoted replica never saw it, and the
// next holder would present the same refresh token again, which servers
// with reuse detection punish by revoking the grant. So when the master
// has replicas, the claim is followed, on the same connection, by
// WAIT 1 ClaimWait: the claim counts only once a replica holds it too.
//
// A WAIT that reaches no replica in time leaves the claim in doubt, and
// the holder then uses the primary grant (ClaimRefreshToken answers
// false): presenting nothing cannot present anything twice, and the next
// fetch may use the refresh token the primary grant brings. Proceeding
// would bet the grant on the master not failing within the replication
// lag, which is exactly when the WAIT said the replica was behind. WAIT is
// no consensus (Kleppmann, "How to do distributed locking"): an
// acknowledged claim can still be lost if a replica that had not received
// it is promoted (with several replicas), and a lease granted twice across
// a failover is fenced only by generations that may be lost the same
// way; the WAIT closes the common window (one replica, a failover right
// after the claim), it does not make Redis a consensus store.

// DefaultClaimWait bounds the wait for a replica's acknowledgement of a
// claim: several replication round trips on a LAN, and small beside the
// vendor request the claim precedes.
const DefaultClaimWait = 100 * time.Millisecond

// replicaCountAge is how long a master's replica count is trusted: a
// replica attached or lost meanwhile costs at most this long of claims
// without WAIT, or WAITs that time out.
const replicaCountAge = 10 * time.Second

type replicaCount struct {
	n  int
	at time.Time
}

// masterFor returns the client of key's master (in a Cluster the node,
// else the one client) and the address its replica count is cached under.
func (b *Backend) masterFor(ctx context.Context, key string) (*redis.Client, string) {
	if b.cluster != nil {
		node, err := b.cluster.MasterForKey(ctx, key)
		if err != nil {
			return nil, ""
		}
		return node, node.Options().Addr
	}
	c, ok := b.client.(*redis.Client)
	if !ok {
		return nil, ""
	}
	return c, c.Options().Addr
}

// replicasOf returns how many replicas master addr has, from the cache or
// from INFO replication. A master that will not say counts as none (the
// claim is then trusted as before).
func (b *Backend) replicasOf(ctx context.Context, key string, node *redis.Client, addr string) int {
	if v, ok := b.replicas.Load(addr); ok {
		if rc := v.(replicaCount); time.Since(rc.at) < replicaCountAge {
			return rc.n
		}
	}
	n := 0
	err := b.do(ctx, key, func(ctx context.Context) error {
		info, err := node.Info(ctx, "replication").Result()
		if err != nil {
			return err
		}
		for line := range strings.SplitSeq(info, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "connected_slaves:"); ok {
				n, _ = strconv.Atoi(v)
			}
		}
		return nil
	})
	if err != nil && !answered(err) {
		return 0 // unknown now; asked again at the next claim
	}
	b.replicas.Store(addr, replicaCount{n: n, at: time.Now()})
	return n
}

// claimReplicated runs claimRefresh with keys and args on key's master
// and, when the claim succeeded (1) and the master has replicas, WAITs for
// one of them on the same connection. replicated is false only when that
// wait reached no replica.
func (b *Backend) claimReplicated(ctx context.Context, key string, keys []string, args []any) (n int64, replicated bool, err error) {
	node, addr := b.masterFor(ctx, key)
	if node == nil {
		return b.claimUnreplicated(ctx, key, keys, args)
	}
	if b.replicasOf(ctx, key, node, addr) == 0 && b.opts.ClaimAcks <= 0 {
		return b.claimUnreplicated(ctx, key, keys, args)
	}
	// WAIT counts the writes of its own connection: the claim and the
	// WAIT share one. The claim is idempotent by its operation id, so a
	// retry after a timeout answers as the first run did.
	err = b.doRetryWithin(ctx, key, b.opts.OpTimeout+b.opts.ClaimWait, func(ctx context.Context) error {
		conn := node.Conn()
		defer conn.Close()
		var err error
		n, err = claimRefresh.Run(ctx, conn, keys, args...).Int64()
		if err != nil || n != 1 {
			return err
		}
		acked, werr := conn.Wait(ctx, 1, b.opts.ClaimWait).Result()
		replicated = werr == nil && acked >= 1
		return nil
	})
	return n, replicated, err
}

// claimUnreplicated runs claimRefresh without waiting for a replica: the
// master has none (and no promotion can lose the claim).
func (b *Backend) claimUnreplicated(ctx context.Context, key string, keys []string, args []any) (n int64, replicated bool, err error) {
	err = b.doRetry(ctx, key, func(ctx context.Context) error {
		var err error
		n, err = claimRefresh.Run(ctx, b.client, keys, args...).Int64()
		return err
	})
	return n, true, err
}
