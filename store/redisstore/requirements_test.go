package redisstore_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokenbroker/tokenbroker/store"
	"github.com/tokenbroker/tokenbroker/store/redisstore"
	"github.com/tokenbroker/tokenbroker/testkit/redistest"
)

func TestCheckEviction(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		args    []string
		evicts  string // the policy reported as evicting ("": none)
		unknown bool
	}{
		{"noeviction", []string{"--maxmemory-policy", "noeviction"}, "", false},
		{"volatile-lru evicts keys with a TTL: all of ours", []string{"--maxmemory-policy", "volatile-lru"}, "volatile-lru", false},
		{"volatile-ttl", []string{"--maxmemory-policy", "volatile-ttl"}, "volatile-ttl", false},
		{"allkeys-lfu", []string{"--maxmemory-policy", "allkeys-lfu"}, "allkeys-lfu", false},
		{"CONFIG renamed away: INFO tells", []string{"--maxmemory-policy", "allkeys-random", "--rename-command", "CONFIG", ""}, "allkeys-random", false},
		{"CONFIG and INFO renamed away", []string{"--maxmemory-policy", "allkeys-lru", "--rename-command", "CONFIG", "", "--rename-command", "INFO", ""}, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := redistest.Start(t, tc.args...)
			b := newBackendFrom(t, redisstore.ClientConfig{Addrs: []string{srv.Addr}, OpTimeout: patient})
			err := b.CheckEviction(context.Background())
			var evicting *redisstore.EvictionError
			switch {
			case tc.evicts != "":
				if !errors.As(err, &evicting) || evicting.Policy != tc.evicts || evicting.Addr != srv.Addr {
					t.Fatalf("CheckEviction = %v, want an EvictionError for %s at %s", err, tc.evicts, srv.Addr)
				}
			case tc.unknown:
				if !errors.Is(err, redisstore.ErrPolicyUnknown) {
					t.Fatalf("CheckEviction = %v, want ErrPolicyUnknown", err)
				}
			case err != nil:
				t.Fatalf("CheckEviction = %v, want nil", err)
			}
		})
	}
}

func TestCheckEvictionAsksEveryClusterMaster(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t)
	ctx := context.Background()
	b := newBackendFrom(t, redisstore.ClientConfig{Addrs: c.Addrs, OpTimeout: patient})
	if err := b.CheckEviction(ctx); err != nil {
		t.Fatalf("every master noeviction: %v", err)
	}
	// One master of three evicts: that is enough to lose a shard's leases.
	last := c.Nodes[len(c.Nodes)-1]
	if _, err := redistest.Do(last.Addr, "CONFIG", "SET", "maxmemory-policy", "volatile-lfu"); err != nil {
		t.Fatal(err)
	}
	var evicting *redisstore.EvictionError
	if err := b.CheckEviction(ctx); !errors.As(err, &evicting) || evicting.Addr != last.Addr || evicting.Policy != "volatile-lfu" {
		t.Fatalf("CheckEviction = %v, want the master at %s with volatile-lfu", err, last.Addr)
	}
}

