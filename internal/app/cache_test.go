package app

import (
	"bytes"
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
	"github.com/tokenbroker/tokenbroker/internal/testing/redistest"
	"github.com/tokenbroker/tokenbroker/store"
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
		{"cluster with a db", "cache:\n  redis: {addrs: [" + addr + ", " + addr + "], db: 2}\n  encryption_keys: [" + randomKey(32) + "]\n", "cache.redis.db"},
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

// TestServiceTuning: service.* durations reach the service; an explicit
// 0s is kept apart from "unset" (the default).
func TestServiceTuning(t *testing.T) {
	t.Parallel()
	tests := []struct {
		yaml              string
		wantMinTTL, wantF time.Duration
		wantErr           string
	}{
		{yaml: "", wantMinTTL: 0, wantF: 0},
		{yaml: "service: {default_min_ttl: 2m, force_refresh_interval: 1s}\n", wantMinTTL: 2 * time.Minute, wantF: time.Second},
		{yaml: "service: {default_min_ttl: 0s, force_refresh_interval: 0s}\n", wantMinTTL: -1, wantF: -1},
		{yaml: "service: {default_min_ttl: 25h}\n", wantErr: "service.default_min_ttl: 25h0m0s is more than 24h0m0s"},
		{yaml: "service: {default_min_ttl: soon}\n", wantErr: "service.default_min_ttl"},
	}
	for _, tc := range tests {
		sc, err := ServiceConfig(cacheConfig(t, tc.yaml), vendors.Default())
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: err = %v, want %q", tc.yaml, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%q: %v", tc.yaml, err)
		}
		if sc.DefaultMinTTL != tc.wantMinTTL || sc.ForceRefreshInterval != tc.wantF {
			t.Errorf("%q: default_min_ttl %v, force_refresh_interval %v; want %v, %v", tc.yaml, sc.DefaultMinTTL, sc.ForceRefreshInterval, tc.wantMinTTL, tc.wantF)
		}
	}
}

// TestFingerprintKeySurvivesRotation: replicas with [old] and with
// [new, old] derive the same cache keys (they share entries and locks
// during a rolling rotation); dropping old moves to new keys.
func TestFingerprintKeySurvivesRotation(t *testing.T) {
	t.Parallel()
	oldKey, newKey := randomKey(32), randomKey(32)
	key := func(keys ...string) []byte {
		cfg := cacheConfig(t, "cache:\n  redis: {addrs: [127.0.0.1:1]}\n  encryption_keys: ["+strings.Join(keys, ", ")+"]\n")
		k, err := fingerprintKey(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	before, during, after := key(oldKey), key(newKey, oldKey), key(newKey)
	if !bytes.Equal(before, during) {
		t.Error("adding a new first key changed the cache keys")
	}
	if bytes.Equal(during, after) {
		t.Error("dropping the old key kept cache keys derived from it")
	}
}

// TestProfileNamesAreTheVendors: a profile's credential and param names
// are checked by the vendor's own check, field path included.
func TestProfileNamesAreTheVendors(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, profile, wantErr string }{
		{"credential", "{vendor: smartdocumentor, credentials: {client_id: a, client_secert: b}}",
			"profiles.p.credentials.client_secert: is not a credential of vendor smartdocumentor"},
		{"param", "{vendor: smartdocumentor, credentials: {client_id: a}, params: {regoin: eu}}",
			"profiles.p.params.regoin: is not a parameter of vendor smartdocumentor"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := ServiceConfig(cacheConfig(t, "profiles:\n  p: "+tc.profile+"\n"), vendors.Default())
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// TestProfileAllowParams: allow_params names the vendor's params, never
// one the profile fixes, and a param that chooses where the request goes
// only with the values it may take.
func TestProfileAllowParams(t *testing.T) {
	t.Parallel()
	const hotdocs = "{vendor: hotdocs_advance, credentials: {client_name: c, principal_name: p, principal_password: x}"
	const oauth = "{vendor: oauth2, settings: {token_url: 'https://idp.example/token'}, credentials: {client_id: a, client_secret: b}"
	const oauthTemplated = "{vendor: oauth2, settings: {token_url: 'https://idp.example/{scope}/token'}, credentials: {client_id: a, client_secret: b}"
	tests := []struct{ name, profile, wantErr string }{
		{"scope, any value", oauth + ", allow_params: [scope]}", ""},
		{"scope, listed values", oauth + ", allow_params: {scope: [read, 'read write']}}", ""},
		{"scope, null is any value", oauth + ", allow_params: {scope: null}}", ""},
		{"not a param", oauth + ", allow_params: [audience]}", "profiles.p.allow_params.audience: not a parameter of vendor oauth2"},
		{"fixed by the profile", oauth + ", params: {scope: read}, allow_params: [scope]}", "profiles.p.allow_params.scope: the profile fixes this param"},
		{"tenancy, any value", hotdocs + ", allow_params: [tenancy]}", "profiles.p.allow_params.tenancy: this param chooses where the vendor request"},
		{"tenancy, listed", hotdocs + ", allow_params: {tenancy: [acme, acme-test]}}", ""},
		{"a param in the operator's URL, any value", oauthTemplated + ", allow_params: [scope]}", "profiles.p.allow_params.scope: this param chooses where"},
		{"abbyy region, any value", "{vendor: abbyy_vantage, credentials: {client_id: a, client_secret: b, username: u, password: p}, allow_params: [region]}", "allow_params.region: this param chooses where"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := ServiceConfig(cacheConfig(t, "profiles:\n  p: "+tc.profile+"\n"), vendors.Default())
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}
