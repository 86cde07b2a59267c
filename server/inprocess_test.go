package server_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	"github.com/tokenbroker/tokenbroker/auth"
	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
	"github.com/tokenbroker/tokenbroker/server"
	"github.com/tokenbroker/tokenbroker/testkit/testpki"
)

// seen is what the interceptors and the service saw of one call.
type seen struct {
	method   string
	md       metadata.MD
	gateway  bool // the peer is the REST gateway (server.InternalTransport)
	deadline bool
	order    []string // interceptors and service, in the order they ran
}

// recorder records every call; its interceptors go into
// Options.UnaryInterceptors, its Handler into Options.StatsHandlers.
type recorder struct {
	mu     sync.Mutex
	calls  []*seen
	tagged []string // FullMethodName of each stats.Handler TagRPC
	ended  []error  // Error of each stats.End
}

type callKey struct{}

func (r *recorder) outer(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	c := &seen{method: info.FullMethod, md: md.Copy(), order: []string{"outer"}}
	if p, ok := peer.FromContext(ctx); ok {
		c.gateway = server.InternalTransport(p.Addr)
	}
	_, c.deadline = ctx.Deadline()
	r.mu.Lock()
	r.calls = append(r.calls, c)
	r.mu.Unlock()
	return handler(context.WithValue(ctx, callKey{}, c), req)
}

func (r *recorder) inner(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	c := ctx.Value(callKey{}).(*seen)
	c.order = append(c.order, "inner")
	return handler(ctx, req)
}

// last is the last call recorded.
func (r *recorder) last(t *testing.T) *seen {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.calls) == 0 {
		t.Fatal("no call went through the interceptors")
	}
	return r.calls[len(r.calls)-1]
}

func (r *recorder) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	r.mu.Lock()
	r.tagged = append(r.tagged, info.FullMethodName)
	r.mu.Unlock()
	return ctx
}

func (r *recorder) HandleRPC(_ context.Context, s stats.RPCStats) {
	if end, ok := s.(*stats.End); ok {
		r.mu.Lock()
		r.ended = append(r.ended, end.Error)
		r.mu.Unlock()
	}
}

func (*recorder) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (*recorder) HandleConn(context.Context, stats.ConnStats)                       {}

// recordingService answers every method, noting in the call's record that
// it ran; GetToken answers the error its test asks for.
type recordingService struct {
	tokenbrokerv1.UnimplementedTokenServiceServer
	err func(ctx context.Context) error
}

func (s recordingService) GetToken(ctx context.Context, _ *tokenbrokerv1.GetTokenRequest) (*tokenbrokerv1.GetTokenResponse, error) {
	if c, ok := ctx.Value(callKey{}).(*seen); ok {
		c.order = append(c.order, "service")
	}
	if s.err != nil {
		if err := s.err(ctx); err != nil {
			return nil, err
		}
	}
	return &tokenbrokerv1.GetTokenResponse{AccessToken: "tok", TokenType: "Bearer"}, nil
}

func (s recordingService) ListVendors(ctx context.Context, _ *tokenbrokerv1.ListVendorsRequest) (*tokenbrokerv1.ListVendorsResponse, error) {
	if c, ok := ctx.Value(callKey{}).(*seen); ok {
		c.order = append(c.order, "service")
	}
	return &tokenbrokerv1.ListVendorsResponse{}, nil
}

func (s recordingService) InvalidateToken(ctx context.Context, _ *tokenbrokerv1.InvalidateTokenRequest) (*tokenbrokerv1.InvalidateTokenResponse, error) {
	if c, ok := ctx.Value(callKey{}).(*seen); ok {
		c.order = append(c.order, "service")
	}
	return &tokenbrokerv1.InvalidateTokenResponse{}, nil
}

