package app

import (
	"strings"
	"testing"

	"github.com/tokenbroker/tokenbroker/vendors"
)

// TestKeepWarmMax: service.keep_warm_max bounds the keep_warm profiles
// when the configuration loads.
func TestKeepWarmMax(t *testing.T) {
	t.Parallel()
	profile := func(name string, warm bool) string {
		w := "false"
		if warm {
			w = "true"
		}
		return "  " + name + ": {vendor: smartdocumentor, credentials: {client_id: a, client_secret: b}, keep_warm: " + w + "}\n"
	}
	tests := []struct {
		name, yaml, wantErr string
	}{
		{"within the default", "profiles:\n" + profile("a", true) + profile("b", true), ""},
		{"at the limit", "service: {keep_warm_max: 1}\nprofiles:\n" + profile("a", true) + profile("b", false), ""},
		{"over the limit", "service: {keep_warm_max: 1}\nprofiles:\n" + profile("a", true) + profile("b", true),
			"profiles: 2 profiles have keep_warm, more than service.keep_warm_max (1)"},
		{"negative", "service: {keep_warm_max: -1}\n", "service.keep_warm_max: -1 is negative"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sc, err := ServiceConfig(cacheConfig(t, tc.yaml), vendors.Default())
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if p, ok := sc.Profiles["a"]; ok && !p.KeepWarm {
					t.Fatal("keep_warm did not reach the service's profile")
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}
