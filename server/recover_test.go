package server

import (
	"context"
	"io"
	"log/slog"
	"net/http"
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
		{"interceptor panics", "interceptor", codes.Internal, codes.OK}, // seen: the call before's
		{"next call again", "", codes.OK, codes.OK},
	} {
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
