package config

import (
	"strings"
	"testing"
)

// TestDecodeErrorsNameTheKey: a value the decoder refuses is reported with
// its line and the whole path of its key.
func TestDecodeErrorsNameTheKey(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, yaml, want string }{
		{"unknown top-level key", "grpc_addr: x\nprofilez: {}\n", "line 2: field profilez not found in Config"},
		{"unknown nested key", "profiles:\n  p:\n    vendr: x\n", "line 3: field profiles.p.vendr not found in Profile"},
		{"duration", "service:\n  default_min_ttl: 1 minute\n", `line 2: service.default_min_ttl: "1 minute" is not a Go duration such as 5s or 1m30s`},
		{"duration in a flow list", "auth: {jwt_issuers: [{issuer: https://i, audiences: [a], discovery: true, max_token_lifetime: forever}]}\n",
			`line 1: auth.jwt_issuers[0].max_token_lifetime: "forever" is not a Go duration`},
		{"number", "service:\n  refresh_ahead: most\n", "line 2: service.refresh_ahead: cannot unmarshal !!str `most` into float64"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse([]byte(tc.yaml), nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}
