// Package server runs the TokenService on its two listeners: gRPC on
// grpc_addr, and the grpc-gateway REST facade plus operational endpoints on
// http_addr. The gateway calls the service in process, behind the same
// interceptors as the gRPC server, so every request, REST or gRPC, passes
// them (inprocess.go).
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	goruntime "runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
	"github.com/tokenbroker/tokenbroker/statuspage"
)

// Limits of both listeners.
const (
	MaxMessageBytes   = 256 << 10
	MaxHTTPBodyBytes  = 256 << 10
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = 60 * time.Second
	idleTimeout       = 120 * time.Second
	// DefaultShutdownGrace bounds the drain of in-flight calls once the
	// listeners are closed.
	DefaultShutdownGrace = 15 * time.Second
	// maxConnectionAge makes long-lived gRPC clients reconnect now and
	// then, so that connections spread back over replicas after a rolling
	// restart; maxConnectionAgeGrace lets the calls on an old connection
	// finish.
	maxConnectionAge      = 5 * time.Minute
	maxConnectionAgeGrace = 30 * time.Second
	// handshakeTimeout bounds a new gRPC connection's TLS handshake and
	// HTTP/2 preface (gRPC's default is 120 s): a peer that connects and
	// stalls holds a goroutine and a socket only this long, as
	// readHeaderTimeout bounds the same on the HTTP listener.
	handshakeTimeout = 5 * time.Second
	// MaxConcurrentStreams bounds the calls one gRPC connection carries at
	// once (gRPC's default is unbounded): one client cannot hold more than
	// this many handler goroutines; further calls wait in the client for
	// a free stream. The REST gateway's in-process calls are bounded the
	// same way, as if they shared one connection: at most this many REST
	// calls are in the service at once. It is well above what the load
	// tests put on a connection (docs/performance.md: 64 in flight).
	MaxConcurrentStreams = 1024
)

// Options configure a Server.
type Options struct {
	GRPCAddr string
	HTTPAddr string
	Service  tokenbrokerv1.TokenServiceServer
	Logger   *slog.Logger
	// TLS, when set, serves both listeners over TLS (with client
	// certificates when it asks for them).
	TLS *tls.Config
	// UnaryInterceptors run on every gRPC call, REST ones included. The
	// UnaryServerInfo of an in-process (REST) call is one value for all
	// the calls of its method: an interceptor must not modify it.
	UnaryInterceptors []grpc.UnaryServerInterceptor
	// StatsHandlers see every gRPC call, REST ones included (tracing).
	StatsHandlers []stats.Handler
	// ServerOptions are extra gRPC server options. A stats handler given
	// here would not see REST calls: use StatsHandlers.
	ServerOptions []grpc.ServerOption
	// HTTPMiddleware wraps the whole HTTP handler (outermost first).
	HTTPMiddleware []func(http.Handler) http.Handler
	// Routes are extra HTTP routes (e.g. "/metrics"), by mux pattern.
	Routes map[string]http.Handler
	// Health is the gRPC health server; nil means one that reports SERVING
	// once the listeners are up.
	Health *health.Server
	// ForwardHeaders are HTTP headers the gateway passes to gRPC as
	// metadata, besides authorization.
	ForwardHeaders []string
	// ShutdownDelay is how long Serve keeps accepting and serving once its
	// context is done, already reporting NOT_SERVING, so that load
	// balancers take the replica out of rotation before its listeners
	// close (docs/design.md, Operations: shutdown_delay).
	ShutdownDelay time.Duration
	// ShutdownGrace bounds the drain of in-flight calls after the delay;
	// 0 means DefaultShutdownGrace.
	ShutdownGrace time.Duration
	// OnPanic is called once for each panic the server recovered from in
	// a call (tokenbroker_panics_total); nil: not counted.
	OnPanic func()
}

// Server is the pair of listeners.
type Server struct {
	opts    Options
	grpc    *grpc.Server
	http    *http.Server
	grpcLis net.Listener
	httpLis net.Listener
	gateway *inProcess
	health  *health.Server
	log     *slog.Logger
	// stopCalls cancels the HTTP requests still running when the drain's
	// grace is over, as grpc.Server.Stop cancels the gRPC calls.
	stopCalls context.CancelFunc
	// draining is set when shutdown starts: HTTP answers then carry
	// "Connection: close".
	draining atomic.Bool
	// shutdownDelay is Options.ShutdownDelay, or what SetShutdownDelay set.
	shutdownDelay atomic.Int64
}

// streamWorkersPerCore is how many goroutines per core are kept to serve
// gRPC calls. A call that finds none free runs in a new goroutine, whose
// stack then grows, a copy each time, through the interceptor chain: with
// 4 per core (8 here), most calls at 64 in flight did, and that copying
// was a third of what the broker spent per call more than the echo. With
// 16 (32 here) the CPU per call at 64 in flight is as low as with 64 or
// 128 workers, the QPS at 64 in flight is better than with 64, and at 1
// in flight fewer workers take turns, each with a warmer stack
// (docs/performance.md, "Stream workers").
const streamWorkersPerCore = 16

