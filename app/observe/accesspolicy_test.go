package observe

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tokenbroker/tokenbroker/internal/reqinfo"
)

// lockedBuffer collects log lines from concurrent calls.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lines decodes every JSON line written so far.
func (b *lockedBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.buf.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

// call is one RPC as the service would end it: its cache outcome and its
// error.
type call struct {
	cache string
	err   error
}

func (c call) run(t *testing.T, intercept grpc.UnaryServerInterceptor) {
	t.Helper()
	info := &grpc.UnaryServerInfo{FullMethod: "/tokenbroker.v1.TokenService/GetToken"}
	_, _ = intercept(context.Background(), nil, info, func(ctx context.Context, _ any) (any, error) {
		if c.cache != "" {
			reqinfo.SetCache(ctx, c.cache)
		}
		return nil, c.err
	})
}

var (
	hit      = call{cache: "hit"}
	miss     = call{cache: "miss"}
	negative = call{cache: "negative", err: status.Error(codes.FailedPrecondition, "rejected")}
	// A hit whose call failed afterwards (the caller's deadline, say) is
	// an error, and errors are always logged.
	failedHit = call{cache: "hit", err: status.Error(codes.DeadlineExceeded, "deadline")}
	listing   = call{}
)

func TestAccessPolicy(t *testing.T) {
	t.Parallel()
	calls := []call{hit, hit, miss, hit, negative, hit, failedHit, hit, listing, hit, hit, hit}
	// 8 successful hits among 12 calls; the other 4 are always logged.
	tests := []struct {
		name  string
		oneIn uint64
		// wantHits is how many of the 8 hits get a line.
		wantHits        int
		wantSampledAttr bool
	}{
		{name: "all (the default)", oneIn: 1, wantHits: 8},
		{name: "none", oneIn: 0, wantHits: 0},
		{name: "one in three: the 1st, 4th and 7th", oneIn: 3, wantHits: 3, wantSampledAttr: true},
		{name: "one in a hundred: the first", oneIn: 100, wantHits: 1, wantSampledAttr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var out lockedBuffer
			intercept := AccessLog(slog.New(slog.NewJSONHandler(&out, nil)), NewAccessPolicy(tc.oneIn), nil)
			for _, c := range calls {
				c.run(t, intercept)
			}
			var hits, others int
			for _, l := range out.lines(t) {
				if l["msg"] != "request" {
					t.Fatalf("unexpected line %v", l)
				}
				if l["cache"] == "hit" && l["code"] == "OK" {
					hits++
					sampled, ok := l["sampled_one_in"]
					if ok != tc.wantSampledAttr || (ok && sampled != float64(tc.oneIn)) {
						t.Errorf("hit line sampled_one_in = %v (present %v), want present %v with %d", sampled, ok, tc.wantSampledAttr, tc.oneIn)
					}
					continue
				}
				if _, ok := l["sampled_one_in"]; ok {
					t.Errorf("a line that is always logged says it was sampled: %v", l)
				}
				others++
			}
			if hits != tc.wantHits {
				t.Errorf("%d successful hits logged, want %d", hits, tc.wantHits)
			}
			if others != 4 {
				t.Errorf("%d misses, errors and other calls logged, want all 4", others)
			}
		})
	}
}

// TestAccessPolicySet checks that a reload's new policy applies to the next
// calls, and that a nil policy logs every call.
func TestAccessPolicySet(t *testing.T) {
	t.Parallel()
	var out lockedBuffer
	policy := NewAccessPolicy(0)
	intercept := AccessLog(slog.New(slog.NewJSONHandler(&out, nil)), policy, nil)
	hit.run(t, intercept)
	if n := len(out.lines(t)); n != 0 {
		t.Fatalf("policy none: %d lines, want 0", n)
	}
	policy.Set(1)
	hit.run(t, intercept)
	if n := len(out.lines(t)); n != 1 {
		t.Fatalf("after Set(1): %d lines, want 1", n)
	}

	var all lockedBuffer
	intercept = AccessLog(slog.New(slog.NewJSONHandler(&all, nil)), nil, nil)
	hit.run(t, intercept)
	hit.run(t, intercept)
	if n := len(all.lines(t)); n != 2 {
		t.Fatalf("nil policy: %d lines, want 2", n)
	}
}

// TestAccessPolicySampledConcurrently checks that one in N holds exactly
// under concurrent calls: the counter is shared, not per goroutine.
func TestAccessPolicySampledConcurrently(t *testing.T) {
	t.Parallel()
	const goroutines, each, oneIn = 8, 250, 10
	var out lockedBuffer
	intercept := AccessLog(slog.New(slog.NewJSONHandler(&out, nil)), NewAccessPolicy(oneIn), nil)
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for range each {
				hit.run(t, intercept)
			}
		})
	}
	wg.Wait()
	if got, want := len(out.lines(t)), goroutines*each/oneIn; got != want {
		t.Fatalf("%d lines for %d hits sampled one in %d, want %d", got, goroutines*each, oneIn, want)
	}
}
