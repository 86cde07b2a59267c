package test

import (
	"bytes"
	"context"
	"encoding/base64"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokenbroker/tokenbroker/app"
	"github.com/tokenbroker/tokenbroker/config"
	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
	"github.com/tokenbroker/tokenbroker/store/sealed"
	"github.com/tokenbroker/tokenbroker/testkit/brokertest"
	"github.com/tokenbroker/tokenbroker/testkit/redistest"
)

// TestEncryptionKeysFollowTheReload runs the documented rotation of
// cache.encryption_keys with reloads only: [old], then [new, old] (new
// values sealed with new, same cache keys), then [new] (the cache moves
// to keys derived from new).
func TestEncryptionKeysFollowTheReload(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	sim := brokertest.StartSim(t)
	oldKey, newKey := cacheKey(), cacheKey()
	path := filepath.Join(t.TempDir(), "tokenbroker.yaml")
	noEnv := func(string) (string, bool) { return "", false }
	write := func(keys ...string) {
		t.Helper()
		yaml := strings.ReplaceAll(`grpc_addr: 127.0.0.1:0
http_addr: 127.0.0.1:0
shutdown_delay: 0s
service: {force_refresh_interval: 0s}
vendors:
  oauth2:
    token_url: {sim}/oauth2/token
`, "{sim}", sim.URL()) + redisCacheYAML(strings.Join(keys, ", "), srv.Addr) + oauthProfile
		if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(oldKey)
	cfg, err := config.Load(path, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	b := brokertest.StartBrokerWith(t, sim, app.Options{Config: cfg, Logger: slog.New(slog.DiscardHandler), Load: func() (*config.Config, error) { return config.Load(path, noEnv) }})
	raw := rawRedis(t, srv.Addr)
	fetch := func() {
		t.Helper()
		if _, err := b.Client.GetToken(ctxT(t), &tokenbrokerv1.GetTokenRequest{Profile: "acme-oauth", ForceRefresh: true}); err != nil {
			t.Fatal(err)
		}
	}
	// sealedWith is the key id of the value under redisKey.
	sealedWith := func(redisKey string) []byte {
		t.Helper()
		v, err := raw.Get(context.Background(), redisKey).Bytes()
		if err != nil {
			t.Fatal(err)
		}
		return v[33:37]
	}
	keyID := func(b64 string) []byte {
		k, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			t.Fatal(err)
		}
		id := sealed.KeyID(k)
		return id[:]
	}
	reload := func(keys ...string) {
		t.Helper()
		write(keys...)
		if err := b.App.Reload("test"); err != nil {
			t.Fatal(err)
		}
	}

	fetch()
	first := onlyTokenKey(t, raw)
	if !bytes.Equal(sealedWith(first), keyID(oldKey)) {
		t.Fatal("not sealed with the only key")
	}

	reload(newKey, oldKey)
	fetch()
	if got := onlyTokenKey(t, raw); got != first {
		t.Fatalf("adding a key moved the cache: %s -> %s", first, got)
	}
	if !bytes.Equal(sealedWith(first), keyID(newKey)) {
		t.Fatal("after the reload the new first key does not seal")
	}

	reload(newKey)
	fetch()
	keys := tokenKeys(t, raw)
	if len(keys) != 2 {
		t.Fatalf("token keys after dropping the old key: %v, want the old entry and one under a new name", keys)
	}
	for _, k := range keys {
		if k != first && !bytes.Equal(sealedWith(k), keyID(newKey)) {
			t.Fatal("the new entry is not sealed with the new key")
		}
	}
}
