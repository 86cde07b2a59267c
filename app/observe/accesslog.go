// Package observe is how tokenbroker is watched from outside
// (docs/design.md, Operations): request ids and the access log, OpenTelemetry
// tracing, and the health endpoints. app wires them into the
// server; nothing here knows the service or the store's internals.
package observe

import (
	"context"
	"crypto/rand"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/tokenbroker/tokenbroker/internal/logbuf"
	"github.com/tokenbroker/tokenbroker/internal/reqinfo"
)

// RequestIDHeader carries the request id: gRPC metadata key and HTTP
// header (the gateway forwards it as metadata).
const RequestIDHeader = "x-request-id"

// maxRequestIDLen bounds a caller's request id; a longer one is replaced.
const maxRequestIDLen = 128

// requestID returns the caller's id if it is usable, else a new one. A
// usable id is short and made of characters that need no escaping in logs
// or headers, so a caller cannot forge log lines or bloat them.
func requestID(fromCaller string) string {
	if validRequestID(fromCaller) {
		return fromCaller
	}
	return newRequestID()
}

// New request ids are a random prefix chosen at start (65 bits: unique
// across replicas and restarts) and a counter. An id identifies a call in
// the logs and grants nothing, so it need not be unpredictable, and a
// counter costs the hot path a fraction of 128 fresh random bits per call.
var (
	requestIDPrefix = rand.Text()[:13] + "-"
	requestIDSeq    atomic.Uint64
)

// newRequestID is built in one allocation: the prefix and the counter
// in base 36 fit the buffer.
func newRequestID() string {
	var buf [32]byte
	b := append(buf[:0], requestIDPrefix...)
	return string(strconv.AppendUint(b, requestIDSeq.Add(1), 36))
}

func validRequestID(s string) bool {
	if s == "" || len(s) > maxRequestIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("-_.:/+=@", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// RequestIDs gives every HTTP request an id (the caller's X-Request-Id when
// usable) and returns it in the response's X-Request-Id. The gateway's
// in-process calls carry it to the access log: a caller's usable id as
// the x-request-id metadata the gateway forwards (ForwardHeaders), any
// other (new, or replacing an unusable one) in the request's context,
// which AccessLog reads for the gateway's calls only, and before the
// metadata. The caller's request and its header map are left as they are:
// copying the map for a new id cost more than the rest of this middleware.
func RequestIDs(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sent := r.Header[canonicalRequestIDHeader]
		id := requestID(firstOrEmpty(sent))
		// The answer's header value is a slice of its own, not the
		// request's: in the context's allocation when there is one. A
		// direct map write with the canonical key: Header.Set would
		// canonicalise (and allocate) the key on every request.
		var value []string
		if len(sent) == 1 && sent[0] == id {
			value = []string{id}
		} else {
			c := &requestIDCtx{Context: r.Context(), id: id}
			c.header[0] = id
			value = c.header[:]
			r = r.WithContext(c)
		}
		w.Header()[canonicalRequestIDHeader] = value
		next.ServeHTTP(w, r)
	})
}

// httpRequestIDKey is the context key of the id RequestIDs chose for an
// HTTP request when it is not the caller's. Only this process sets
// context values, so no caller can set one.
type httpRequestIDKey struct{}

// requestIDCtx carries that id: one allocation, where context.WithValue
// takes two (the context, and the string boxed as a value).
type requestIDCtx struct {
	context.Context
	id     string
	header [1]string // the answer's X-Request-Id value, in the same allocation
}

// Value is c itself for httpRequestIDKey (returning the id would box it
// again on every lookup), the parent's value for any other key.
func (c *requestIDCtx) Value(key any) any {
	if _, ok := key.(httpRequestIDKey); ok {
		return c
	}
	return c.Context.Value(key)
}

// canonicalRequestIDHeader is RequestIDHeader as net/http keys it.
var canonicalRequestIDHeader = http.CanonicalHeaderKey(RequestIDHeader)

func firstOrEmpty(vals []string) string {
	if len(vals) == 0 {
		return ""
	}
	return vals[0]
}

// AccessPolicy decides which successful cache hits get an access line
// (docs/design.md, Operations, "Access log policy"): all of them (the
// default), one in N, or none. Every other call (a miss, an error, a
// ListVendors, a health check at debug) is always logged, and
// authorization decisions are audit lines of their own (package auth),
// whatever the policy. Safe for concurrent use; Set applies a reload.
type AccessPolicy struct {
	// oneIn is 1 for every hit, 0 for none, N for one in N.
	oneIn atomic.Uint64
	// hits counts the successful cache hits seen while sampling.
	hits atomic.Uint64
}

// NewAccessPolicy returns a policy that logs one successful cache hit in
// oneIn (1: all, 0: none).
func NewAccessPolicy(oneIn uint64) *AccessPolicy {
	p := &AccessPolicy{}
	p.Set(oneIn)
	return p
}

// Set changes the policy for the calls that end from now on.
func (p *AccessPolicy) Set(oneIn uint64) { p.oneIn.Store(oneIn) }

// logHit reports whether this successful cache hit gets its line, and the
// sampling rate the line states (0 when every hit is logged). A nil policy
// logs every hit. Sampling is a shared counter rather than a random draw:
// exactly one line per N hits, the first of them included, so a quiet
// broker's first hit is always seen.
func (p *AccessPolicy) logHit() (log bool, sampledOneIn uint64) {
	if p == nil {
		return true, 0
	}
	switch n := p.oneIn.Load(); n {
	case 0:
		return false, 0
	case 1:
		return true, 0
	default:
		return (p.hits.Add(1)-1)%n == 0, n
	}
}

// CallObserver records each finished call's code and duration (package
// metrics' Metrics does).
type CallObserver interface {
	ObserveCall(fullMethod string, code codes.Code, elapsed time.Duration)
}

