package server

import (
	"context"
	"net"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
)

// The REST gateway and the status page call the service in process
// (grpc-gateway's RegisterTokenServiceHandlerServer) instead of over a
// gRPC client connection to this server: a REST call no longer pays an
// HTTP/2 round trip, two protobuf encodings and a stream's goroutines on
// top of its HTTP/1.1 and JSON (docs/performance.md, REST in process).
// What the gRPC server does around a call is done here, so a REST call
// meets the same code as a gRPC one: at most MaxConcurrentStreams calls
// at once, the gateway's peer (InternalTransport), the stats handlers,
// the same unary interceptor chain with the method's FullMethod, and an
// error answered as a gRPC status. The gateway itself turns the request's
// headers into incoming metadata (Authorization and Options.ForwardHeaders)
// and a Grpc-Timeout header into the context's deadline.

// gatewayAddr is the peer address of the calls the REST gateway and the
// status page make in process. No network connection has this type, so
// no caller from outside can be taken for the gateway.
type gatewayAddr struct{}

func (gatewayAddr) Network() string { return "tokenbroker-gateway" }
func (gatewayAddr) String() string  { return "in-process" }

// gatewayPeer is the peer every in-process call carries, as a gRPC call
// carries its connection's.
var gatewayPeer = &peer.Peer{Addr: gatewayAddr{}, LocalAddr: gatewayAddr{}}

// InternalTransport says whether a call's peer is the REST gateway (or the
// status page) in this process: its metadata was made by this server's
// HTTP side from a request the HTTP middleware has seen.
func InternalTransport(addr net.Addr) bool {
	_, ok := addr.(gatewayAddr)
	return ok
}

// inProcess is the TokenService as the gateway calls it. It implements
// every method; the embedded type only satisfies the generated interface.
type inProcess struct {
	tokenbrokerv1.UnimplementedTokenServiceServer

	svc   tokenbrokerv1.TokenServiceServer
	stats []stats.Handler
	// slots bounds the calls in the service at once, as
	// MaxConcurrentStreams bounds them on the one gRPC connection the
	// gateway used to call through.
	slots chan struct{}
	// stopping is done once the server stops waiting for calls to drain.
	stopping context.Context

	// The service's methods behind the interceptor chain, made once
	// (unaryChain.bind).
	getToken, invalidateToken, listVendors, listCredentialStatus grpc.UnaryHandler
}

var _ tokenbrokerv1.TokenServiceServer = (*inProcess)(nil)

func newInProcess(svc tokenbrokerv1.TokenServiceServer, chain *unaryChain, handlers []stats.Handler, stopping context.Context) *inProcess {
	bind := func(method string, handler grpc.UnaryHandler) grpc.UnaryHandler {
		return chain.bind(&grpc.UnaryServerInfo{Server: svc, FullMethod: method}, handler)
	}
	return &inProcess{
		svc:      svc,
		stats:    handlers,
		slots:    make(chan struct{}, MaxConcurrentStreams),
		stopping: stopping,
		getToken: bind(tokenbrokerv1.TokenService_GetToken_FullMethodName, func(ctx context.Context, req any) (any, error) {
			return svc.GetToken(ctx, req.(*tokenbrokerv1.GetTokenRequest))
		}),
		invalidateToken: bind(tokenbrokerv1.TokenService_InvalidateToken_FullMethodName, func(ctx context.Context, req any) (any, error) {
			return svc.InvalidateToken(ctx, req.(*tokenbrokerv1.InvalidateTokenRequest))
		}),
		listVendors: bind(tokenbrokerv1.TokenService_ListVendors_FullMethodName, func(ctx context.Context, req any) (any, error) {
			return svc.ListVendors(ctx, req.(*tokenbrokerv1.ListVendorsRequest))
		}),
		listCredentialStatus: bind(tokenbrokerv1.TokenService_ListCredentialStatus_FullMethodName, func(ctx context.Context, req any) (any, error) {
			return svc.ListCredentialStatus(ctx, req.(*tokenbrokerv1.ListCredentialStatusRequest))
		}),
	}
}

func (p *inProcess) GetToken(ctx context.Context, req *tokenbrokerv1.GetTokenRequest) (*tokenbrokerv1.GetTokenResponse, error) {
	resp, err := p.call(ctx, tokenbrokerv1.TokenService_GetToken_FullMethodName, req, p.getToken)
	return answer[*tokenbrokerv1.GetTokenResponse](resp, err)
}

