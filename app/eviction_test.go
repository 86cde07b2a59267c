package app

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/tokenbroker/tokenbroker/testkit/redistest"
)

func TestEvictingRedisRefusesToStartUnlessAllowed(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, "--maxmemory-policy", "volatile-lru")
	sim := opsSim(t)
	for _, tc := range []struct {
		name    string
		allow   string
		wantErr []string // substrings of the startup error; nil: starts
	}{
		{"refused", "", []string{"maxmemory-policy volatile-lru", "noeviction", "cache.redis.allow_eviction: true"}},
		{"allowed", "allow_eviction: true, ", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cache := strings.Replace(redisCache(srv.Addr), "redis: {", "redis: {"+tc.allow, 1)
			cfg := opsConfig(t, sim, cache)
			cfg.ShutdownDelay = 0
			a, err := New(context.Background(), Options{Config: cfg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("with allow_eviction: %v", err)
				}
				a.Close()
				return
			}
			if err == nil {
				a.Close()
				t.Fatal("started on an evicting Redis")
			}
			for _, want := range tc.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("startup error %q does not say %q", err, want)
				}
			}
		})
	}
}
