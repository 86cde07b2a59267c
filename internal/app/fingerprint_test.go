package app

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"
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

func TestRestartNeeded(t *testing.T) {
	t.Parallel()
	base := "grpc_addr: 127.0.0.1:1\nhttp_addr: 127.0.0.1:2\ncache:\n  redis: {addrs: [127.0.0.1:3]}\n  encryption_keys: [" + randomKey(32) + "]\n"
	running := cacheConfig(t, base)
	tests := []struct {
		name, yaml, want string
	}{
		{"same file", base, ""},
		{"profiles and keys are reloadable", strings.Replace(base, "encryption_keys: [", "encryption_keys: ["+randomKey(32)+", ", 1) + "profiles: {p: {vendor: smartdocumentor}}\n", ""},
		{"listener", strings.Replace(base, "127.0.0.1:1", "127.0.0.1:9", 1), "grpc_addr changed"},
		{"redis", strings.Replace(base, "127.0.0.1:3", "127.0.0.1:4", 1), "cache.redis changed"},
		{"tls paths", base + "tls: {cert_file: a, key_file: b}\n", "tls.cert_file changed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := restartNeeded(running, cacheConfig(t, tc.yaml))
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}
