package app

import (
	"strings"
	"testing"
)

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
