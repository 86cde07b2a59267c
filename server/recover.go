package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"runtime/debug"
	"slices"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A panic on a call's goroutine must cost that call, not the replica and
// every fetch in flight on it (docs/design.md, The request path). The recovery
// interceptors answer INTERNAL "internal error", the answer every
// unexpected failure gets (docs/design.md, Error mapping), log the panic with
// its stack at ERROR, and count it (Options.OnPanic:
// tokenbroker_panics_total).
//
// A panic on a goroutine a handler started (a vendor fetch that outlives
// its caller, a background refresh) is not on the call's stack: whoever
// owns that goroutine recovers it.

// errPanicked is what a call whose handler panicked answers.
var errPanicked = status.Error(codes.Internal, "internal error")

// recovered logs and counts the panic value v of a call to method.
func (s *Server) recovered(ctx context.Context, transport, method string, v any) {
	// The value is formatted with %v: secret types print as [REDACTED]
	// (docs/design.md, Security model), and a runtime error names no input.
	s.log.ErrorContext(ctx, "panic while handling a call; answered internal error",
		"transport", transport, "method", method,
		"panic", fmt.Sprintf("%v", v), "stack", string(debug.Stack()))
	if s.opts.OnPanic != nil {
		s.opts.OnPanic()
	}
}

// unaryChain runs interceptors outermost first, each one's handler being
// the rest of the chain, as grpc.ChainUnaryInterceptor does, with the
// recovery outside them all (a panic in an interceptor is answered
// INTERNAL) and around the handler (the interceptors, the access log
// and the metrics among them, see the handler's panic as the INTERNAL it
// is answered with). The gRPC server and the in-process calls run the one
// chain: the gRPC server through intercept, the in-process methods
// through handlers bind made once. The recoveries are in the chain's own
// frames rather than interceptors of their own: two calls and a closure
// fewer per call.
type unaryChain struct {
	s            *Server
	interceptors []grpc.UnaryServerInterceptor
}

func (s *Server) chainUnary(interceptors []grpc.UnaryServerInterceptor) *unaryChain {
	// The caller's slice may change.
	return &unaryChain{s: s, interceptors: slices.Clone(interceptors)}
}

// intercept is the chain as the gRPC server's interceptor: the links to
// the call's handler are made for each call.
func (c *unaryChain) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	defer c.s.recoverCall(ctx, info, &resp, &err)
	if len(c.interceptors) == 0 {
		return handler(ctx, req)
	}
	return c.interceptors[0](ctx, req, info, c.link(info, handler))
}

// bind is the chain with info and handler fixed, its links made once: a
// method called in process always has the same ones, and its calls then
// allocate no closures.
func (c *unaryChain) bind(info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) grpc.UnaryHandler {
	if len(c.interceptors) == 0 {
		return func(ctx context.Context, req any) (resp any, err error) {
			defer c.s.recoverCall(ctx, info, &resp, &err)
			return handler(ctx, req)
		}
	}
	first, next := c.interceptors[0], c.link(info, handler)
	return func(ctx context.Context, req any) (resp any, err error) {
		defer c.s.recoverCall(ctx, info, &resp, &err)
		return first(ctx, req, info, next)
	}
}

// link is the handler the first interceptor is given: the others in
// order, then handler under its own recovery.
func (c *unaryChain) link(info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) grpc.UnaryHandler {
	next := func(ctx context.Context, req any) (resp any, err error) {
		defer c.s.recoverCall(ctx, info, &resp, &err)
		return handler(ctx, req)
	}
	for i := len(c.interceptors) - 1; i > 0; i-- {
		intercept, inner := c.interceptors[i], next
		next = func(ctx context.Context, req any) (any, error) {
			return intercept(ctx, req, info, inner)
		}
	}
	return next
}

// recoverCall, deferred, turns a panic of a unary call into its INTERNAL
// answer (*resp and *err), logged and counted.
func (s *Server) recoverCall(ctx context.Context, info *grpc.UnaryServerInfo, resp *any, err *error) {
	if v := recover(); v != nil {
		s.recovered(ctx, "grpc", info.FullMethod, v)
		*resp, *err = nil, errPanicked
	}
}

// recoverStream is the stream recovery interceptor (health Watch,
// reflection).
func (s *Server) recoverStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	defer func() {
		if v := recover(); v != nil {
			s.recovered(ss.Context(), "grpc", info.FullMethod, v)
			err = errPanicked
		}
	}()
	return handler(srv, ss)
}

// recoverHTTP answers a panic in the HTTP middleware or a route with 500
// and the JSON status the gateway gives INTERNAL, instead of net/http's
// default (a closed connection and a line on stderr). Once the answer has
// started nothing can be changed: the connection is closed.
func (s *Server) recoverHTTP(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rw := &startedWriter{ResponseWriter: w}
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if err, ok := v.(error); ok && errors.Is(err, http.ErrAbortHandler) {
				// The handler's own way to abort a response: not a bug.
				panic(v)
			}
			s.recovered(r.Context(), "http", r.URL.Path, v)
			if rw.started {
				panic(http.ErrAbortHandler)
			}
			h := w.Header()
			for k := range h {
				delete(h, k)
			}
			h.Set("Content-Type", "application/json")
			h.Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write([]byte(`{"code":13,"message":"internal error","details":[]}`))
		}()
		next.ServeHTTP(rw, r)
	})
}

// startedWriter records whether the answer has started.
type startedWriter struct {
	http.ResponseWriter
	started bool
}

func (w *startedWriter) WriteHeader(code int) {
	w.started = true
	w.ResponseWriter.WriteHeader(code)
}

func (w *startedWriter) Write(b []byte) (int, error) {
	w.started = true
	return w.ResponseWriter.Write(b)
}

func (w *startedWriter) Flush() {
	w.started = true
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *startedWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
