package redisstore_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/store"
	"github.com/tokenbroker/tokenbroker/store/redisstore"
	"github.com/tokenbroker/tokenbroker/store/sealed"
	"github.com/tokenbroker/tokenbroker/testkit/redistest"
)

// TestRejectedTokensStayRejected: a compare-and-delete remembers the named
// token, deleted or not, and a write of it is refused from then on; the
// answer still says whether the cached token was the one named.
func TestRejectedTokensStayRejected(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	ctx := context.Background()
	b := newBackendFrom(t, redisstore.ClientConfig{Addrs: []string{srv.Addr}, OpTimeout: patient})
	raw := rawClient(t, srv.Addr)
	_, ring := newKeyring(t)
	s := sealed.New(b, ring)

	cached, elsewhere, other := entry(time.Minute), entry(time.Hour), entry(time.Minute)
	if err := s.Put(ctx, key, cached); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name        string
		do          func() (bool, error)
		want        bool
		wantErr     error
		cachedAfter string // the token Redis holds afterwards ("": none)
	}{
		{"a token Redis does not hold is reported", func() (bool, error) {
			return s.CompareAndDelete(ctx, key, elsewhere.AccessToken)
		}, false, nil, cached.AccessToken},
		{"that token is not written back", func() (bool, error) {
			return false, s.Put(ctx, key, elsewhere)
		}, false, store.ErrRevoked, cached.AccessToken},
		{"the cached token is reported", func() (bool, error) {
			return s.CompareAndDelete(ctx, key, cached.AccessToken)
		}, true, nil, ""},
		{"reported again: nothing to delete", func() (bool, error) {
			return s.CompareAndDelete(ctx, key, cached.AccessToken)
		}, false, nil, ""},
		{"the cached token is not written back", func() (bool, error) {
			return false, s.Put(ctx, key, cached)
		}, false, store.ErrRevoked, ""},
		{"even by a newer lease holder", func() (bool, error) {
			e := cached
			e.Fence = 99
			return false, s.Put(ctx, key, e)
		}, false, store.ErrRevoked, ""},
		{"another token is stored", func() (bool, error) {
			return false, s.Put(ctx, key, other)
		}, false, nil, other.AccessToken},
		{"a negative entry is stored", func() (bool, error) {
			now := time.Now()
			return false, s.Put(ctx, store.NegativeKey(key), store.Entry{Rejected: &store.Rejection{Status: 401}, IssuedAt: now, ExpiresAt: now.Add(time.Minute)})
		}, false, nil, ""},
	}
	for _, step := range steps {
		got, err := step.do()
		if got != step.want || !errors.Is(err, step.wantErr) {
			t.Fatalf("%s: %v, %v; want %v, %v", step.name, got, err, step.want, step.wantErr)
		}
		if step.cachedAfter == "" {
			continue
		}
		if e, err := s.Get(ctx, key); err != nil || e.AccessToken != step.cachedAfter {
			t.Fatalf("%s: Redis holds %q (%v)", step.name, e.AccessToken, err)
		}
	}

	// Each mark lasts as long as its token could still be written: the
	// deleted token's remaining life, or RevokedFallback for one Redis no
	// longer held. The set expires with its last mark.
	now, err := raw.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name         string
		token        string
		atLeast, max time.Duration
	}{
		{"deleted token", cached.AccessToken, 0, time.Minute},
		{"token Redis did not hold", elsewhere.AccessToken, redisstore.RevokedFallback - time.Minute, redisstore.RevokedFallback},
	} {
		score, err := raw.ZScore(ctx, store.RevokedKey(key), string(sealed.Digest(tc.token))).Result()
		if err != nil {
			t.Fatalf("%s: no mark: %v", tc.name, err)
		}
		left := time.UnixMilli(int64(score)).Sub(now)
		if left <= tc.atLeast || left > tc.max {
			t.Errorf("%s: marked for %v more, want in (%v, %v]", tc.name, left, tc.atLeast, tc.max)
		}
	}
	if pttl, _ := raw.PTTL(ctx, store.RevokedKey(key)).Result(); pttl <= redisstore.RevokedFallback-time.Minute || pttl > redisstore.RevokedFallback {
		t.Errorf(":revoked PTTL = %v, want the last mark's", pttl)
	}
}

func TestRevokedMarksAreBounded(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	ctx := context.Background()
	b := newBackendFrom(t, redisstore.ClientConfig{Addrs: []string{srv.Addr}, OpTimeout: patient})
	raw := rawClient(t, srv.Addr)
	_, ring := newKeyring(t)
	s := sealed.New(b, ring)
	for i := range redisstore.MaxRevoked + 10 {
		if _, err := s.CompareAndDelete(ctx, key, "random-"+strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
	if n, _ := raw.ZCard(ctx, store.RevokedKey(key)).Result(); n != redisstore.MaxRevoked {
		t.Fatalf(":revoked holds %d marks, want the bound %d", n, redisstore.MaxRevoked)
	}
}
