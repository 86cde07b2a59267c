package observe

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/metadata"
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

// The id a REST caller gets back is the one its in-process call logs,
// whether it sent a usable one, none or an unusable one; the caller's
// header map is not modified, nor shared with the answer's; and only
// REST calls read the context's id.
type outerKey struct{}

func TestRequestIDsReachTheCall(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		sent []string
		want string // "": a new id
	}{
		{"usable", []string{"req-rest-1"}, "req-rest-1"},
		{"none", nil, ""},
		{"unusable", []string{"two words"}, ""},
		{"two, the first usable", []string{"a", "b"}, "a"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest(http.MethodPost, "/v1/token", nil)
			r = r.WithContext(context.WithValue(r.Context(), outerKey{}, "outer"))
			if tc.sent != nil {
				r.Header[canonicalRequestIDHeader] = slices.Clone(tc.sent)
			}
			var logged string
			var callerSent bool
			h := RequestIDs(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
				// What the gateway does: forward the caller's header as
				// metadata, in a context made from the request's.
				md := metadata.MD{}
				if v := r.Header[canonicalRequestIDHeader]; v != nil {
					md[RequestIDHeader] = v
				}
				ctx := metadata.NewIncomingContext(r.Context(), md)
				logged, callerSent = callRequestID(ctx, true)
				if v := ctx.Value(outerKey{}); v != "outer" {
					t.Errorf("the request context's own value became %v", v)
				}
				if id, _ := callRequestID(ctx, false); id == logged && tc.want == "" {
					t.Errorf("a gRPC call read the REST request's id %q from the context", id)
				}
			}))
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			returned := w.Header().Get("X-Request-Id")
			if returned != logged || !validRequestID(returned) {
				t.Errorf("returned id %q, logged %q", returned, logged)
			}
			if tc.want != "" && returned != tc.want || tc.want == "" && slices.Contains(tc.sent, returned) {
				t.Errorf("returned %q for %q, want %q", returned, tc.sent, tc.want)
			}
			if want := len(tc.sent) == 1 && returned == tc.sent[0]; callerSent != want {
				t.Errorf("caller sent it: %v, want %v", callerSent, want)
			}
			// The answer's value is its own: changing it (as a handler
			// further in may) leaves the request's alone.
			w.Header()[canonicalRequestIDHeader][0] = "changed"
			if !slices.Equal(r.Header[canonicalRequestIDHeader], tc.sent) {
				t.Errorf("the caller's header became %q, was %q", r.Header[canonicalRequestIDHeader], tc.sent)
			}
		})
	}
	if id, sent := callRequestID(context.Background(), false); !validRequestID(id) || sent {
		t.Errorf("no id sent: %q, %v", id, sent)
	}
}
