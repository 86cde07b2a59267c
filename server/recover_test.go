package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
)

// vendorsService answers ListVendors, and panics in it when the caller's
// metadata asks for a panic (a test-only handler).
type vendorsService struct {
	tokenbrokerv1.UnimplementedTokenServiceServer
}

func (vendorsService) ListVendors(ctx context.Context, _ *tokenbrokerv1.ListVendorsRequest) (*tokenbrokerv1.ListVendorsResponse, error) {
	if md, _ := metadataValue(ctx, "x-panic"); md == "yes" {
		panic("handler bug")
	}
	return &tokenbrokerv1.ListVendorsResponse{Vendors: []*tokenbrokerv1.Vendor{{Id: "one"}}}, nil
}

func TestRecoveryKeepsTheServerServing(t *testing.T) {
	t.Parallel()
	var panics atomic.Int64
	var seen atomic.Value // the code the interceptor's handler returned
	srv, err := New(Options{
		GRPCAddr: "127.0.0.1:0",
		HTTPAddr: "127.0.0.1:0",
		Service:  vendorsService{},
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
		OnPanic:  func() { panics.Add(1) },
		// A panicking interceptor (before the handler) and route.
		UnaryInterceptors: []grpc.UnaryServerInterceptor{func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if v, _ := metadataValue(ctx, "x-panic"); v == "interceptor" {
				panic("interceptor bug")
			}
			resp, err := h(ctx, req)
			seen.Store(status.Code(err))
			return resp, err
		}},
		Routes: map[string]http.Handler{"GET /boom": http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("route bug") })},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	conn, err := grpc.NewClient(srv.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	client := tokenbrokerv1.NewTokenServiceClient(conn)

	list := func(panicAt string) error {
		ctx := ctx
		if panicAt != "" {
			ctx = withMetadata(ctx, "x-panic", panicAt)
		}
		_, err := client.ListVendors(ctx, &tokenbrokerv1.ListVendorsRequest{})
		return err
	}
	for _, tc := range []struct {
		name    string
		panicAt string
		want    codes.Code
		// what the interceptor saw its handler return (the handler's
		// panic already as the INTERNAL it is answered with)
		seen codes.Code
	}{
		{"handler panics", "yes", codes.Internal, codes.Internal},
		{"next call", "", codes.OK, codes.OK},
		{"interceptor panics", "interceptor", codes.Internal, notReached},
		{"next call again", "", codes.OK, codes.OK},
	} {
		seen.Store(notReached)
		err := list(tc.panicAt)
		if status.Code(err) != tc.want || (err != nil && status.Convert(err).Message() != "internal error") {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
		if got, _ := seen.Load().(codes.Code); got != tc.seen {
			t.Errorf("%s: the interceptor saw %v from its handler, want %v", tc.name, got, tc.seen)
		}
	}

	httpBase := "http://" + srv.HTTPAddr().String()
	for _, tc := range []struct {
		path string
		want int
		body string
	}{
		{"/boom", http.StatusInternalServerError, `{"code":13,"message":"internal error","details":[]}`},
		{"/openapi.json", http.StatusOK, ""},
	} {
		resp, err := http.Get(httpBase + tc.path)
		if err != nil {
			t.Fatalf("GET %s: %v", tc.path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want || (tc.body != "" && string(body) != tc.body) {
			t.Errorf("GET %s = %d %s, want %d %s", tc.path, resp.StatusCode, body, tc.want, tc.body)
		}
	}
	if got := panics.Load(); got != 3 {
		t.Errorf("OnPanic called %d times, want 3", got)
	}
}

// notReached is what the recovery test's interceptor "saw" when its
// handler never returned to it.
const notReached = codes.Code(1000)

// chainCase is one of TestChainUnary's calls.
type chainCase struct {
	name          string
	interceptors  int
	panicAt       int // 0: nowhere; i > 0: interceptor i; -1: the handler
	wantCode      codes.Code
	wantOrder     string
	wantSeen      string // the codes the interceptors saw, innermost first
	wantRecovered int64
}

// TestChainUnary drives the chain directly, both as the gRPC server runs
// it (intercept) and as the in-process methods do (bind, once; called
// twice): the interceptors in order, a panic anywhere answered INTERNAL
// and counted, the handler's panic seen by every interceptor as that
// INTERNAL, with and without interceptors.
func TestChainUnary(t *testing.T) {
	t.Parallel()
	for _, tc := range []chainCase{
		{"no interceptor", 0, 0, codes.OK, "h", "", 0},
		{"no interceptor, the handler panics", 0, -1, codes.Internal, "h", "", 1},
		{"two", 2, 0, codes.OK, "12h", "OK OK ", 0},
		{"two, the handler panics", 2, -1, codes.Internal, "12h", "Internal Internal ", 1},
		{"two, the second panics", 2, 2, codes.Internal, "12", "", 1}, // an interceptor's panic unwinds the ones outside it
		{"three, the first panics", 3, 1, codes.Internal, "1", "", 1},
	} {
		for _, bound := range []bool{false, true} {
			name := tc.name + ", intercept"
			if bound {
				name = tc.name + ", bound"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				testChainUnary(t, tc, bound)
			})
		}
	}
}

func testChainUnary(t *testing.T, tc chainCase, bound bool) {
	calls := 1
	if bound {
		calls = 2 // the bound handler serves call after call
	}
	var panics atomic.Int64
	s := &Server{log: slog.New(slog.NewTextHandler(io.Discard, nil)), opts: Options{OnPanic: func() { panics.Add(1) }}}
	var order, seen strings.Builder
	var interceptors []grpc.UnaryServerInterceptor
	for i := 1; i <= tc.interceptors; i++ {
		interceptors = append(interceptors, func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			order.WriteString(strconv.Itoa(i))
			if tc.panicAt == i {
				panic(fmt.Sprintf("interceptor %d", i))
			}
			resp, err := h(ctx, req)
			seen.WriteString(status.Code(err).String() + " ")
			return resp, err
		})
	}
	chain := s.chainUnary(interceptors)
	for i := range interceptors {
		interceptors[i] = nil // the chain keeps its own copy
	}
	info := &grpc.UnaryServerInfo{FullMethod: "/t/M"}
	handler := func(_ context.Context, req any) (any, error) {
		order.WriteString("h")
		if tc.panicAt == -1 {
			panic("handler")
		}
		return req, nil
	}
	run := func(ctx context.Context, req any) (any, error) { return chain.intercept(ctx, req, info, handler) }
	if bound {
		run = chain.bind(info, handler)
	}
	for n := 1; n <= calls; n++ {
		order.Reset()
		seen.Reset()
		resp, err := run(context.Background(), "req")
		if status.Code(err) != tc.wantCode || (err == nil) != (resp == "req") {
			t.Errorf("call %d: answer %v, %v; want code %v", n, resp, err, tc.wantCode)
		}
		if order.String() != tc.wantOrder || seen.String() != tc.wantSeen {
			t.Errorf("call %d ran %q, saw %q; want %q, %q", n, order.String(), seen.String(), tc.wantOrder, tc.wantSeen)
		}
	}
	if got := panics.Load(); got != tc.wantRecovered*int64(calls) {
		t.Errorf("%d panics counted in %d calls, want %d a call", got, calls, tc.wantRecovered)
	}
}

func metadataValue(ctx context.Context, key string) (string, bool) {
	v := metadata.ValueFromIncomingContext(ctx, key)
	if len(v) == 0 {
		return "", false
	}
	return v[0], true
}

func withMetadata(ctx context.Context, key, value string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, key, value)
}

// panicStream is a server stream whose handler will panic.
type panicStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s panicStream) Context() context.Context { return s.ctx }

func TestRecoverStream(t *testing.T) {
	t.Parallel()
	var panics atomic.Int64
	s := &Server{log: slog.New(slog.NewTextHandler(io.Discard, nil)), opts: Options{OnPanic: func() { panics.Add(1) }}}
	for _, tc := range []struct {
		name    string
		handler grpc.StreamHandler
		want    codes.Code
	}{
		{"panics", func(any, grpc.ServerStream) error { panic("stream handler bug") }, codes.Internal},
		{"returns", func(any, grpc.ServerStream) error { return nil }, codes.OK},
	} {
		err := s.recoverStream(nil, panicStream{ctx: context.Background()}, &grpc.StreamServerInfo{FullMethod: "/grpc.health.v1.Health/Watch"}, tc.handler)
		if status.Code(err) != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	if panics.Load() != 1 {
		t.Errorf("OnPanic called %d times, want 1", panics.Load())
	}
}
