package observe

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"
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
	// took is how long the handler takes.
	took time.Duration
}

func (c call) run(t *testing.T, intercept grpc.UnaryServerInterceptor) {
	t.Helper()
	info := &grpc.UnaryServerInfo{FullMethod: "/tokenbroker.v1.TokenService/GetToken"}
	_, _ = intercept(context.Background(), nil, info, func(ctx context.Context, _ any) (any, error) {
		time.Sleep(c.took)
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
			intercept := AccessLog(slog.New(slog.NewJSONHandler(&out, nil)), AccessLogOptions{Policy: NewAccessPolicy(tc.oneIn)})
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
	intercept := AccessLog(slog.New(slog.NewJSONHandler(&out, nil)), AccessLogOptions{Policy: policy})
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
	intercept = AccessLog(slog.New(slog.NewJSONHandler(&all, nil)), AccessLogOptions{})
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
	intercept := AccessLog(slog.New(slog.NewJSONHandler(&out, nil)), AccessLogOptions{Policy: NewAccessPolicy(oneIn)})
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

// recordedCalls is a CallObserver that keeps what it is given.
type recordedCalls struct {
	mu    sync.Mutex
	codes []codes.Code
	took  []time.Duration
}

func (r *recordedCalls) ObserveCall(fullMethod string, code codes.Code, elapsed time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if fullMethod != "/tokenbroker.v1.TokenService/GetToken" {
		panic("method " + fullMethod)
	}
	r.codes = append(r.codes, code)
	r.took = append(r.took, elapsed)
}

// TestAccessLogObservesEveryCall checks that the metrics see every call,
// whether its line is shed by the policy or the level, with the code the
// caller got and, when there is a line, the duration the line states.
func TestAccessLogObservesEveryCall(t *testing.T) {
	t.Parallel()
	slowMiss := call{cache: "miss", took: 3 * time.Millisecond}
	calls := []call{hit, miss, negative, failedHit, listing, slowMiss}
	want := []codes.Code{codes.OK, codes.OK, codes.FailedPrecondition, codes.DeadlineExceeded, codes.OK, codes.OK}
	tests := []struct {
		name   string
		oneIn  uint64
		level  slog.Level
		logged int
	}{
		{"every line", 1, slog.LevelInfo, 6},
		{"hits shed", 0, slog.LevelInfo, 5},
		{"level above every line", 0, slog.LevelError + 1, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var out lockedBuffer
			rec := &recordedCalls{}
			log := slog.New(slog.NewJSONHandler(&out, &slog.HandlerOptions{Level: tc.level}))
			intercept := AccessLog(log, AccessLogOptions{Policy: NewAccessPolicy(tc.oneIn), Calls: rec})
			for _, c := range calls {
				c.run(t, intercept)
			}
			if !slices.Equal(rec.codes, want) {
				t.Errorf("observed codes %v, want %v", rec.codes, want)
			}
			lines := out.lines(t)
			if len(lines) != tc.logged {
				t.Fatalf("%d lines, want %d", len(lines), tc.logged)
			}
			if tc.logged == len(calls) {
				for i, l := range lines {
					if got, want := l["duration_ms"], float64(rec.took[i].Microseconds())/1000; got != want {
						t.Errorf("call %d: line says %v ms, metrics got %v ms", i, got, want)
					}
				}
			}
			if last := rec.took[len(rec.took)-1]; last < slowMiss.took {
				t.Errorf("a call of %v observed as taking %v", slowMiss.took, last)
			}
		})
	}
}

// TestAccessLogTraceID checks that a traced call's line names its trace,
// and that with tracing off no trace_id is looked for or written.
func TestAccessLogTraceID(t *testing.T) {
	t.Parallel()
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    trace.TraceID{0x0a, 0xf7, 0x65, 0x19, 0x16, 0xcd, 0x43, 0xdd, 0x84, 0x48, 0xeb, 0x21, 0x1c, 0x80, 0x31, 0x9c},
		SpanID:     trace.SpanID{0xb7, 0xad, 0x6b, 0x71, 0x69, 0x20, 0x33, 0x31},
		TraceFlags: trace.FlagsSampled,
	})
	info := &grpc.UnaryServerInfo{FullMethod: "/tokenbroker.v1.TokenService/GetToken"}
	for _, traced := range []bool{true, false} {
		var out lockedBuffer
		intercept := AccessLog(slog.New(slog.NewJSONHandler(&out, nil)), AccessLogOptions{Traced: traced})
		ctx := trace.ContextWithSpanContext(context.Background(), sc)
		_, _ = intercept(ctx, nil, info, func(context.Context, any) (any, error) { return nil, nil })
		lines := out.lines(t)
		if len(lines) != 1 {
			t.Fatalf("traced %v: %d lines, want 1", traced, len(lines))
		}
		got, ok := lines[0]["trace_id"]
		if traced && got != "0af7651916cd43dd8448eb211c80319c" {
			t.Errorf("traced: trace_id = %v, want the call's", got)
		}
		if !traced && ok {
			t.Errorf("tracing off: trace_id = %v, want none", got)
		}
	}
}
