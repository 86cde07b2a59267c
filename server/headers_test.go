package server

import (
	"strings"
	"testing"
)

// lowerCasedMatch is the matcher headerMatcher replaced: a key is
// forwarded when its lower-case form is a forwarded name.
func lowerCasedMatch(names []string, key string) (string, bool) {
	for _, n := range names {
		if strings.ToLower(key) == n {
			return n, true
		}
	}
	return "", false
}

// FuzzHeaderMatcher: the matcher answers as the one it replaced, for any
// key.
func FuzzHeaderMatcher(f *testing.F) {
	names := []string{"X-Request-Id", "traceparent", "baggage"}
	m := newHeaderMatcher(names)
	for _, k := range []string{"X-Request-Id", "x-request-id", "Content-Type", "X-Request-\u0130d", "X-Reque\u017ft-Id", "\xff", ""} {
		f.Add(k)
	}
	f.Fuzz(func(t *testing.T, key string) {
		got, ok := m.match(key)
		want, wantOK := lowerCasedMatch(m.names, key)
		if got != want || ok != wantOK {
			t.Fatalf("match(%q) = %q, %v; the lower-casing matcher says %q, %v", key, got, ok, want, wantOK)
		}
	})
}

func TestHeaderMatcher(t *testing.T) {
	m := newHeaderMatcher([]string{"X-Request-Id", "traceparent", "X-Forwarded-Client-Cert", "x-request-id"})
	tests := []struct {
		key      string
		want     string
		wantOK   bool
		whatThis string
	}{
		{"X-Request-Id", "x-request-id", true, "canonical, configured canonical"},
		{"Traceparent", "traceparent", true, "canonical, configured lower-case"},
		{"X-Forwarded-Client-Cert", "x-forwarded-client-cert", true, "canonical"},
		{"x-request-id", "x-request-id", true, "lower-case"},
		{"X-REQUEST-ID", "x-request-id", true, "upper-case"},
		{"tRaCePaReNt", "traceparent", true, "mixed case"},
		{"Content-Type", "", false, "not forwarded"},
		{"Authorization", "", false, "the gateway forwards it itself"},
		{"X-Request-Id-Extra", "", false, "a forwarded name's prefix"},
		{"X-Request", "", false, "a forwarded name's prefix, shorter"},
		{"", "", false, "empty"},
		{"X_Request_Id", "", false, "underscores"},
		{"X-Reque\u017ft-Id", "", false, "long s, which Unicode folding equates with s"},
		{"X-Request-\u0130d", "x-request-id", true, "dotted capital I, which strings.ToLower makes i"},
	}
	for _, tc := range tests {
		got, ok := m.match(tc.key)
		if got != tc.want || ok != tc.wantOK {
			t.Errorf("%s: match(%q) = %q, %v; want %q, %v", tc.whatThis, tc.key, got, ok, tc.want, tc.wantOK)
		}
		if rgot, rok := lowerCasedMatch(m.names, tc.key); got != rgot || ok != rok {
			t.Errorf("%s: match(%q) = %q, %v; the lower-casing matcher it replaced says %q, %v", tc.whatThis, tc.key, got, ok, rgot, rok)
		}
	}
	if len(m.names) != 3 {
		t.Errorf("names %q: a header configured twice is kept once", m.names)
	}
}

// The gateway asks about every header of every request.
func TestHeaderMatcherAllocatesNothing(t *testing.T) {
	m := newHeaderMatcher([]string{"X-Request-Id", "traceparent"})
	allocs := testing.AllocsPerRun(100, func() {
		for _, k := range []string{"Content-Type", "User-Agent", "X-Request-Id", "Traceparent", "x-request-id"} {
			m.match(k)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per request's headers, want 0", allocs)
	}
}