func (s recordingService) ListCredentialStatus(ctx context.Context, _ *tokenbrokerv1.ListCredentialStatusRequest) (*tokenbrokerv1.ListCredentialStatusResponse, error) {
	if c, ok := ctx.Value(callKey{}).(*seen); ok {
		c.order = append(c.order, "service")
	}
	return &tokenbrokerv1.ListCredentialStatusResponse{}, nil
}

// pki is a CA with a server certificate for 127.0.0.1 and a client one.
type pki struct {
	ca     *testpki.CA
	server *testpki.Leaf
	client *testpki.Leaf
	leaf   *x509.Certificate // the client's certificate
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	ca, err := testpki.NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ca.Server("broker", net.IPv4(127, 0, 0, 1))
	if err != nil {
		t.Fatal(err)
	}
	cli, err := ca.Client("caller")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(cli.TLS.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return &pki{ca: ca, server: srv, client: cli, leaf: leaf}
}

// startServer serves opts (listeners, logger, interceptors, stats handler
// and the certificate middleware filled in) until the test ends.
func startServer(t *testing.T, opts server.Options, rec *recorder, p *pki) *server.Server {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	opts.GRPCAddr, opts.HTTPAddr, opts.Logger = "127.0.0.1:0", "127.0.0.1:0", log
	opts.UnaryInterceptors = []grpc.UnaryServerInterceptor{rec.outer, rec.inner}
	opts.StatsHandlers = []stats.Handler{rec}
	opts.ForwardHeaders = []string{"X-Request-Id", auth.ForwardedCertHeader}
	opts.HTTPMiddleware = []func(http.Handler) http.Handler{func(next http.Handler) http.Handler { return auth.ForwardCertificates(log, next) }}
	if p != nil {
		opts.TLS = &tls.Config{
			Certificates: []tls.Certificate{p.server.TLS},
			ClientAuth:   tls.VerifyClientCertIfGiven,
			ClientCAs:    p.ca.Pool(),
			MinVersion:   tls.VersionTLS12,
		}
	}
	srv, err := server.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return srv
}

// httpsClient trusts p's CA and presents certs.
func httpsClient(p *pki, certs ...tls.Certificate) *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{
			RootCAs: p.ca.Pool(), Certificates: certs, MinVersion: tls.VersionTLS12,
		}},
	}
}

