package tiered_test

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokenbroker/tokenbroker/store"
	"github.com/tokenbroker/tokenbroker/store/redisstore"
	"github.com/tokenbroker/tokenbroker/store/sealed"
	"github.com/tokenbroker/tokenbroker/store/tiered"
	"github.com/tokenbroker/tokenbroker/testkit/brokertest"
	"github.com/tokenbroker/tokenbroker/testkit/redistest"
)

// redisReplica is one replica's cache stack (L1, sealing, Redis at addr),
// as app builds it, but with 5 s commands: these tests are about
// what Redis holds, and a cut connection fails at once anyway.
func redisReplica(t *testing.T, addr string, ring *sealed.Keyring) (*tiered.Store, *redisstore.Backend) {
	t.Helper()
	client, err := redisstore.NewClient(redisstore.ClientConfig{Addrs: []string{addr}, OpTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	b := redisstore.New(client, redisstore.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), OpTimeout: 5 * time.Second})
	wctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.Warm(wctx); err != nil {
		t.Fatal(err)
	}
	l1 := tiered.New(sealed.New(b, ring), tiered.Options{MaxStale: time.Hour, Publish: b.Publish})
	b.Watch(l1)
	t.Cleanup(func() { l1.Close(); _ = b.Close() })
	return l1, b
}

func testRing(t *testing.T) *sealed.Keyring {
	t.Helper()
	k := make([]byte, sealed.KeySize)
	_, _ = rand.Read(k)
	ring, err := sealed.NewKeyring(k)
	if err != nil {
		t.Fatal(err)
	}
	return ring
}

// TestRejectedTokenIsNotWrittenBackAfterAnOutage is the replica scenario:
// replica R fetches T while cut off from Redis (T only in R's L1); a
// caller reports T rejected through replica S, which finds nothing to
// delete; when R reaches Redis again it must neither write T back for the
// fleet nor go on serving it.
func TestRejectedTokenIsNotWrittenBackAfterAnOutage(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	proxy := redistest.StartProxy(t, srv.Addr)
	ring := testRing(t)
	r, rb := redisReplica(t, proxy.Addr, ring)
	s, _ := redisReplica(t, srv.Addr, ring)
	ctx := context.Background()

	proxy.Cut()
	brokertest.Eventually(t, "R's breaker opens", 10*time.Second, brokertest.Holds(func() bool { return rb.Ping(ctx) != nil && rb.Stats().BreakerOpen }))
	rejected := entry(time.Hour)
	if err := r.Put(ctx, key, rejected); err != nil {
		t.Fatalf("R caches the token it fetched during the outage: %v", err)
	}
	if got, err := r.Get(ctx, key); err != nil || got.AccessToken != rejected.AccessToken {
		t.Fatalf("R serves its token during the outage: %+v, %v", got, err)
	}

	// The caller reports T through S: Redis holds nothing to delete, and
	// the answer says so (the cached token was not that token).
	if deleted, err := s.CompareAndDelete(ctx, key, rejected.AccessToken); deleted || err != nil {
		t.Fatalf("S's compare-and-delete = %v, %v; want false, nil", deleted, err)
	}

	proxy.Restore()
	brokertest.Eventually(t, "R reaches Redis again", 10*time.Second, brokertest.Holds(func() bool { return !rb.Stats().BreakerOpen && rb.Ping(ctx) == nil }))
	// R's next look at Redis finds nothing, tries to write T back, is
	// refused, and drops T.
	if got, err := r.GetFresh(ctx, key); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("R after the outage: %q, %v; want a miss", got.AccessToken, err)
	}
	if got, err := r.Get(ctx, key); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("R's L1 still serves the rejected token: %q, %v", got.AccessToken, err)
	}
	if got, err := s.GetFresh(ctx, key); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the fleet sees %q, %v; want nothing", got.AccessToken, err)
	}
	// A token fetched since is stored and shared as usual.
	next := entry(time.Hour)
	if err := r.Put(ctx, key, next); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetFresh(ctx, key); err != nil || got.AccessToken != next.AccessToken {
		t.Fatalf("the next token: %q, %v", got.AccessToken, err)
	}
}

