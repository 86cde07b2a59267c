package app

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/tokenbroker/tokenbroker/config"
	"github.com/tokenbroker/tokenbroker/secret"
)

// TestFingerprintKeyFromDecodedBytes: the same key written in any base64
// spelling (padding, URL-safe alphabet) gives the same cache keys.
func TestFingerprintKeyFromDecodedBytes(t *testing.T) {
	t.Parallel()
	raw := bytes.Repeat([]byte{0xfb, 0xff, 0x3e}, 11)[:32] // has + and / in standard base64
	spellings := []string{
		base64.StdEncoding.EncodeToString(raw),
		base64.RawStdEncoding.EncodeToString(raw),
		base64.URLEncoding.EncodeToString(raw),
		base64.RawURLEncoding.EncodeToString(raw),
	}
	var want []byte
	for _, field := range []string{"encryption_keys: [%s]", "allow_plaintext: true\n  fingerprint_key: %s"} {
		for _, s := range spellings {
			cfg := cacheConfig(t, "cache:\n  redis: {addrs: [127.0.0.1:1]}\n  "+strings.Replace(field, "%s", "'"+s+"'", 1)+"\n")
			got, err := fingerprintKey(cfg)
			if err != nil {
				t.Fatalf("%s: %v", s, err)
			}
			if want == nil {
				want = got
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s (%s) derives another fingerprint key", s, field)
			}
			if bytes.Contains(got, raw) {
				t.Error("the fingerprint key contains the key bytes")
			}
		}
	}
}

// TestFingerprintKeyRequiredWithRedis: Redis key names are never an
// unkeyed hash of credentials.
func TestFingerprintKeyRequiredWithRedis(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, cache, wantErr string
	}{
		{"plaintext without a fingerprint key", "  allow_plaintext: true\n", "cache.fingerprint_key: required with cache.redis and cache.allow_plaintext"},
		{"no keys at all", "", "cache.encryption_keys: required with cache.redis"},
		{"short fingerprint key", "  allow_plaintext: true\n  fingerprint_key: " + randomKey(16) + "\n", "cache.fingerprint_key: want base64 of at least 32 random bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := ServiceConfig(cacheConfig(t, "cache:\n  redis: {addrs: [127.0.0.1:1]}\n"+tc.cache), nil)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
			}
		})
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

// TestEncryptionKeys: cache.encryption_keys decode to a keyring in any
// base64 spelling; a key of the wrong size or not base64 is refused naming
// its index; none needs allow_plaintext.
func TestEncryptionKeys(t *testing.T) {
	t.Parallel()
	raw := bytes.Repeat([]byte{0xfb}, 32)
	tests := []struct {
		name     string
		cache    config.Cache
		wantRing bool
		wantErr  string
	}{
		{"none", config.Cache{}, false, "cache.encryption_keys: required with cache.redis"},
		{"none, plaintext allowed", config.Cache{AllowPlaintext: true}, false, ""},
		{"standard base64", keysCache(base64.StdEncoding.EncodeToString(raw)), true, ""},
		{"URL-safe, unpadded, spaces", keysCache(" " + base64.RawURLEncoding.EncodeToString(raw) + "\n"), true, ""},
		{"two keys", keysCache(randomKey(32), randomKey(32)), true, ""},
		{"16 bytes", keysCache(randomKey(32), randomKey(16)), false, "cache.encryption_keys[1]: decodes to 16 bytes"},
		{"not base64", keysCache("not base64!"), false, "cache.encryption_keys[0]: is not base64"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ring, err := encryptionKeys(tc.cache)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (ring != nil) != tc.wantRing {
				t.Fatalf("keyring %v, want one: %v", ring, tc.wantRing)
			}
		})
	}
}

func keysCache(keys ...string) config.Cache {
	c := config.Cache{}
	for _, k := range keys {
		c.EncryptionKeys = append(c.EncryptionKeys, secret.New(k))
	}
	return c
}