// AccessLogOptions are what AccessLog needs besides the logger.
type AccessLogOptions struct {
	// Policy says which successful cache hits get a line; nil: all.
	Policy *AccessPolicy
	// Gateway tells the REST gateway's in-process calls (by their peer)
	// from gRPC callers (the line's transport); nil: every call is gRPC.
	Gateway func(net.Addr) bool
	// Calls, if set, is given every call's code and the duration the
	// line states, whatever the policy or the log level: one clock, one
	// interceptor for the line and the metrics.
	Calls CallObserver
	// Traced says tracing is on: the line then carries the call's
	// trace_id. Off, no call has a span, and none is looked for.
	Traced bool
}

// AccessLog is the outermost interceptor: it starts the request's reqinfo
// with its id, returns the id in the response header, and logs one line per
// call when it ends (for successful cache hits, as opts.Policy says). The
// line carries who called (principal), what for (vendor, profile), the
// cache outcome, the code and the duration; never a token or secret
// (status messages are written to be shown to callers, so they carry none
// either). A sampled hit's line says so in sampled_one_in.
func AccessLog(log *slog.Logger, opts AccessLogOptions) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		// This frame stays on the stack while the call is served, under
		// every other interceptor and the handler: it is kept small, and
		// the line is built in logRequest's frame after the handler has
		// returned. A deep stack past the goroutine's first 8 KiB is
		// copied to a larger one on every call (docs/performance.md).
		start := time.Now()
		rest := false
		if p, ok := peer.FromContext(ctx); ok && opts.Gateway != nil {
			rest = opts.Gateway(p.Addr)
		}
		id, callerSent := callRequestID(ctx, rest)
		ctx, ri := reqinfo.With(ctx, id)
		resp, err := handler(ctx, req)
		logRequest(ctx, log, &opts, rest, ri, info.FullMethod, callerSent, start, err)
		return resp, err
	}
}

// callRequestID is the call's request id, and whether the caller sent
// it: for a REST call, the id RequestIDs put in the context if it did;
// else the caller's x-request-id if usable, or a new one.
// ValueFromIncomingContext reads one key without copying the whole
// metadata map, as FromIncomingContext does.
func callRequestID(ctx context.Context, rest bool) (id string, callerSent bool) {
	if rest {
		if c, ok := ctx.Value(httpRequestIDKey{}).(*requestIDCtx); ok {
			return c.id, false
		}
	}
	fromCaller := ""
	if vals := metadata.ValueFromIncomingContext(ctx, RequestIDHeader); len(vals) > 0 {
		fromCaller = vals[0]
	}
	return requestID(fromCaller), fromCaller != ""
}

// logRequest echoes the request id to the caller where due and writes the
// call's line (for a successful cache hit, as policy says).
//
//go:noinline
func logRequest(ctx context.Context, log *slog.Logger, opts *AccessLogOptions, rest bool, ri *reqinfo.Info, method string, callerSentID bool, start time.Time, err error) {
	// Echo the id to callers who sent one, and with every error (the
	// id finds the log line). A header on every successful call costs
	// the hot path a few percent of its throughput (docs/performance.md);
	// a unary call's headers go out after the interceptors return.
	// REST callers get it from the HTTP middleware (requestIDs).
	transport := "grpc"
	if rest {
		transport = "rest"
	}
	rec := ri.Snapshot()
	if transport == "grpc" && (callerSentID || err != nil) {
		_ = grpc.SetHeader(ctx, metadata.Pairs(RequestIDHeader, rec.RequestID))
	}
	code := codes.OK
	var st *status.Status
	if err != nil {
		st = status.Convert(err)
		code = st.Code()
	}
	now := time.Now()
	elapsed := now.Sub(start)
	if opts.Calls != nil {
		opts.Calls.ObserveCall(method, code, elapsed)
	}

	var sampledOneIn uint64
	if err == nil && rec.Cache == "hit" {
		var logIt bool
		if logIt, sampledOneIn = opts.Policy.logHit(); !logIt {
			return
		}
	}
	// The line is built by hand with no caller PC: Logger.LogAttrs
	// would walk the stack (runtime.Callers) for every request, for a
	// source location that is always this line. A logbuf.Line costs the
	// call less than a slog.Record, and is one for any other handler.
	level := accessLevel(method, code)
	h := log.Handler()
	if !h.Enabled(ctx, level) {
		return
	}
	l := logbuf.NewLine(now, level, "request")
	l.String("request_id", rec.RequestID)
	l.String("method", method)
	l.String("transport", transport)
	l.String("principal", rec.Principal)
	l.String("vendor", rec.Vendor)
	l.String("profile", rec.Profile)
	l.String("cache", rec.Cache)
	l.String("code", code.String())
	l.Float64("duration_ms", float64(elapsed.Microseconds())/1000)
	if st != nil {
		l.String("error", st.Message())
	}
	if sampledOneIn != 0 {
		l.Uint64("sampled_one_in", sampledOneIn)
	}
	if opts.Traced {
		if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
			l.String("trace_id", sc.TraceID().String())
		}
	}
	_ = logbuf.Log(ctx, h, l)
}

// accessLevel keeps probes out of the default log and makes failures that
// need an operator stand out.
func accessLevel(method string, code codes.Code) slog.Level {
	if strings.HasPrefix(method, "/grpc.health.v1.Health/") && code == codes.OK {
		return slog.LevelDebug
	}
	switch code {
	case codes.Internal, codes.Unknown, codes.DataLoss, codes.Unimplemented:
		return slog.LevelError
	case codes.Unavailable, codes.ResourceExhausted, codes.DeadlineExceeded:
		return slog.LevelWarn
	}
	return slog.LevelInfo
}
