package redisstore_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokenbroker/tokenbroker/store"
	"github.com/tokenbroker/tokenbroker/store/redisstore"
	"github.com/tokenbroker/tokenbroker/store/sealed"
	"github.com/tokenbroker/tokenbroker/testkit/brokertest"
	"github.com/tokenbroker/tokenbroker/testkit/redistest"
)

var key = store.TokenKey("0123abcd")

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func newBackend(t *testing.T, addrs ...string) *redisstore.Backend {
	t.Helper()
	return newBackendFrom(t, redisstore.ClientConfig{Addrs: addrs})
}

// patient is for tests of what Redis holds, not of how fast: a command's
// 50 ms default is the product's fail-fast budget, which a 2-core machine
// running -race -count=20 beside a three-master cluster can exceed.
const patient = 5 * time.Second

func newBackendFrom(t *testing.T, cfg redisstore.ClientConfig) *redisstore.Backend {
	t.Helper()
	client, err := redisstore.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b := redisstore.New(client, redisstore.Options{Logger: quiet})
	t.Cleanup(func() { _ = b.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.Warm(ctx); err != nil {
		t.Fatal(err)
	}
	return b
}

// rawClient reads and writes Redis behind the store's back.
func rawClient(t *testing.T, addrs ...string) redis.UniversalClient {
	t.Helper()
	c := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: addrs})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func newKeyring(t *testing.T) ([]byte, *sealed.Keyring) {
	t.Helper()
	k := make([]byte, sealed.KeySize)
	_, _ = rand.Read(k)
	r, err := sealed.NewKeyring(k)
	if err != nil {
		t.Fatal(err)
	}
	return k, r
}

func entry(life time.Duration) store.Entry {
	now := time.Now()
	return store.Entry{
		AccessToken:  "at-" + rand.Text(),
		TokenType:    "Bearer",
		RefreshToken: "rt-" + rand.Text(),
		IssuedAt:     now,
		ExpiresAt:    now.Add(life),
		FetchedAt:    now,
	}
}

func TestSealedInRedis(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	b := newBackend(t, srv.Addr)
	raw := rawClient(t, srv.Addr)
	encKey, ring := newKeyring(t)
	s := sealed.New(b, ring)
	ctx := context.Background()
	e := entry(90 * time.Second)
	if err := s.Put(ctx, key, e); err != nil {
		t.Fatal(err)
	}

	t.Run("raw value holds no token or secret", func(t *testing.T) {
		v, err := raw.Get(ctx, key).Bytes()
		if err != nil {
			t.Fatal(err)
		}
		for name, secret := range map[string][]byte{"access token": []byte(e.AccessToken), "refresh token": []byte(e.RefreshToken), "encryption key": encKey} {
			if bytes.Contains(v, secret) {
				t.Errorf("Redis holds the %s in the clear", name)
			}
		}
	})
	t.Run("TTL is the token's remaining life", func(t *testing.T) {
		left := time.Until(e.ExpiresAt)
		pttl, err := raw.PTTL(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		// The TTL is measured when the command is sent, so Redis may
		// count it from a few milliseconds later; served entries are
		// checked against their sealed expiry anyway.
		if pttl > left+redisstore.DefaultOpTimeout || pttl < left-time.Second {
			t.Fatalf("PTTL = %v, token has %v left", pttl, left)
		}
	})
	t.Run("copied to another key is a miss", func(t *testing.T) {
		other := "tokenbroker:v1:{0123abcd}:copy"
		v, _ := raw.Get(ctx, key).Bytes()
		raw.Set(ctx, other, v, time.Minute)
		before := s.Stats().OpenFailures
		if got, err := s.Get(ctx, other); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("a value moved to another key was served: %+v, %v", got, err)
		}
		if s.Stats().OpenFailures != before+1 {
			t.Fatal("the failure to open was not counted")
		}
	})
	t.Run("flipped byte is a miss", func(t *testing.T) {
		k2 := store.TokenKey("flip")
		if err := s.Put(ctx, k2, entry(time.Minute)); err != nil {
			t.Fatal(err)
		}
		v, _ := raw.Get(ctx, k2).Bytes()
		flipped := []byte{v[len(v)-1] ^ 0x01}
		raw.SetRange(ctx, k2, int64(len(v)-1), string(flipped))
		before := s.Stats().OpenFailures
		if got, err := s.Get(ctx, k2); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("a tampered value was served: %+v, %v", got, err)
		}
		if s.Stats().OpenFailures != before+1 {
			t.Fatal("the failure to open was not counted")
		}
	})
	t.Run("rotation", func(t *testing.T) {
		newKey := make([]byte, sealed.KeySize)
		_, _ = rand.Read(newKey)
		both, err := sealed.NewKeyring(newKey, encKey)
		if err != nil {
			t.Fatal(err)
		}
		rotated := sealed.New(b, both)
		if got, err := rotated.Get(ctx, key); err != nil || got.AccessToken != e.AccessToken {
			t.Fatalf("the old key no longer opens: %+v, %v", got, err)
		}
		k3 := store.TokenKey("rotated")
		if err := rotated.Put(ctx, k3, entry(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get(ctx, k3); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("a new value opened with the old key alone: it was not sealed with the new key (%v)", err)
		}
		newOnly, _ := sealed.NewKeyring(newKey)
		if _, err := sealed.New(b, newOnly).Get(ctx, k3); err != nil {
			t.Fatalf("the new key does not open a new value: %v", err)
		}
	})
	t.Run("compare and delete", func(t *testing.T) {
		if ok, err := s.CompareAndDelete(ctx, key, "not-the-token"); ok || err != nil {
			t.Fatalf("deleted with the wrong token: %v %v", ok, err)
		}
		if ok, err := s.CompareAndDelete(ctx, key, e.AccessToken); !ok || err != nil {
			t.Fatalf("not deleted with the right token: %v %v", ok, err)
		}
		if n, _ := raw.Exists(ctx, key).Result(); n != 0 {
			t.Fatal("the key is still in Redis")
		}
	})
}

func TestShortLivedTokenExpiresInRedis(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	b := newBackend(t, srv.Addr)
	_, ring := newKeyring(t)
	s := sealed.New(b, ring)
	ctx := context.Background()
	if err := s.Put(ctx, key, entry(150*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, key); err != nil {
		t.Fatal(err)
	}
	raw := rawClient(t, srv.Addr)
	if ttl, err := raw.PTTL(ctx, key).Result(); err != nil || ttl <= 0 || ttl > 150*time.Millisecond {
		t.Fatalf("PTTL = %v, %v; want an expiry no later than the token's (150ms)", ttl, err)
	}
	// Redis expires the key on its own clock; wait for that, generously.
	brokertest.Eventually(t, "the value expired with its token", 10*time.Second, brokertest.Holds(func() bool {
		n, err := raw.Exists(ctx, key).Result()
		return err == nil && n == 0
	}))
}

func TestLease(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	testLease(t, srv.Addr)
}

// newLeaseBackend is newBackend with a short lease and its subscriber
// running (Notify needs it).
func newLeaseBackend(t *testing.T, leaseTTL time.Duration, addrs ...string) *redisstore.Backend {
	t.Helper()
	client, err := redisstore.NewClient(redisstore.ClientConfig{Addrs: addrs, OpTimeout: patient})
	if err != nil {
		t.Fatal(err)
	}
	b := redisstore.New(client, redisstore.Options{Logger: quiet, LeaseTTL: leaseTTL})
	t.Cleanup(func() { _ = b.Close() })
	b.Watch(nil)
	brokertest.Eventually(t, "subscribed", 10*time.Second, brokertest.Holds(func() bool { return b.Stats().Resyncs > 0 }))
	return b
}

func testLease(t *testing.T, addrs ...string) {
	ctx := context.Background()
	const ttl = 400 * time.Millisecond
	a, b := newLeaseBackend(t, ttl, addrs...), newLeaseBackend(t, ttl, addrs...)
	raw := rawClient(t, addrs...)
	raw.Del(ctx, store.LeaseKey(key), store.FenceKey(key))

	la, err := a.TryLease(ctx, key)
	if err != nil || la == nil {
		t.Fatalf("first TryLease: %v, %v", la, err)
	}
	if la.Fence() != 1 {
		t.Fatalf("first generation = %d, want 1", la.Fence())
	}
	if lb, err := b.TryLease(ctx, key); lb != nil || err != nil {
		t.Fatalf("second TryLease while held: %v, %v", lb, err)
	}
	t.Run("renewed while held", func(t *testing.T) {
		// Renewals push the expiry back: between renewals the PTTL only
		// falls, so a read above the one before it saw a renewal. (Not
		// above the first read: that one may itself follow a renewal by
		// under a millisecond, when no later read can exceed it.)
		prev, _ := raw.PTTL(ctx, store.LeaseKey(key)).Result()
		if prev <= 0 || prev > ttl {
			t.Fatalf("lease PTTL = %v, want at most %v", prev, ttl)
		}
		brokertest.Eventually(t, "a renewal", 25*ttl, brokertest.Holds(func() bool {
			now, err := raw.PTTL(ctx, store.LeaseKey(key)).Result()
			if err != nil || now <= 0 {
				return false // a failed read, or the lease gone: no renewal seen
			}
			renewed := now > prev
			prev = now
			return renewed
		}))
	})
	t.Run("release wakes a waiter on another replica", func(t *testing.T) {
		woken, stop := b.Notify(key)
		defer stop()
		la.Release()
		select {
		case <-woken:
		case <-time.After(5 * time.Second):
			t.Fatal("the waiter was not woken by the release")
		}
		if n, _ := raw.Exists(ctx, store.LeaseKey(key)).Result(); n != 0 {
			t.Fatal("release did not free the lease")
		}
	})
	t.Run("a stale holder cannot free the next one's lease", func(t *testing.T) {
		l1, err := a.TryLease(ctx, key)
		if err != nil || l1 == nil {
			t.Fatalf("TryLease: %v, %v", l1, err)
		}
		raw.Del(ctx, store.LeaseKey(key)) // as if it had expired
		l2, err := b.TryLease(ctx, key)
		if err != nil || l2 == nil {
			t.Fatalf("TryLease after expiry: %v, %v", l2, err)
		}
		if l2.Fence() <= l1.Fence() {
			t.Fatalf("generations %d then %d: not increasing", l1.Fence(), l2.Fence())
		}
		l1.Release()
		if n, _ := raw.Exists(ctx, store.LeaseKey(key)).Result(); n != 1 {
			t.Fatal("a stale holder released another holder's lease")
		}
		l2.Release()
	})
	t.Run("a dead holder's lease expires", func(t *testing.T) {
		// A holder in a backend that stops renewing (its process died).
		dead := newLeaseBackend(t, ttl, addrs...)
		if l, err := dead.TryLease(ctx, key); err != nil || l == nil {
			t.Fatalf("TryLease: %v, %v", l, err)
		}
		_ = dead.Close()
		took := brokertest.Eventually(t, "the lease taken after its holder died", 10*ttl, brokertest.Holds(func() bool {
			l, err := b.TryLease(ctx, key)
			if l != nil {
				l.Release()
			}
			return err == nil && l != nil
		}))
		t.Logf("taken %v after the holder stopped (lease TTL %v)", took, ttl)
	})
}

func TestFencedSave(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	ctx := context.Background()
	b := newBackend(t, srv.Addr)
	raw := rawClient(t, srv.Addr)
	neg := store.NegativeKey(key)
	exp := time.Now().Add(time.Minute)
	if err := b.Save(ctx, key, []byte("v5"), exp, 5); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		key       string
		fence     uint64
		wantErr   error
		wantFence string
	}{
		{"older generation refused", key, 4, store.ErrStale, "5"},
		{"no generation refused once one is stored", key, 0, store.ErrStale, "5"},
		{"same generation accepted", key, 5, nil, "5"},
		{"newer generation accepted and kept", key, 7, nil, "7"},
		{"negative entry of an older generation refused", neg, 6, store.ErrStale, "7"},
		{"negative entry of the current generation accepted", neg, 7, nil, "7"},
	}
	for _, tt := range tests {
		value := []byte(tt.name)
		save := b.Save
		if tt.key == neg {
			save = b.SaveRejection
		}
		err := save(ctx, tt.key, value, exp, tt.fence)
		if !errors.Is(err, tt.wantErr) {
			t.Fatalf("%s: Save = %v, want %v", tt.name, err, tt.wantErr)
		}
		got, _ := raw.Get(ctx, tt.key).Result()
		if (tt.wantErr == nil) != (got == tt.name) {
			t.Fatalf("%s: Redis holds %q", tt.name, got)
		}
		if g, _ := raw.Get(ctx, store.FenceKey(key)).Result(); g != tt.wantFence {
			t.Fatalf("%s: generation %q, want %q", tt.name, g, tt.wantFence)
		}
	}
	if pttl, _ := raw.PTTL(ctx, store.FenceKey(key)).Result(); pttl < time.Minute {
		t.Fatalf("generation PTTL = %v: it must outlive the token", pttl)
	}
	// A token write clears the negative entry: the credentials work.
	if err := b.Save(ctx, key, []byte("v7"), exp, 7); err != nil {
		t.Fatal(err)
	}
	if n, _ := raw.Exists(ctx, neg).Result(); n != 0 {
		t.Fatal("a token write left the negative cache entry")
	}
}

func TestLeaseKeySharesTheSlot(t *testing.T) {
	t.Parallel()
	if got := store.LeaseKey(key); got != "tokenbroker:v1:{0123abcd}:lock" {
		t.Fatalf("LeaseKey = %q", got)
	}
}

func TestCluster(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t)
	ctx := context.Background()
	raw := rawClient(t, c.Addrs...)
	if a, b := raw.ClusterKeySlot(ctx, key).Val(), raw.ClusterKeySlot(ctx, store.LeaseKey(key)).Val(); a != b {
		t.Fatalf("token and lease keys are on slots %d and %d", a, b)
	}
	b := newBackendFrom(t, redisstore.ClientConfig{Addrs: c.Addrs, OpTimeout: patient})
	_, ring := newKeyring(t)
	s := sealed.New(b, ring)
	// Keys spread over the three masters.
	for i := range 30 {
		k := store.TokenKey(rand.Text()[:8])
		e := entry(time.Minute)
		if err := s.Put(ctx, k, e); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
		if got, err := s.Get(ctx, k); err != nil || got.AccessToken != e.AccessToken {
			t.Fatalf("get %d: %+v, %v", i, got, err)
		}
		if ok, err := s.CompareAndDelete(ctx, k, e.AccessToken); !ok || err != nil {
			t.Fatalf("compare-and-delete %d: %v, %v", i, ok, err)
		}
	}
	testLease(t, c.Addrs...)
	testStatusInCluster(t, b, raw)
}