func TestRESTCallsRunTheInterceptorChainInProcess(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	rec := &recorder{}
	srv := startServer(t, server.Options{Service: recordingService{}}, rec, p)
	base := "https://" + srv.HTTPAddr().String()

	tests := []struct {
		name       string
		certs      []tls.Certificate
		method     string
		path       string
		headers    map[string]string
		wantMethod string
		wantCert   string // the forwarded chain the interceptors see; "" none
		wantMD     map[string]string
		wantTimed  bool
	}{
		{
			name:   "forged certificate header without a client certificate is stripped",
			method: http.MethodPost, path: "/v1/token",
			headers: map[string]string{
				"Authorization":           "Bearer key-1",
				"X-Request-Id":            "req-1",
				auth.ForwardedCertHeader:  "forged",
				"Grpc-Timeout":            "30S",
				"X-Not-Forwarded":         "no",
				"Grpc-Metadata-Something": "no",
			},
			wantMethod: tokenbrokerv1.TokenService_GetToken_FullMethodName,
			wantMD:     map[string]string{"authorization": "Bearer key-1", "x-request-id": "req-1"},
			wantTimed:  true,
		},
		{
			name:   "forged certificate header with a client certificate is replaced by the verified one",
			certs:  []tls.Certificate{p.client.TLS},
			method: http.MethodPost, path: "/v1/token",
			headers: map[string]string{
				"Authorization":          "Bearer key-2",
				auth.ForwardedCertHeader: "forged",
			},
			wantMethod: tokenbrokerv1.TokenService_GetToken_FullMethodName,
			wantCert:   auth.EncodeChain([]*x509.Certificate{p.leaf}),
			wantMD:     map[string]string{"authorization": "Bearer key-2"},
		},
		{
			name:       "a GET route",
			certs:      []tls.Certificate{p.client.TLS},
			method:     http.MethodGet,
			path:       "/v1/vendors",
			wantMethod: tokenbrokerv1.TokenService_ListVendors_FullMethodName,
			wantCert:   auth.EncodeChain([]*x509.Certificate{p.leaf}),
			wantMD:     map[string]string{},
		},
		// Every method is bound to its own name once (the policy
		// authorizes by it); its stats are tagged with the same (below).
		{
			name:   "invalidation",
			method: http.MethodPost, path: "/v1/token:invalidate",
			wantMethod: tokenbrokerv1.TokenService_InvalidateToken_FullMethodName,
			wantMD:     map[string]string{},
		},
		{
			name:   "credential status",
			method: http.MethodGet, path: "/v1/credentials/status",
			wantMethod: tokenbrokerv1.TokenService_ListCredentialStatus_FullMethodName,
			wantMD:     map[string]string{},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var body io.Reader
			if tc.method == http.MethodPost {
				body = strings.NewReader(`{"profile":"p"}`)
			}
			req, err := http.NewRequest(tc.method, base+tc.path, body)
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tc.headers {
				req.Header.Set(k, v)
			}
			resp, err := httpsClient(p, tc.certs...).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d, want 200", resp.StatusCode)
			}
			if got := resp.Header.Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control %q, want no-store", got)
			}

			c := rec.last(t)
			if c.method != tc.wantMethod {
				t.Errorf("FullMethod %q, want %q", c.method, tc.wantMethod)
			}

			if !c.gateway {
				t.Error("the interceptors did not see the gateway's peer (server.InternalTransport false)")
			}
			if want := []string{"outer", "inner", "service"}; !slices.Equal(c.order, want) {
				t.Errorf("ran %v, want %v", c.order, want)
			}
			if c.deadline != tc.wantTimed {
				t.Errorf("deadline set: %v, want %v (Grpc-Timeout)", c.deadline, tc.wantTimed)
			}
			certs := c.md.Get(strings.ToLower(auth.ForwardedCertHeader))
			switch {
			case tc.wantCert == "" && len(certs) > 0:
				t.Errorf("the interceptors saw a client certificate header %q; want none", certs)
			case tc.wantCert != "" && !slices.Equal(certs, []string{tc.wantCert}):
				t.Errorf("the interceptors saw client certificate header %q; want the verified chain only", certs)
			}
			for k, v := range tc.wantMD {
				if got := c.md.Get(k); !slices.Equal(got, []string{v}) {
					t.Errorf("metadata %s = %q, want [%q]", k, got, v)
				}
			}
			for _, k := range []string{"x-not-forwarded", "something", "grpcgateway-something"} {
				if got := c.md.Get(k); len(got) > 0 {
					t.Errorf("metadata %s = %q: a header not in ForwardHeaders was forwarded", k, got)
				}
			}
			rec.mu.Lock()
			tagged := rec.tagged[len(rec.tagged)-1]
			rec.mu.Unlock()
			if tagged != tc.wantMethod {
				t.Errorf("stats handler tagged %q, want %q", tagged, tc.wantMethod)
			}
		})
	}

	// A gRPC caller is not the gateway, whatever metadata it sends, and
	// meets the same chain.
	conn, err := grpc.NewClient(srv.GRPCAddr().String(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: p.ca.Pool(), MinVersion: tls.VersionTLS12})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := metadata.AppendToOutgoingContext(context.Background(), strings.ToLower(auth.ForwardedCertHeader), "forged")
	if _, err := tokenbrokerv1.NewTokenServiceClient(conn).GetToken(ctx, &tokenbrokerv1.GetTokenRequest{}); err != nil {
		t.Fatal(err)
	}
	c := rec.last(t)
	if c.gateway {
		t.Error("a gRPC caller's peer passed for the gateway's")
	}
	if want := []string{"outer", "inner", "service"}; !slices.Equal(c.order, want) {
		t.Errorf("gRPC call ran %v, want %v", c.order, want)
	}
}

