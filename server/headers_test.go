package server

import "testing"

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
	}
	for _, tc := range tests {
		got, ok := m.match(tc.key)
		if got != tc.want || ok != tc.wantOK {
			t.Errorf("%s: match(%q) = %q, %v; want %q, %v", tc.whatThis, tc.key, got, ok, tc.want, tc.wantOK)
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
