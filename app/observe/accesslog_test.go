package observe

import (
	"strings"
	"testing"
)

func TestValidRequestID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		id   string
		want bool
	}{
		{"req-123", true},
		{"0b6f1c1e-2f0c-4d0e-9a39-8d2f6c1d2e3f", true},
		{"svc:billing/42@host", true},
		{"", false},
		{"two words", false},
		{"line\nbreak", false},
		{`quote"`, false},
		{strings.Repeat("a", maxRequestIDLen), true},
		{strings.Repeat("a", maxRequestIDLen+1), false},
	}
	for _, tc := range tests {
		if got := validRequestID(tc.id); got != tc.want {
			t.Errorf("validRequestID(%q) = %v, want %v", tc.id, got, tc.want)
		}
	}
	// Generated ids are valid, carry the process's 65-bit random prefix,
	// and never repeat.
	seen := map[string]bool{}
	for range 1000 {
		id := requestID("")
		if !validRequestID(id) || !strings.HasPrefix(id, requestIDPrefix) || len(requestIDPrefix) != 14 || seen[id] {
			t.Fatalf("generated id %q (prefix %q, seen before: %v)", id, requestIDPrefix, seen[id])
		}
		seen[id] = true
	}
}