func (p *inProcess) InvalidateToken(ctx context.Context, req *tokenbrokerv1.InvalidateTokenRequest) (*tokenbrokerv1.InvalidateTokenResponse, error) {
	resp, err := p.call(ctx, tokenbrokerv1.TokenService_InvalidateToken_FullMethodName, req, p.invalidateToken)
	return answer[*tokenbrokerv1.InvalidateTokenResponse](resp, err)
}

func (p *inProcess) ListVendors(ctx context.Context, req *tokenbrokerv1.ListVendorsRequest) (*tokenbrokerv1.ListVendorsResponse, error) {
	resp, err := p.call(ctx, tokenbrokerv1.TokenService_ListVendors_FullMethodName, req, p.listVendors)
	return answer[*tokenbrokerv1.ListVendorsResponse](resp, err)
}

func (p *inProcess) ListCredentialStatus(ctx context.Context, req *tokenbrokerv1.ListCredentialStatusRequest) (*tokenbrokerv1.ListCredentialStatusResponse, error) {
	resp, err := p.call(ctx, tokenbrokerv1.TokenService_ListCredentialStatus_FullMethodName, req, p.listCredentialStatus)
	return answer[*tokenbrokerv1.ListCredentialStatusResponse](resp, err)
}

// call runs method's handler, the chain bound to it, behind what the gRPC
// server runs around a unary call.
func (p *inProcess) call(ctx context.Context, method string, req any, handler grpc.UnaryHandler) (any, error) {
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	defer func() { <-p.slots }()

	ctx = peer.NewContext(ctx, gatewayPeer)
	var begin time.Time
	if len(p.stats) > 0 {
		begin = time.Now()
		for _, h := range p.stats {
			ctx = h.TagRPC(ctx, &stats.RPCTagInfo{FullMethodName: method})
		}
		for _, h := range p.stats {
			h.HandleRPC(ctx, &stats.Begin{BeginTime: begin})
		}
	}
	resp, err := handler(ctx, req)
	if err != nil {
		resp, err = nil, p.statusOf(err)
	}
	if len(p.stats) > 0 {
		end := &stats.End{BeginTime: begin, EndTime: time.Now(), Error: err}
		for _, h := range p.stats {
			h.HandleRPC(ctx, end)
		}
	}
	return resp, err
}

// statusOf is the status a gRPC client would have received for err: the
// server sends a status error's status, a context error's code, UNKNOWN
// for anything else; a call still running when the server stopped
// waiting for the drain had its stream closed under it (UNAVAILABLE).
func (p *inProcess) statusOf(err error) error {
	if p.stopping.Err() != nil {
		return status.Error(codes.Unavailable, "the server is shutting down")
	}
	st, ok := status.FromError(err)
	if !ok {
		st = status.FromContextError(err)
	}
	return st.Err()
}

// answer is a handler's result as the method's response type.
func answer[T any](resp any, err error) (T, error) {
	if err != nil {
		var none T
		return none, err
	}
	m, ok := resp.(T)
	if !ok {
		return m, status.Error(codes.Internal, "internal error")
	}
	return m, nil
}

// statusLister is the status page's way to the service: the in-process
// path, with the page's outgoing metadata handed over as incoming, as a
// gRPC connection would carry it.
type statusLister struct{ p *inProcess }

func (l statusLister) ListCredentialStatus(ctx context.Context, req *tokenbrokerv1.ListCredentialStatusRequest, _ ...grpc.CallOption) (*tokenbrokerv1.ListCredentialStatusResponse, error) {
	md, _ := metadata.FromOutgoingContext(ctx)
	for key, vals := range md {
		if strings.HasSuffix(key, "-bin") {
			continue // binary values: any bytes
		}
		for _, v := range vals {
			if !printableASCII(v) {
				// What a gRPC client refuses to send.
				return nil, status.Errorf(codes.Internal, "metadata %q has a value that is not printable ASCII", key)
			}
		}
	}
	ctx = metadata.NewIncomingContext(metadata.NewOutgoingContext(ctx, nil), md)
	return l.p.ListCredentialStatus(ctx, req)
}

// printableASCII says whether v is a valid gRPC metadata text value.
func printableASCII(v string) bool {
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] > 0x7e {
			return false
		}
	}
	return true
}