// streamWorkers is how many goroutines serve gRPC calls.
func streamWorkers() int { return streamWorkersPerCore * goruntime.GOMAXPROCS(0) }

// New listens on both addresses; Serve starts serving.
func New(opts Options) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Server{opts: opts, log: opts.Logger, health: opts.Health}
	s.shutdownDelay.Store(int64(opts.ShutdownDelay))
	if s.health == nil {
		s.health = health.NewServer()
		s.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
		s.health.SetServingStatus(tokenbrokerv1.TokenService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_NOT_SERVING)
	}

	// Recovery outside the interceptors, so a panic in any is caught, and
	// around the handler, so the access log and metrics see the handler's
	// panic as the INTERNAL it is answered with (chainUnary). The gRPC
	// server and the gateway's in-process calls run this one chain.
	chain := s.chainUnary(opts.UnaryInterceptors)
	gopts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(MaxMessageBytes),
		// Reuse goroutines whose stacks have already grown through the
		// interceptor chain: a new goroutine per call spent a tenth of a
		// cached call's CPU copying stacks (docs/performance.md).
		grpc.NumStreamWorkers(uint32(streamWorkers())),
		// Chained, not grpc.UnaryInterceptor, so that one given in
		// ServerOptions does not make NewServer panic.
		grpc.ChainUnaryInterceptor(chain.intercept),
		grpc.ChainStreamInterceptor(s.recoverStream),
		grpc.ConnectionTimeout(handshakeTimeout),
		grpc.MaxConcurrentStreams(MaxConcurrentStreams),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionAge:      maxConnectionAge,
			MaxConnectionAgeGrace: maxConnectionAgeGrace,
		}),
	}
	if opts.TLS != nil {
		// gRPC's own TLS credentials (not a TLS listener), so interceptors
		// see the peer's certificates in peer.AuthInfo.
		gopts = append(gopts, grpc.Creds(credentials.NewTLS(opts.TLS)))
	}
	for _, h := range opts.StatsHandlers {
		gopts = append(gopts, grpc.StatsHandler(h))
	}
	gopts = append(gopts, opts.ServerOptions...)
	s.grpc = grpc.NewServer(gopts...)
	tokenbrokerv1.RegisterTokenServiceServer(s.grpc, opts.Service)
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)

	var err error
	if s.grpcLis, err = net.Listen("tcp", opts.GRPCAddr); err != nil {
		return nil, fmt.Errorf("grpc listener %s: %w", opts.GRPCAddr, err)
	}
	if s.httpLis, err = net.Listen("tcp", opts.HTTPAddr); err != nil {
		s.grpcLis.Close()
		return nil, fmt.Errorf("http listener %s: %w", opts.HTTPAddr, err)
	}
	if opts.TLS != nil {
		s.httpLis = tls.NewListener(s.httpLis, opts.TLS)
	}

	// The gateway calls the service in process, through the same
	// interceptors as external gRPC callers.
	callsCtx, stopCalls := context.WithCancel(context.Background())
	s.stopCalls = stopCalls
	s.gateway = newInProcess(opts.Service, chain, opts.StatsHandlers, callsCtx)
	handler, err := s.httpHandler()
	if err != nil {
		stopCalls()
		s.grpcLis.Close()
		s.httpLis.Close()
		return nil, err
	}
	s.http = &http.Server{
		Handler:           handler,
		BaseContext:       func(net.Listener) context.Context { return callsCtx },
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	return s, nil
}

// GRPCAddr is the gRPC listener's address.
func (s *Server) GRPCAddr() net.Addr { return s.grpcLis.Addr() }

// HTTPAddr is the HTTP listener's address.
func (s *Server) HTTPAddr() net.Addr { return s.httpLis.Addr() }

// Health is the gRPC health server, for readiness transitions.
func (s *Server) Health() *health.Server { return s.health }

