// Package client is the Go client of tokenbroker's TokenService
// (docs/design.md, API and errors; proto/tokenbroker/v1/token_service.proto).
//
// A Client turns a GetTokenRequest into an oauth2.TokenSource
// (golang.org/x/oauth2) that keeps the token in the process until it gets
// close to expiry, and into an http.RoundTripper that authorizes requests
// to the vendor's API and, when the vendor answers 401, tells the broker
// the token was rejected (InvalidateToken) and retries once with a new one.
//
//	conn, _ := grpc.NewClient("tokenbroker:9090", grpc.WithTransportCredentials(creds))
//	tb := client.New(conn)
//	api := &http.Client{Transport: tb.Transport(&tokenbrokerv1.GetTokenRequest{Profile: "acme-smartdoc"}, nil)}
//	resp, err := api.Get("https://cloud.smartdocumentor.net/api/...")
package client

import (
	"context"
	"net/http"
	"time"

	"golang.org/x/oauth2"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
)

// Defaults matching the broker's (docs/design.md, Token semantics).
const (
	// DefaultMinTTL is the broker's min_ttl when a request leaves it unset.
	DefaultMinTTL = 30 * time.Second
	// callTimeout bounds a broker call whose context has no deadline.
	callTimeout = 30 * time.Second
)

// Client calls a tokenbroker. It is safe for concurrent use.
type Client struct {
	api tokenbrokerv1.TokenServiceClient
}

// New returns a Client using conn (a *grpc.ClientConn to the broker's gRPC
// address, with the credentials the broker expects).
func New(conn grpc.ClientConnInterface) *Client {
	return &Client{api: tokenbrokerv1.NewTokenServiceClient(conn)}
}

// API returns the generated client, for calls the helpers do not cover
// (ListVendors).
func (c *Client) API() tokenbrokerv1.TokenServiceClient { return c.api }

// TokenSource returns a TokenSource for the token req describes. It asks
// the broker only when it holds no token that stays valid for req's
// min_ttl (30s when unset), so it can be called for every request. Every
// broker call uses ctx (bounded to 30s when ctx has no deadline).
// force_refresh in req is ignored: the rejected-token path is
// InvalidateToken, which the Transport uses.
//
// The TokenSource is safe for concurrent use; concurrent callers wait for
// one broker call.
func (c *Client) TokenSource(ctx context.Context, req *tokenbrokerv1.GetTokenRequest) oauth2.TokenSource {
	return c.newTokenSource(ctx, req)
}

// Transport returns an http.RoundTripper that sends each request through
// base (http.DefaultTransport when nil) with "Authorization: Bearer
// <token>", the token from a TokenSource for req. When the server answers
// 401 it reports the token as rejected to the broker (InvalidateToken names
// that token, so a burst of 401s causes one new vendor fetch; concurrent
// 401s for one token cause one InvalidateToken) and, if the request body
// can be sent again (http.NewRequest sets GetBody for the usual body
// types), retries once with a new token. The local token is forgotten only
// once the broker answered, and a rejected token is never sent again: when
// the broker still answers it, the transport asks with force_refresh, and
// when that brings it back too, the 401 stands and the next request fails
// with ErrRejectedToken. Broker calls use the HTTP request's context.
func (c *Client) Transport(req *tokenbrokerv1.GetTokenRequest, base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return &transport{source: c.newTokenSource(context.Background(), req), base: base}
}

func (c *Client) newTokenSource(ctx context.Context, req *tokenbrokerv1.GetTokenRequest) *tokenSource {
	req = proto.Clone(req).(*tokenbrokerv1.GetTokenRequest)
	req.ForceRefresh = false
	margin := DefaultMinTTL
	if req.MinTtl != nil {
		margin = req.MinTtl.AsDuration()
	}
	return newTokenSource(ctx, c.api, req, margin)
}

// withTimeout bounds a broker call whose context has no deadline.
func withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, callTimeout)
}
