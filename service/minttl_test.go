package service

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
	"github.com/tokenbroker/tokenbroker/store"
)

// TestForceRefreshKeepsMinTTL: a force_refresh within
// force_refresh_interval of the last fetch is answered from the cache only
// while that token still has min_ttl left; otherwise the vendor is asked.
func TestForceRefreshKeepsMinTTL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		left      time.Duration
		minTTL    time.Duration
		wantFetch int64
	}{
		{"min_ttl left: the recent token", 10 * time.Second, time.Second, 0},
		{"less than min_ttl left: a new token", 700 * time.Millisecond, time.Second, 1},
		{"min_ttl 0, some life left: the recent token", 700 * time.Millisecond, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, v := newTestService(t, 3600, nil)
			ctx := context.Background()
			r, err := s.resolve(s.snapshot.Load(), selector{profile: "p"})
			if err != nil {
				t.Fatal(err)
			}
			now := time.Now()
			cached := store.Entry{AccessToken: "tok-cached", TokenType: "Bearer",
				IssuedAt: now.Add(-2300 * time.Millisecond), FetchedAt: now.Add(-time.Second), ExpiresAt: now.Add(tc.left)}
			if err := s.store.Put(ctx, r.key, cached); err != nil {
				t.Fatal(err)
			}
			resp, err := s.GetToken(ctx, &tokenbrokerv1.GetTokenRequest{Profile: "p", ForceRefresh: true, MinTtl: durationpb.New(tc.minTTL)})
			if err != nil {
				t.Fatal(err)
			}
			if got := v.calls.Load(); got != tc.wantFetch {
				t.Fatalf("vendor calls = %d, want %d (served %q)", got, tc.wantFetch, resp.AccessToken)
			}
			if left := time.Until(resp.ExpiresAt.AsTime()); left < tc.minTTL {
				t.Fatalf("served %q with %v left, min_ttl %v", resp.AccessToken, left, tc.minTTL)
			}
		})
	}
}

// TestServableAfterWaitKeepsMinTTL: after waiting on another holder, a
// force_refresh is served the token that holder stored only if it has
// min_ttl left.
func TestServableAfterWaitKeepsMinTTL(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s, _ := newTestService(t, 3600, func(c *Config) { c.Now = func() time.Time { return now } })
	r, err := s.resolve(s.snapshot.Load(), selector{profile: "p"})
	if err != nil {
		t.Fatal(err)
	}
	waitStart := now.Add(-3 * time.Second)
	tests := []struct {
		name  string
		e     store.Entry
		force bool
		want  bool
	}{
		{"stored while waiting, min_ttl left", store.Entry{AccessToken: "a", FetchedAt: now.Add(-time.Second), ExpiresAt: now.Add(2 * time.Second)}, true, true},
		{"stored while waiting, less than min_ttl left", store.Entry{AccessToken: "a", FetchedAt: now.Add(-time.Second), ExpiresAt: now.Add(700 * time.Millisecond)}, true, false},
		{"stored before the wait, beyond the interval", store.Entry{AccessToken: "a", FetchedAt: now.Add(-6 * time.Second), ExpiresAt: now.Add(time.Hour)}, true, false},
		{"expired", store.Entry{AccessToken: "a", FetchedAt: now.Add(-time.Second), ExpiresAt: now}, true, false},
		{"no force_refresh, min_ttl left", store.Entry{AccessToken: "a", FetchedAt: now.Add(-time.Hour), ExpiresAt: now.Add(time.Second)}, false, true},
		{"no force_refresh, less than min_ttl left", store.Entry{AccessToken: "a", FetchedAt: now.Add(-time.Second), ExpiresAt: now.Add(999 * time.Millisecond)}, false, false},
	}
	for _, tc := range tests {
		if got := s.servable(r, tc.e, time.Second, tc.force, waitStart); got != tc.want {
			t.Errorf("%s: servable = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// storedMeanwhile is a Leaser whose first lease another replica holds:
// while this one tries, that replica stores a token (put) and lets go
// (the waiter is woken at once). Later attempts get the lease.
type storedMeanwhile struct {
	put   func()
	tries atomic.Int64
}

func (l *storedMeanwhile) TryLease(context.Context, string) (store.Lease, error) {
	if l.tries.Add(1) == 1 {
		l.put()
		return nil, nil
	}
	return &nopLease{}, nil
}

func (l *storedMeanwhile) Notify(string) (<-chan struct{}, func()) {
	woken := make(chan struct{})
	close(woken)
	return woken, func() {}
}

func (l *storedMeanwhile) PollInterval() time.Duration { return time.Hour }

type nopLease struct{}

func (nopLease) Fence() uint64                                           { return 0 }
func (nopLease) Extend(context.Context) (bool, error)                    { return true, nil }
func (nopLease) ClaimRefreshToken(context.Context, string) (bool, error) { return true, nil }
func (nopLease) Release()                                                {}

// pausingObserver moves the service's clock on when a wait ends, as if
// the process had been paused (SIGSTOP, a long GC) right after it read the
// token another holder stored.
type pausingObserver struct {
	nopObserver
	pause func()
}

func (o pausingObserver) LeaseWait(string, time.Duration) { o.pause() }

// TestMinTTLCheckedAfterAPause: a token that had min_ttl left when the
// wait ended but not after a pause that followed is not served; the
// caller gets a new one.
func TestMinTTLCheckedAfterAPause(t *testing.T) {
	t.Parallel()
	var offset atomic.Int64
	clock := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	leases := &storedMeanwhile{}
	s, v := newTestService(t, 3600, func(c *Config) {
		c.Leases = leases
		c.Observer = pausingObserver{pause: func() { offset.Store(int64(2 * time.Second)) }}
		c.Now = clock
	})
	r, err := s.resolve(s.snapshot.Load(), selector{profile: "p"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	leases.put = func() {
		now := clock()
		e := store.Entry{AccessToken: "tok-other-replica", TokenType: "Bearer",
			IssuedAt: now, FetchedAt: now, ExpiresAt: now.Add(2500 * time.Millisecond)}
		if err := s.store.Put(ctx, r.key, e); err != nil {
			t.Error(err)
		}
	}
	resp, err := s.GetToken(ctx, &tokenbrokerv1.GetTokenRequest{Profile: "p", MinTtl: durationpb.New(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if resp.AccessToken == "tok-other-replica" {
		t.Fatalf("served the token read before the pause, %v left after it for min_ttl 1s", resp.ExpiresAt.AsTime().Sub(clock()))
	}
	if v.calls.Load() != 1 || leases.tries.Load() != 2 {
		t.Fatalf("vendor calls %d, lease attempts %d; want 1 and 2", v.calls.Load(), leases.tries.Load())
	}
	if resp.ExpiresIn < 3599-2 {
		t.Fatalf("expires_in %d, want whole seconds left at sending by the service's clock", resp.ExpiresIn)
	}
}