// TestBudgetChargedOnceWhenTheReplyIsLost: a budget script runs, its
// reply never arrives, go-redis sends it again after the read timeout; the
// operation id makes the second run answer the first one's charge instead
// of charging again. Both budget scripts: the vendor's, and the one that
// bounds a client's share of it.
func TestBudgetChargedOnceWhenTheReplyIsLost(t *testing.T) {
	t.Parallel()
	const rate = 0.001 // one request per 1000 s: a second charge would show as 2000 s
	const interval = 1000 * time.Second
	for _, tc := range []struct {
		name string
		take func(ctx context.Context, b *redisstore.Backend, vendor string) (bool, error)
	}{
		{"budget", func(ctx context.Context, b *redisstore.Backend, vendor string) (bool, error) {
			allowed, _, err := b.TakeBudget(ctx, vendor, rate, 1)
			return allowed, err
		}},
		{"budget share", func(ctx context.Context, b *redisstore.Backend, vendor string) (bool, error) {
			_, reserved, _, err := b.ReserveBudgetShare(ctx, vendor, "client-a", rate, 1, 0, 0.5)
			return reserved, err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := redistest.Start(t)
			proxy := redistest.StartProxy(t, srv.Addr)
			ctx := context.Background()
			// A read times out after 1 s (the product's is 50 ms), and the
			// call may take 10 s: long enough that only the staged loss
			// times out.
			client, err := redisstore.NewClient(redisstore.ClientConfig{Addrs: []string{proxy.Addr}, OpTimeout: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			b := redisstore.New(client, redisstore.Options{Logger: quiet, OpTimeout: patient, LeaseTimeout: 10 * time.Second})
			t.Cleanup(func() { _ = b.Close() })
			raw := rawClient(t, srv.Addr)
			// Load the script first, so the lost reply is the one of the
			// run, not of a NOSCRIPT answer.
			if _, err := tc.take(ctx, b, "warmup"); err != nil {
				t.Fatal(err)
			}
			proxy.SwallowReplyAfter("EVALSHA")
			allowed, err := tc.take(ctx, b, "lost-reply")
			if proxy.Swallowed() != 1 {
				t.Fatal("the proxy lost no reply: the fault was not staged")
			}
			if err != nil || !allowed {
				t.Fatalf("= %v, %v; want allowed (the first run's answer)", allowed, err)
			}
			tat, err := raw.Get(ctx, store.BudgetKey("lost-reply")).Int64()
			if err != nil {
				t.Fatal(err)
			}
			now, err := raw.Time(ctx).Result()
			if err != nil {
				t.Fatal(err)
			}
			ahead := time.Duration(tat-now.UnixMicro()) * time.Microsecond
			if charges := (ahead + interval/2) / interval; charges != 1 {
				t.Fatalf("the budget is %v ahead: %d charges, want 1", ahead, charges)
			}
		})
	}
}

// TestClaimWaitsForAReplica: with a replica attached, a claim counts only
// once the replica holds it; when the replica does not acknowledge in
// time, the claim is in doubt and the holder uses the primary grant.
func TestClaimWaitsForAReplica(t *testing.T) {
	t.Parallel()
	master := redistest.Start(t)
	replica := redistest.StartReplica(t, master)
	ctx := context.Background()
	// The replica has 2 s to acknowledge (the product waits 100 ms), so
	// only the frozen replica misses it.
	client, err := redisstore.NewClient(redisstore.ClientConfig{Addrs: []string{master.Addr}, OpTimeout: patient})
	if err != nil {
		t.Fatal(err)
	}
	b := redisstore.New(client, redisstore.Options{Logger: quiet, LeaseTTL: 10 * time.Second, ClaimWait: 2 * time.Second})
	t.Cleanup(func() { _ = b.Close() })
	onReplica := redis.NewClient(&redis.Options{Addr: replica.Addr})
	t.Cleanup(func() { _ = onReplica.Close() })

	claim := func(k, refreshToken string) bool {
		t.Helper()
		l, err := b.TryLease(ctx, k)
		if err != nil || l == nil {
			t.Fatalf("TryLease(%s): %v, %v", k, l, err)
		}
		defer l.Release()
		ok, err := l.ClaimRefreshToken(ctx, refreshToken)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}

	// Acknowledged: the replica holds the claim when ClaimRefreshToken
	// returns (WAIT said so), read at once without polling.
	k1 := store.TokenKey("claim-1")
	if !claim(k1, "rt-1") {
		t.Fatal("a claim a replica acknowledged was refused")
	}
	digest := sha256.Sum256([]byte("rt-1"))
	if got, err := onReplica.Get(ctx, store.SpentKey(k1)).Result(); err != nil || got != string(digest[:]) {
		t.Fatalf("the replica's %s = %q, %v; want the claimed digest", store.SpentKey(k1), got, err)
	}
	if n := b.Stats().ClaimsInDoubt; n != 0 {
		t.Fatalf("ClaimsInDoubt = %d, want 0", n)
	}

	// The replica stalls: WAIT reaches nobody within ClaimWait.
	replica.Freeze()
	t.Cleanup(replica.Thaw)
	if claim(store.TokenKey("claim-2"), "rt-2") {
		t.Fatal("a claim no replica acknowledged was trusted; want the primary grant")
	}
	if n := b.Stats().ClaimsInDoubt; n != 1 {
		t.Fatalf("ClaimsInDoubt = %d, want 1", n)
	}
	replica.Thaw()

	// Without replicas there is nothing to wait for.
	alone := redistest.Start(t)
	bAlone := newLeaseBackend(t, 5*time.Second, alone.Addr)
	for i := range 3 {
		l, err := bAlone.TryLease(ctx, key)
		if err != nil || l == nil {
			t.Fatal(l, err)
		}
		ok, err := l.ClaimRefreshToken(ctx, "rt-alone-"+strconv.Itoa(i))
		l.Release()
		if err != nil || !ok {
			t.Fatalf("claim on a master without replicas: %v, %v", ok, err)
		}
	}
	if n := bAlone.Stats().ClaimsInDoubt; n != 0 {
		t.Fatalf("ClaimsInDoubt without replicas = %d, want 0", n)
	}
}
