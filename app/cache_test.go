package app

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/config"
	"github.com/tokenbroker/tokenbroker/store"
	"github.com/tokenbroker/tokenbroker/testkit/redistest"
	"github.com/tokenbroker/tokenbroker/vendors"
)

func cacheConfig(t *testing.T, yaml string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(yaml), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func randomKey(n int) string {
	k := make([]byte, n)
	_, _ = rand.Read(k)
	return base64.StdEncoding.EncodeToString(k)
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestRedisCacheConfigErrors(t *testing.T) {
	t.Parallel()
	// Nothing listens here: configuration errors come before any dial.
	port, err := redistest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	tests := []struct {
		name, cache, wantErr string
	}{
		{"no key", "cache:\n  redis: {addrs: [" + addr + "]}\n", "cache.encryption_keys: required with cache.redis"},
		{"short key", "cache:\n  redis: {addrs: [" + addr + "]}\n  encryption_keys: [" + randomKey(32) + ", " + randomKey(16) + "]\n", "cache.encryption_keys[1]: decodes to 16 bytes"},
		{"not base64", "cache:\n  redis: {addrs: [" + addr + "]}\n  encryption_keys: ['not base64!']\n", "cache.encryption_keys[0]: is not base64"},
		{"same key twice", "cache:\n  redis: {addrs: [" + addr + "]}\n  encryption_keys: [" + strings.Repeat(randomKey(32)+", ", 2) + "]\n", "same key"},
		{"CA file missing", "cache:\n  redis: {addrs: [" + addr + "], tls: true, tls_ca_file: /nonexistent/ca.pem}\n  encryption_keys: [" + randomKey(32) + "]\n", "cache.redis.tls_ca_file: open /nonexistent/ca.pem"},
		{"CA file without a certificate", "cache:\n  redis: {addrs: [" + addr + "], tls: true, tls_ca_file: " + notPEM(t) + "}\n  encryption_keys: [" + randomKey(32) + "]\n", "no PEM certificate"},
		{"plaintext allowed", "cache:\n  redis: {addrs: [" + addr + "]}\n  allow_plaintext: true\n  fingerprint_key: " + randomKey(32) + "\n", ""},
		{"sealed", "cache:\n  redis: {addrs: [" + addr + "]}\n  encryption_keys: [" + randomKey(32) + "]\n", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st, _, closeStore, err := buildStore(context.Background(), cacheConfig(t, tc.cache), quiet)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				closeStore()
				if st == nil {
					t.Fatal("no store")
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

// notPEM is a file that holds no certificate.
func notPEM(t *testing.T) string {
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(path, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestRedisOverTLS: cache.redis.tls with tls_ca_file reaches a TLS-only
// Redis whose certificate a private CA signed.
func TestRedisOverTLS(t *testing.T) {
	t.Parallel()
	srv, caFile := redistest.StartTLS(t)
	// Without L1, every Put and Get goes to Redis and reports its errors.
	cfg := cacheConfig(t, "cache:\n  redis: {addrs: ["+srv.Addr+"], tls: true, tls_ca_file: "+caFile+"}\n  encryption_keys: ["+randomKey(32)+"]\n  l1_disabled: true\n")
	st, _, closeStore, err := buildStore(context.Background(), cfg, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer closeStore()
	putGet(t, st)
}

// putGet stores a fresh token under a fresh key and reads it back; it
// returns the key.
func putGet(t *testing.T, st store.Store) string {
	t.Helper()
	ctx := context.Background()
	key := store.TokenKey(rand.Text())
	now := time.Now()
	e := store.Entry{AccessToken: rand.Text(), IssuedAt: now, ExpiresAt: now.Add(time.Minute), FetchedAt: now}
	if err := st.Put(ctx, key, e); err != nil {
		t.Fatal(err)
	}
	if got, err := st.Get(ctx, key); err != nil || got.AccessToken != e.AccessToken {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	return key
}

func TestRedisCacheStack(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	for _, l1 := range []bool{true, false} {
		t.Run("l1="+strconv.FormatBool(l1), func(t *testing.T) {
			cfg := cacheConfig(t, "cache:\n  redis: {addrs: ["+srv.Addr+"]}\n  encryption_keys: ["+randomKey(32)+"]\n  l1_disabled: "+strconv.FormatBool(!l1)+"\n")
			st, leases, closeStore, err := buildStore(context.Background(), cfg, quiet)
			if err != nil {
				t.Fatal(err)
			}
			defer closeStore()
			ctx := context.Background()
			key := putGet(t, st)
			lease, err := leases.TryLease(ctx, key)
			if err != nil || lease == nil {
				t.Fatalf("TryLease = %v, %v", lease, err)
			}
			lease.Release()
			stats := st.(interface{ CacheStats() CacheStats }).CacheStats()
			if l1 && stats.L1.Hits != 1 {
				t.Fatalf("stats = %+v", stats)
			}
			if stats.Redis.BreakerOpen {
				t.Fatalf("stats = %+v", stats)
			}
		})
	}
}

// TestServiceTuning: the service gets service.* and limits.* as config
// made them, defaults included, and an explicit 0s as 0s (config checks
// the ranges: config.TestRanges).
func TestServiceTuning(t *testing.T) {
	t.Parallel()
	tests := []struct {
		yaml              string
		wantMinTTL, wantF time.Duration
		wantAhead         float64
	}{
		{yaml: "", wantMinTTL: config.DefaultMinTTL, wantF: config.DefaultForceRefreshInterval, wantAhead: config.DefaultRefreshAhead},
		{yaml: "service: {default_min_ttl: 2m, force_refresh_interval: 1s, refresh_ahead: 1}\n", wantMinTTL: 2 * time.Minute, wantF: time.Second, wantAhead: 1},
		{yaml: "service: {default_min_ttl: 0s, force_refresh_interval: 0s}\n", wantMinTTL: 0, wantF: 0, wantAhead: config.DefaultRefreshAhead},
	}
	for _, tc := range tests {
		sc, err := ServiceConfig(cacheConfig(t, tc.yaml), vendors.Default())
		if err != nil {
			t.Fatalf("%q: %v", tc.yaml, err)
		}
		if sc.DefaultMinTTL != tc.wantMinTTL || sc.ForceRefreshInterval != tc.wantF || sc.RefreshAhead != tc.wantAhead {
			t.Errorf("%q: default_min_ttl %v, force_refresh_interval %v, refresh_ahead %v; want %v, %v, %v",
				tc.yaml, sc.DefaultMinTTL, sc.ForceRefreshInterval, sc.RefreshAhead, tc.wantMinTTL, tc.wantF, tc.wantAhead)
		}
	}
	sc, err := ServiceConfig(cacheConfig(t, "profiles:\n  a: {vendor: smartdocumentor, credentials: {client_id: a, client_secret: b}, keep_warm: true}\n"), vendors.Default())
	if err != nil {
		t.Fatal(err)
	}
	if !sc.Profiles["a"].KeepWarm {
		t.Error("keep_warm did not reach the service's profile")
	}
}