// TestRejectionReachesReplicasThatHoldTheTokenAlone: S's compare-and-delete
// finds another token (or none) in Redis, and still tells the replicas, so
// one holding the rejected token in its L1 drops it at once.
func TestRejectionReachesReplicasThatHoldTheTokenAlone(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	ring := testRing(t)
	r, rb := redisReplica(t, srv.Addr, ring)
	s, sb := redisReplica(t, srv.Addr, ring)
	ctx := context.Background()
	brokertest.Eventually(t, "subscribed", 10*time.Second, brokertest.Holds(func() bool { return rb.Stats().Resyncs > 0 && sb.Stats().Resyncs > 0 }))
	held := entry(time.Hour)
	if err := r.Put(ctx, key, held); err != nil {
		t.Fatal(err)
	}
	// Redis lost the entry (a failover, an eviction); R's L1 keeps it.
	raw := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { _ = raw.Close() })
	if err := raw.Del(ctx, key).Err(); err != nil {
		t.Fatal(err)
	}
	if got, err := r.Get(ctx, key); err != nil || got.AccessToken != held.AccessToken {
		t.Fatalf("R serves from L1: %q, %v", got.AccessToken, err)
	}
	if deleted, err := s.CompareAndDelete(ctx, key, held.AccessToken); deleted || err != nil {
		t.Fatalf("S: %v, %v", deleted, err)
	}
	brokertest.Eventually(t, "R drops the rejected token", 10*time.Second, brokertest.Holds(func() bool {
		_, err := r.Get(ctx, key)
		return errors.Is(err, store.ErrNotFound)
	}))
}

// revoking is a shared level that refuses the tokens in revoked, as Redis
// refuses tokens reported rejected.
type revoking struct {
	*shared
	revoked map[string]bool
}

func (r *revoking) Put(ctx context.Context, key string, e store.Entry) error {
	if !r.down.Load() && r.revoked[e.AccessToken] {
		return store.ErrRevoked
	}
	return r.shared.Put(ctx, key, e)
}

// TestOutageTokenNewerThanTheSharedOne: a token fetched during an outage
// that is newer than the one the shared level holds is written back when
// the shared level answers again, and dropped for the shared one if the
// shared level refuses it.
func TestOutageTokenNewerThanTheSharedOne(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		revoked  bool
		wantL1   string // "older" or "outage"
		inShared string
	}{
		{"written back", false, "outage", "outage"},
		{"reported rejected meanwhile", true, "older", "older"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			older, outage := entry(time.Hour), entry(time.Hour)
			older.IssuedAt = outage.IssuedAt.Add(-time.Minute)
			remote := &revoking{shared: newShared(), revoked: map[string]bool{outage.AccessToken: tc.revoked}}
			l1 := newL1(t, remote, tiered.Options{MaxStale: time.Hour})
			remote.down.Store(true)
			if err := l1.Put(ctx, key, outage); err != nil {
				t.Fatal(err)
			}
			remote.down.Store(false)
			_ = remote.Memory.Put(ctx, key, older)
			byName := map[string]string{"older": older.AccessToken, "outage": outage.AccessToken}
			if got, err := l1.GetFresh(ctx, key); err != nil || got.AccessToken != byName[tc.wantL1] {
				t.Fatalf("GetFresh = %q, %v; want the %s token", got.AccessToken, err, tc.wantL1)
			}
			if got, err := l1.Get(ctx, key); err != nil || got.AccessToken != byName[tc.wantL1] {
				t.Fatalf("Get = %q, %v; want the %s token", got.AccessToken, err, tc.wantL1)
			}
			if got, _ := remote.Memory.Get(ctx, key); got.AccessToken != byName[tc.inShared] {
				t.Fatalf("the shared level holds %q, want the %s token", got.AccessToken, tc.inShared)
			}
		})
	}
}