func (s *Server) httpHandler() (http.Handler, error) {
	// The gateway always passes Authorization on as "authorization"
	// metadata; the matcher must not forward it a second time.
	forward := newHeaderMatcher(s.opts.ForwardHeaders)
	gwOpts := []runtime.ServeMuxOption{
		runtime.WithMarshalerOption(runtime.MIMEWildcard, &runtime.JSONPb{
			MarshalOptions:   protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true},
			UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
		}),
		runtime.WithIncomingHeaderMatcher(forward.match),
		runtime.WithOutgoingHeaderMatcher(func(string) (string, bool) { return "", false }),
		runtime.WithErrorHandler(gatewayError),
	}
	gw := runtime.NewServeMux(gwOpts...)
	if err := tokenbrokerv1.RegisterTokenServiceHandlerServer(context.Background(), gw, s.gateway); err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/v1/", noStore(http.MaxBytesHandler(gw, MaxHTTPBodyBytes)))
	mux.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(openAPIDocument())
	})
	// The status page asks the service in process, like the gateway.
	mux.Handle("GET /status", statuspage.Handler(statusLister{s.gateway}, s.opts.ForwardHeaders))
	for pattern, h := range s.opts.Routes {
		mux.Handle(pattern, h)
	}
	var h http.Handler = mux
	for i := len(s.opts.HTTPMiddleware) - 1; i >= 0; i-- {
		h = s.opts.HTTPMiddleware[i](h)
	}
	return s.recoverHTTP(s.closeWhileDraining(h)), nil
}

// closeWhileDraining asks HTTP/1.1 keep-alive clients to leave while the
// server drains: every answer then says "Connection: close", so a client
// opens its next connection (through the load balancer, to another
// replica) instead of sending a request on a connection the server is
// about to close. Go's client never retries a POST whose connection was
// closed under it, and closing idle connections from the server side
// races with requests already on their way.
func (s *Server) closeWhileDraining(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.draining.Load() {
			w.Header().Set("Connection", "close")
		}
		next.ServeHTTP(w, r)
	})
}

// gatewayError is the gateway's default error answer, except that a body
// the gateway itself could not decode (INVALID_ARGUMENT without details:
// the service always adds them) gets the BadRequest field violation the
// API promises for malformed requests (docs/design.md, API and errors).
func gatewayError(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	if st, ok := status.FromError(err); ok && st.Code() == codes.InvalidArgument && len(st.Details()) == 0 {
		br := &errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{
			Field:       "body",
			Description: st.Message(),
		}}}
		if withDetails, derr := st.WithDetails(br); derr == nil {
			err = withDetails.Err()
		}
	}
	runtime.DefaultHTTPErrorHandler(ctx, mux, m, w, r, err)
}

// noStore marks every /v1 answer, errors included, as not cacheable: they
// carry tokens or say something about credentials.
func noStore(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A direct write with the canonical key: Header.Set would
		// canonicalise the key again on every request.
		w.Header()["Cache-Control"] = []string{"no-store"}
		h.ServeHTTP(w, r)
	})
}

// Serve serves until ctx is done, then shuts down in the order a load
// balancer needs (Kubernetes' pod termination): NOT_SERVING at once (gRPC
// health, and /readyz, which follows it) while both listeners keep
// accepting and serving for ShutdownDelay, HTTP answers asking clients to
// close their connections; then the listeners close, gRPC clients get a
// GOAWAY, and in-flight calls drain for up to ShutdownGrace.
func (s *Server) Serve(ctx context.Context) error {
	defer s.stopCalls()
	errc := make(chan error, 2)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); errc <- s.grpc.Serve(s.grpcLis) }()
	go func() {
		defer wg.Done()
		if err := s.http.Serve(s.httpLis); !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
	}()
	s.log.Info("serving", "grpc_addr", s.GRPCAddr().String(), "http_addr", s.HTTPAddr().String(), "tls", s.opts.TLS != nil)

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	s.health.Shutdown()
	s.draining.Store(true)
	if d := time.Duration(s.shutdownDelay.Load()); serveErr == nil && d > 0 {
		s.log.Info("shutting down: not ready, still serving", "shutdown_delay", d.String())
		delay := time.NewTimer(d)
		select {
		case <-delay.C:
		case serveErr = <-errc:
			delay.Stop()
		}
	}
	s.log.Info("shutting down: draining in-flight calls")
	grace := s.opts.ShutdownGrace
	if grace <= 0 {
		grace = DefaultShutdownGrace
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	// HTTP first, then gRPC, each draining within what is left of the
	// grace; HTTP requests still running when it is over are cancelled,
	// as Stop cancels the gRPC calls still running.
	if err := s.http.Shutdown(shutdownCtx); err != nil {
		s.stopCalls()
	}
	stopped := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-shutdownCtx.Done():
		s.grpc.Stop()
	}
	wg.Wait()
	s.log.Info("stopped")
	return serveErr
}

// SetShutdownDelay changes the delay of a shutdown that has not started
// yet (a configuration reload).
func (s *Server) SetShutdownDelay(d time.Duration) { s.shutdownDelay.Store(int64(d)) }

// SetServing marks the service SERVING (or NOT_SERVING) in gRPC health.
func (s *Server) SetServing(serving bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if serving {
		st = healthpb.HealthCheckResponse_SERVING
	}
	s.health.SetServingStatus("", st)
	s.health.SetServingStatus(tokenbrokerv1.TokenService_ServiceDesc.ServiceName, st)
}