// watcher records what a Backend's subscriber reports.
type watcher struct {
	mu      sync.Mutex
	forgot  []string
	resyncs atomic.Int64
}

func (w *watcher) Forget(key string) {
	w.mu.Lock()
	w.forgot = append(w.forgot, key)
	w.mu.Unlock()
}
func (w *watcher) Resync() { w.resyncs.Add(1) }

func (w *watcher) forgotten() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.forgot...)
}

func TestInvalidationsReachOtherReplicas(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	ctx := context.Background()
	a, b := newBackend(t, srv.Addr), newBackend(t, srv.Addr)
	wa, wb := &watcher{}, &watcher{}
	a.Watch(wa)
	b.Watch(wb)
	brokertest.Eventually(t, "subscribed", 5*time.Second, brokertest.Holds(func() bool { return wa.resyncs.Load() > 0 && wb.resyncs.Load() > 0 }))
	if err := a.Publish(ctx, key); err != nil {
		t.Fatal(err)
	}
	took := brokertest.Eventually(t, "the other replica heard", 10*time.Second, brokertest.Holds(func() bool { return len(wb.forgotten()) == 1 }))
	t.Logf("invalidation delivered in %v", took)
	// A barrier instead of a pause: b answers with a marker, which reaches
	// a on the same subscription after a's own message (Redis delivers a
	// channel's messages in order). Once a has the marker, its own message
	// has either been dropped or delivered.
	const marker = "marker"
	if err := b.Publish(ctx, marker); err != nil {
		t.Fatal(err)
	}
	brokertest.Eventually(t, "the marker reached the publisher", 10*time.Second, brokertest.Holds(func() bool { return len(wa.forgotten()) > 0 }))
	if got := wa.forgotten(); len(got) != 1 || got[0] != marker {
		t.Fatalf("the publisher forgot %v, want only the other replica's %q (never its own key)", got, marker)
	}
	if got := wb.forgotten(); got[0] != key {
		t.Fatalf("forgot %v", got)
	}

	// After a restart the subscription comes back and asks for a resync,
	// because messages may have been missed.
	lost, subscribed := wb.resyncs.Load(), b.Stats().Resyncs
	srv.Restart()
	brokertest.Eventually(t, "resync on the lost subscription", 10*time.Second, brokertest.Holds(func() bool { return wb.resyncs.Load() > lost }))
	brokertest.Eventually(t, "resubscribed after a restart", 10*time.Second, brokertest.Holds(func() bool { return b.Stats().Resyncs > subscribed }))
	// The first command after a restart may find the breaker open.
	brokertest.Eventually(t, "publish after restart", 5*time.Second, brokertest.Holds(func() bool { return a.Publish(ctx, "k2") == nil }))
	brokertest.Eventually(t, "message after resubscription", 5*time.Second, brokertest.Holds(func() bool { return len(wb.forgotten()) == 2 }))
}