// restError is the JSON body of a gateway error.
type restError struct {
	Code    int               `json:"code"`
	Message string            `json:"message"`
	Details []json.RawMessage `json:"details"`
}

func TestRESTErrorsAreTheStatusAGRPCClientWouldGet(t *testing.T) {
	t.Parallel()
	withDetails, err := status.New(codes.InvalidArgument, "profile is unknown").WithDetails(&errdetails.BadRequest{
		FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: "profile", Description: "unknown"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		err         error
		body        string
		wantHTTP    int
		wantCode    codes.Code
		wantMessage string
		wantDetails int
	}{
		{"plain error is UNKNOWN", errors.New("disk on fire"), `{}`, http.StatusInternalServerError, codes.Unknown, "disk on fire", 0},
		{"deadline is DEADLINE_EXCEEDED", context.DeadlineExceeded, `{}`, http.StatusGatewayTimeout, codes.DeadlineExceeded, context.DeadlineExceeded.Error(), 0},
		{"status keeps its details", withDetails.Err(), `{}`, http.StatusBadRequest, codes.InvalidArgument, "profile is unknown", 1},
		{"undecodable body gets a BadRequest", nil, `{"profile":`, http.StatusBadRequest, codes.InvalidArgument, "", 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rec := &recorder{}
			svc := recordingService{err: func(context.Context) error { return tc.err }}
			srv := startServer(t, server.Options{Service: svc}, rec, nil)
			resp, err := http.Post("http://"+srv.HTTPAddr().String()+"/v1/token", "application/json", strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var got restError
			if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&got); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.wantHTTP || codes.Code(got.Code) != tc.wantCode {
				t.Fatalf("HTTP %d code %d (%s), want %d and %s", resp.StatusCode, got.Code, got.Message, tc.wantHTTP, tc.wantCode)
			}
			if tc.wantMessage != "" && got.Message != tc.wantMessage {
				t.Errorf("message %q, want %q", got.Message, tc.wantMessage)
			}
			if len(got.Details) != tc.wantDetails {
				t.Errorf("%d details, want %d", len(got.Details), tc.wantDetails)
			}
			if got := resp.Header.Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control %q, want no-store", got)
			}
			if tc.err == nil {
				return
			}
			// The stats handler ends the call with the status the
			// client got.
			rec.mu.Lock()
			defer rec.mu.Unlock()
			if n := len(rec.ended); n != 1 || status.Code(rec.ended[0]) != tc.wantCode {
				t.Errorf("stats handler ended %v, want one call with %s", rec.ended, tc.wantCode)
			}
		})
	}
}

func TestRESTCallStillRunningAfterTheGraceIsCancelled(t *testing.T) {
	t.Parallel()
	entered := make(chan struct{})
	svc := recordingService{err: func(ctx context.Context) error {
		close(entered)
		<-ctx.Done() // only the end of the grace ends it
		return ctx.Err()
	}}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := server.New(server.Options{
		GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Logger: log,
		Service: svc, ShutdownGrace: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()

	type result struct {
		code int
		err  error
	}
	answered := make(chan result, 1)
	go func() {
		resp, err := http.Post("http://"+srv.HTTPAddr().String()+"/v1/token", "application/json", strings.NewReader(`{}`))
		if err != nil {
			answered <- result{err: err}
			return
		}
		resp.Body.Close()
		answered <- result{code: resp.StatusCode}
	}()
	<-entered
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	got := <-answered
	if got.err != nil || got.code != http.StatusServiceUnavailable {
		t.Fatalf("answer %d (%v), want 503: the call's stream is closed, as grpc.Server.Stop closes it", got.code, got.err)
	}
}
