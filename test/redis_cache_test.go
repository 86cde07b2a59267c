package test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokenbroker/tokenbroker/app"
	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
	"github.com/tokenbroker/tokenbroker/store"
	"github.com/tokenbroker/tokenbroker/testkit/brokertest"
	"github.com/tokenbroker/tokenbroker/testkit/redistest"
)

// cacheKey returns a new base64 encryption key.
func cacheKey() string {
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	return base64.StdEncoding.EncodeToString(k)
}

// redisCacheYAML configures the shared cache on addrs.
func redisCacheYAML(encKey string, addrs ...string) string {
	y := "cache:\n  redis:\n    addrs: [" + strings.Join(addrs, ", ") + "]\n"
	if encKey != "" {
		y += "  encryption_keys: [" + encKey + "]\n"
	}
	return y
}

// onlyTokenKey is the one token key in a standalone Redis; anything else
// fails the test.
func onlyTokenKey(t *testing.T, c redis.UniversalClient) string {
	t.Helper()
	keys := tokenKeys(t, c)
	if len(keys) != 1 {
		t.Fatalf("token keys in Redis: %v", keys)
	}
	return keys[0]
}

// tokenKeys lists the token keys in a standalone Redis.
func tokenKeys(t *testing.T, c redis.UniversalClient) []string {
	t.Helper()
	keys, err := c.Keys(context.Background(), store.TokenKeyPattern).Result()
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

func rawRedis(t *testing.T, addrs ...string) redis.UniversalClient {
	t.Helper()
	c := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: addrs})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

const oauthProfile = `
profiles:
  acme-oauth:
    vendor: oauth2
    credentials: {client_id: demo-client, client_secret: demo-secret, username: demo-user, password: demo-password}
    settings: {grant_type: password}
`

// TestRedisValueIsSealed looks at what the broker leaves in Redis: with an
// encryption key, nothing readable (the same check against allow_plaintext
// shows that it would see a clear token).
func TestRedisValueIsSealed(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		encKey    string
		extra     string
		wantClear bool
	}{
		{"sealed", cacheKey(), "", false},
		{"allow_plaintext", "", "  allow_plaintext: true\n  fingerprint_key: " + cacheKey() + "\n", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := redistest.Start(t)
			sim := brokertest.StartSim(t)
			b := brokertest.StartBroker(t, sim, brokertest.SimConfig(t, sim, redisCacheYAML(tc.encKey, srv.Addr)+tc.extra+oauthProfile))
			resp, err := b.Client.GetToken(ctxT(t), &tokenbrokerv1.GetTokenRequest{Profile: "acme-oauth"})
			if err != nil {
				t.Fatal(err)
			}
			raw := rawRedis(t, srv.Addr)
			value, err := raw.Get(context.Background(), onlyTokenKey(t, raw)).Bytes()
			if err != nil {
				t.Fatal(err)
			}
			// The oauth2 password grant returns a refresh token; the entry
			// keeps it (JSON member "r") beside the access token.
			clear := map[string][]byte{
				"access token":           []byte(resp.AccessToken),
				"refresh token member":   []byte(`"r":"`),
				"client secret":          []byte("demo-secret"),
				"password":               []byte("demo-password"),
				"encryption key":         []byte(tc.encKey),
				"decoded encryption key": mustBase64(t, tc.encKey),
			}
			for name, s := range clear {
				if len(s) == 0 {
					continue
				}
				found := bytes.Contains(value, s)
				if wantClear := tc.wantClear && (name == "access token" || name == "refresh token member"); found != wantClear {
					t.Errorf("Redis value contains the %s: %v, want %v", name, found, wantClear)
				}
			}
		})
	}
}

func mustBase64(t *testing.T, s string) []byte {
	t.Helper()
	if s == "" {
		return nil
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRedisTTLIsTokenLifetime: the key's PTTL matches expires_in.
func TestRedisTTLIsTokenLifetime(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	sim := brokertest.StartSim(t)
	sim.SetTokenTTL("smartdocumentor", 90*time.Second)
	b := brokertest.StartBroker(t, sim, brokertest.SimConfig(t, sim, redisCacheYAML(cacheKey(), srv.Addr)+sdProfile))
	resp, err := b.Client.GetToken(ctxT(t), &tokenbrokerv1.GetTokenRequest{Profile: "acme-sd"})
	if err != nil {
		t.Fatal(err)
	}
	raw := rawRedis(t, srv.Addr)
	pttl, err := raw.PTTL(context.Background(), onlyTokenKey(t, raw)).Result()
	if err != nil {
		t.Fatal(err)
	}
	want := time.Duration(resp.ExpiresIn) * time.Second
	if diff := pttl - want; diff < -time.Second || diff > time.Second {
		t.Fatalf("PTTL = %v, expires_in = %ds", pttl, resp.ExpiresIn)
	}
	t.Logf("expires_in %ds, PTTL %v", resp.ExpiresIn, pttl)
}

// TestRedisWithoutKeyRefusesToStart: Redis and no encryption key is a
// startup error that says what to do, unless allow_plaintext.
func TestRedisWithoutKeyRefusesToStart(t *testing.T) {
	t.Parallel()
	sim := brokertest.StartSim(t)
	cfg := brokertest.SimConfig(t, sim, redisCacheYAML("", "127.0.0.1:1"))
	_, err := app.New(context.Background(), app.Options{Config: cfg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err == nil || !strings.Contains(err.Error(), "cache.encryption_keys") || !strings.Contains(err.Error(), "allow_plaintext") {
		t.Fatalf("err = %v", err)
	}
}