// timed returns how long op took.
func timed(op func()) time.Duration {
	start := time.Now()
	op()
	return time.Since(start)
}

func TestBreakerKillAndRestart(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	testBreaker(t, srv.Addr, srv.Kill, srv.Restart)
}

func TestBreakerFreezeAndThaw(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	testBreaker(t, srv.Addr, srv.Freeze, srv.Thaw)
}

func testBreaker(t *testing.T, addr string, down, up func()) {
	ctx := context.Background()
	b := newBackend(t, addr)
	_, ring := newKeyring(t)
	s := sealed.New(b, ring)
	e := entry(time.Minute)
	if err := s.Put(ctx, key, e); err != nil {
		t.Fatal(err)
	}
	down()
	// Until the breaker opens each command costs about its timeout: the
	// median, because a loaded machine running the race detector can
	// stall any one call.
	var before []time.Duration
	for start := time.Now(); !b.Stats().BreakerOpen; time.Sleep(10 * time.Millisecond) {
		if time.Since(start) > 5*time.Second {
			t.Fatal("the breaker did not open")
		}
		before = append(before, timed(func() { _, _ = s.Get(ctx, key) }))
	}
	slices.Sort(before)
	if median := before[len(before)/2]; median > 2*redisstore.DefaultOpTimeout {
		t.Fatalf("before the breaker opened, Get took %v (median of %d)", median, len(before))
	}
	t.Logf("before the breaker opened: %d Gets, median %v, max %v", len(before), before[len(before)/2], before[len(before)-1])
	// Open: nothing waits on Redis.
	var open []time.Duration
	const rounds = 100
	for range rounds {
		d := timed(func() {
			if _, err := s.Get(ctx, key); !errors.Is(err, redisstore.ErrUnavailable) {
				t.Errorf("Get with the breaker open: %v, want ErrUnavailable", err)
			}
			if err := s.Put(ctx, key, e); !errors.Is(err, redisstore.ErrUnavailable) {
				t.Errorf("Put with the breaker open: %v", err)
			}
			if l, err := b.TryLease(ctx, key); l != nil || err == nil {
				t.Errorf("TryLease with the breaker open: %v, %v", l, err)
			}
		})
		open = append(open, d)
	}
	// A round that waited on Redis would take at least a command's
	// timeout. The median, against a fifth of that: a loaded machine
	// running the race detector can stall any one round for a hundred
	// milliseconds, and a few such stalls moved the mean past 1 ms.
	slices.Sort(open)
	if median := open[rounds/2]; median > redisstore.DefaultOpTimeout/5 {
		t.Fatalf("with the breaker open, Get+Put+TryLease took %v (median of %d; at most %v)", median, rounds, open[rounds-1])
	}
	t.Logf("breaker open: Get+Put+TryLease took %v (median), at most %v", open[rounds/2], open[rounds-1])
	up()
	took := brokertest.Eventually(t, "recovery", 5*time.Second, brokertest.Holds(func() bool { return !b.Stats().BreakerOpen }))
	t.Logf("breaker closed %v after Redis came back", took)
	brokertest.Eventually(t, "commands succeed", 2*time.Second, brokertest.Holds(func() bool { return s.Put(ctx, key, e) == nil }))
	if got, err := s.Get(ctx, key); err != nil || got.AccessToken != e.AccessToken {
		t.Fatalf("after recovery: %+v, %v", got, err)
	}
	st := b.Stats()
	if st.BreakerOpens != 1 || st.Errors == 0 || st.Skipped == 0 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestSentinel(t *testing.T) {
	t.Parallel()
	master := redistest.Start(t)
	sentinel := redistest.StartSentinel(t, master)
	client, err := redisstore.NewClient(redisstore.ClientConfig{Addrs: []string{sentinel.Addr}, MasterName: redistest.SentinelMaster})
	if err != nil {
		t.Fatal(err)
	}
	b := redisstore.New(client, redisstore.Options{Logger: quiet})
	t.Cleanup(func() { _ = b.Close() })
	ctx := context.Background()
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := b.Warm(wctx); err != nil {
		t.Fatal(err)
	}
	_, ring := newKeyring(t)
	s := sealed.New(b, ring)
	e := entry(time.Minute)
	if err := s.Put(ctx, key, e); err != nil {
		t.Fatal(err)
	}
	// It went to the master the Sentinel named.
	if n, _ := redistest.Do(master.Addr, "EXISTS", key); n != "1" {
		t.Fatal("the value is not on the master")
	}
	if got, err := s.Get(ctx, key); err != nil || got.AccessToken != e.AccessToken {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	l, err := b.TryLease(ctx, key)
	if err != nil || l == nil {
		t.Fatalf("TryLease = %v, %v", l, err)
	}
	l.Release()
}

// sealedStore is a sealed store on a backend of a client for cfg, closed
// with the test.
func sealedStore(t *testing.T, cfg redisstore.ClientConfig) *sealed.Store {
	t.Helper()
	client, err := redisstore.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b := redisstore.New(client, redisstore.Options{Logger: quiet})
	t.Cleanup(func() { _ = b.Close() })
	_, ring := newKeyring(t)
	return sealed.New(b, ring)
}

// TestSentinelFailover: when the master dies, Sentinel promotes its
// replica and the store follows: writes resume on the new master.
func TestSentinelFailover(t *testing.T) {
	t.Parallel()
	master := redistest.Start(t)
	replica := redistest.StartReplica(t, master)
	sentinel := redistest.StartSentinelWith(t, master, redistest.SentinelOptions{DownAfter: 500 * time.Millisecond})
	s := sealedStore(t, redisstore.ClientConfig{Addrs: []string{sentinel.Addr}, MasterName: redistest.SentinelMaster})
	ctx := context.Background()
	before := entry(time.Minute)
	brokertest.Eventually(t, "the first write", 5*time.Second, brokertest.Holds(func() bool { return s.Put(ctx, key, before) == nil }))
	if n, _ := redistest.Do(master.Addr, "EXISTS", key); n != "1" {
		t.Fatal("the value is not on the master")
	}

	master.Kill()
	after := entry(time.Minute)
	took := brokertest.Eventually(t, "a write after failover", 30*time.Second, brokertest.Holds(func() bool { return s.Put(ctx, key, after) == nil }))
	t.Logf("writes resumed %v after the master died", took)
	if info, _ := redistest.Do(replica.Addr, "INFO", "replication"); !strings.Contains(info, "role:master") {
		t.Fatalf("the replica was not promoted:\n%s", info)
	}
	if got, err := s.Get(ctx, key); err != nil || got.AccessToken != after.AccessToken {
		t.Fatalf("after failover: Get = %+v, %v; want the token written after it", got, err)
	}
	if n, _ := redistest.Do(replica.Addr, "EXISTS", key); n != "1" {
		t.Fatal("the value written after failover is not on the promoted replica")
	}
}

// TestSentinelWithPasswordOnlyOnRedis: the usual deployment protects the
// data nodes with a password and leaves the Sentinels without one. The
// client sends the configured password to both (go-redis's
// SentinelPassword); this pins that a Sentinel without one still serves it.
func TestSentinelWithPasswordOnlyOnRedis(t *testing.T) {
	t.Parallel()
	master := redistest.Start(t, "--requirepass", "data-secret")
	sentinel := redistest.StartSentinel(t, master)
	s := sealedStore(t, redisstore.ClientConfig{Addrs: []string{sentinel.Addr}, MasterName: redistest.SentinelMaster, Password: "data-secret"})
	ctx := context.Background()
	e := entry(time.Minute)
	if err := s.Put(ctx, key, e); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get(ctx, key); err != nil || got.AccessToken != e.AccessToken {
		t.Fatalf("Get = %+v, %v", got, err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// TestTLS: with TLS the client verifies the server's certificate against
// the configured CAs, and refuses a server it cannot verify.
func TestTLS(t *testing.T) {
	t.Parallel()
	srv, caFile := redistest.StartTLS(t)
	pemBytes, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pemBytes)
	ctx := context.Background()
	_, ring := newKeyring(t)
	tests := []struct {
		name    string
		roots   *x509.CertPool
		wantErr bool
	}{
		{"trusted CA", roots, false},
		{"system roots only", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, err := redisstore.NewClient(redisstore.ClientConfig{Addrs: []string{srv.Addr}, TLS: true, RootCAs: tt.roots})
			if err != nil {
				t.Fatal(err)
			}
			b := redisstore.New(client, redisstore.Options{Logger: quiet})
			t.Cleanup(func() { _ = b.Close() })
			// Warm dials and handshakes first, as the broker does at
			// startup (a command's 50 ms would include the handshake).
			// On a loaded machine a dial can outlast its 200 ms: try
			// again until the answer is about the certificate.
			_ = brokertest.Poll(10*time.Second, func() error {
				wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				defer cancel()
				if err = b.Warm(wctx); isTimeout(err) {
					return err
				}
				return nil
			})
			s := sealed.New(b, ring)
			e := entry(time.Minute)
			if err == nil {
				err = s.Put(ctx, key, e)
			}
			switch {
			case tt.wantErr && err == nil:
				t.Fatal("wrote to a server whose certificate nobody vouches for")
			case tt.wantErr:
				if !strings.Contains(err.Error(), "certificate") {
					t.Fatalf("error %v, want a certificate error", err)
				}
			case err != nil:
				t.Fatal(err)
			default:
				if got, err := s.Get(ctx, key); err != nil || got.AccessToken != e.AccessToken {
					t.Fatalf("Get = %+v, %v", got, err)
				}
			}
		})
	}
}

// TestSentinelWithItsOwnPassword: Sentinels protected by a password other
// than the data nodes' need SentinelPassword; with the data password alone
// the client cannot ask them where the master is.
func TestSentinelWithItsOwnPassword(t *testing.T) {
	t.Parallel()
	master := redistest.Start(t, "--requirepass", "data-secret")
	sentinel := redistest.StartSentinelWith(t, master, redistest.SentinelOptions{Password: "sentinel-secret"})
	tests := []struct {
		name             string
		sentinelPassword string
		wantErr          bool
	}{
		{"sentinel password set", "sentinel-secret", false},
		{"data password only", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := sealedStore(t, redisstore.ClientConfig{Addrs: []string{sentinel.Addr}, MasterName: redistest.SentinelMaster,
				Password: "data-secret", SentinelPassword: tt.sentinelPassword})
			err := s.Put(context.Background(), key, entry(time.Minute))
			if tt.wantErr != (err != nil) {
				t.Fatalf("Put: %v, want an error: %v", err, tt.wantErr)
			}
		})
	}
}

// TestClusterFailoverKeysFollowThePromotedReplica: the master of a key's
// slot is killed; once its replica is promoted, the key's writes and
// leases reach the promoted node without waiting for go-redis's periodic
// slot map reload, and the dead master's breaker stops only its shard.
func TestClusterFailoverKeysFollowThePromotedReplica(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("cluster failover skipped in -short mode")
	}
	c := redistest.StartClusterWithReplicas(t)
	ctx := context.Background()
	b := newLeaseBackend(t, time.Second, c.Addrs...)
	_, ring := newKeyring(t)
	s := sealed.New(b, ring)
	if err := s.Put(ctx, key, entry(time.Minute)); err != nil {
		t.Fatal(err)
	}
	// A key on another shard, to show its commands go on meanwhile.
	other := key
	for i := 0; c.MasterOf(t, other) == c.MasterOf(t, key); i++ {
		other = store.TokenKey("other" + strconv.Itoa(i))
	}
	dead := c.MasterOf(t, key)
	dead.Kill()

	// Commands on the dead shard fail until the promotion; the other
	// shard's go on.
	e := entry(time.Minute)
	var otherFailures int
	took := brokertest.Eventually(t, "a write to the promoted replica", 60*time.Second, brokertest.Holds(func() bool {
		if err := s.Put(ctx, other, entry(time.Minute)); err != nil {
			otherFailures++
		}
		return s.Put(ctx, key, e) == nil
	}))
	t.Logf("writes reached the promoted replica %v after the kill (%d failed writes on the other shard)", took, otherFailures)
	// The cluster's gossip may tell the other nodes a moment after the
	// client found the promoted replica.
	var promoted *redistest.Server
	brokertest.Eventually(t, "the nodes agree on the promoted replica", 30*time.Second, brokertest.Holds(func() bool {
		promoted, _ = c.Owner(key)
		return promoted != nil && promoted != dead
	}))
	if n, err := redistest.Do(promoted.Addr, "EXISTS", key); err != nil || n != "1" {
		t.Fatalf("the token is not on the promoted node %s: %q, %v", promoted.Addr, n, err)
	}
	l, err := b.TryLease(ctx, key)
	if err != nil || l == nil {
		t.Fatalf("TryLease after the failover: %v, %v", l, err)
	}
	l.Release()
	if got, err := s.Get(ctx, key); err != nil || got.AccessToken != e.AccessToken {
		t.Fatalf("Get after the failover: %+v, %v", got, err)
	}
}

// TestClaimAcksWaitForAReplica: with ClaimAcks (Sentinel), a refresh token
// claim counts only once a replica has it (a failover must not forget
// it); without the acknowledgement in time (the replica frozen, or gone
// with a promotion) the claim fails and the holder uses the primary
// grant. Without ClaimAcks the claim does not wait.
func TestClaimAcksWaitForAReplica(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	master := redistest.Start(t)
	replica := redistest.StartReplica(t, master)
	backend := func(acks int, addr string) *redisstore.Backend {
		client, err := redisstore.NewClient(redisstore.ClientConfig{Addrs: []string{addr}, OpTimeout: patient})
		if err != nil {
			t.Fatal(err)
		}
		b := redisstore.New(client, redisstore.Options{Logger: quiet, LeaseTTL: 5 * time.Second, ClaimAcks: acks, LeaseTimeout: patient})
		t.Cleanup(func() { _ = b.Close() })
		return b
	}
	claim := func(b *redisstore.Backend, k, refreshToken string) bool {
		t.Helper()
		l, err := b.TryLease(ctx, k)
		if err != nil || l == nil {
			t.Fatalf("TryLease: %v, %v", l, err)
		}
		defer l.Release()
		ok, err := l.ClaimRefreshToken(ctx, refreshToken)
		if err != nil {
			t.Fatalf("ClaimRefreshToken: %v", err)
		}
		return ok
	}
	b := backend(1, master.Addr)
	if !claim(b, key, "rt-1") {
		t.Fatal("claim with the replica up: refused")
	}
	if got, err := redistest.Do(replica.Addr, "EXISTS", store.SpentKey(key)); err != nil || got != "1" {
		t.Fatalf("the replica lacks the claim once it counted: %q, %v", got, err)
	}
	replica.Freeze()
	ok := claim(b, key+"-2", "rt-2")
	replica.Thaw()
	if ok {
		t.Fatal("claim with the replica frozen counted without its acknowledgement")
	}

	alone := redistest.Start(t)
	if claim(backend(1, alone.Addr), key, "rt-3") {
		t.Fatal("claim needing an acknowledgement counted on a master without replicas")
	}
	if !claim(backend(0, alone.Addr), key+"-4", "rt-4") {
		t.Fatal("claim without ClaimAcks: refused")
	}
}
