package client_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
)

// fakeBroker is an in-memory TokenService behind a grpc.ClientConnInterface,
// so client tests can run inside a testing/synctest bubble (no sockets, no
// goroutines outside the bubble). It keeps the broker's contract
// (docs/design.md, Token semantics): one cached token; InvalidateToken is
// a compare-and-delete; force_refresh bypasses the cache unless the cached
// token was fetched less than forceRefreshInterval ago.
type fakeBroker struct {
	tokenTTL             time.Duration
	forceRefreshInterval time.Duration

	mu        sync.Mutex
	cached    string
	fetchedAt time.Time
	issued    int            // tokens "fetched from the vendor"
	calls     map[string]int // RPCs by method name
	forced    int            // GetToken calls with force_refresh
	// invalidateGate, when set, holds an InvalidateToken before it takes
	// effect until the channel is closed (only the first call; it is
	// cleared when taken).
	invalidateGate chan struct{}
	// staleReads makes that many GetToken calls (without force_refresh)
	// answer the token cached before the last invalidation: a replica
	// that has not heard of it yet.
	staleReads  int
	lastDropped string
	// reissue makes the "vendor" answer the same access token again (some
	// vendors do until the token expires).
	reissue bool
}

func newFakeBroker() *fakeBroker {
	return &fakeBroker{tokenTTL: time.Hour, forceRefreshInterval: 5 * time.Second, calls: map[string]int{}}
}

// gateInvalidate holds the next InvalidateToken until the returned channel
// is closed.
func (b *fakeBroker) gateInvalidate() chan struct{} {
	gate := make(chan struct{})
	b.mu.Lock()
	b.invalidateGate = gate
	b.mu.Unlock()
	return gate
}

func (b *fakeBroker) count(rpc string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.calls[rpc]
}

func (b *fakeBroker) tokensIssued() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.issued
}

// Invoke implements grpc.ClientConnInterface.
func (b *fakeBroker) Invoke(ctx context.Context, method string, args, reply any, _ ...grpc.CallOption) error {
	rpc := method[strings.LastIndexByte(method, '/')+1:]
	b.mu.Lock()
	b.calls[rpc]++
	gate := b.invalidateGate
	if rpc == "InvalidateToken" {
		b.invalidateGate = nil
	}
	b.mu.Unlock()
	switch rpc {
	case "GetToken":
		proto.Merge(reply.(proto.Message), b.getToken(args.(*tokenbrokerv1.GetTokenRequest)))
	case "InvalidateToken":
		if gate != nil {
			select {
			case <-gate:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		proto.Merge(reply.(proto.Message), b.invalidate(args.(*tokenbrokerv1.InvalidateTokenRequest)))
	default:
		return fmt.Errorf("fakeBroker: %s not implemented", method)
	}
	return nil
}

// NewStream implements grpc.ClientConnInterface.
func (b *fakeBroker) NewStream(context.Context, *grpc.StreamDesc, string, ...grpc.CallOption) (grpc.ClientStream, error) {
	return nil, fmt.Errorf("fakeBroker: no streams")
}

func (b *fakeBroker) getToken(req *tokenbrokerv1.GetTokenRequest) *tokenbrokerv1.GetTokenResponse {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	if req.GetForceRefresh() {
		b.forced++
	}
	if !req.GetForceRefresh() && b.staleReads > 0 && b.lastDropped != "" {
		b.staleReads--
		return b.response(b.lastDropped, now)
	}
	fresh := b.cached != "" && now.Sub(b.fetchedAt) < b.forceRefreshInterval
	if b.cached == "" || (req.GetForceRefresh() && !fresh) {
		if !b.reissue || b.cached == "" {
			b.issued++
			b.cached = fmt.Sprintf("token-%d", b.issued)
		}
		b.fetchedAt = now
	}
	return b.response(b.cached, now)
}

func (b *fakeBroker) response(token string, now time.Time) *tokenbrokerv1.GetTokenResponse {
	left := b.fetchedAt.Add(b.tokenTTL).Sub(now)
	return &tokenbrokerv1.GetTokenResponse{
		AccessToken: token,
		TokenType:   "Bearer",
		ExpiresIn:   int32(left / time.Second),
		ExpiresAt:   timestamppb.New(b.fetchedAt.Add(b.tokenTTL)),
		Scope:       "WebAPI",
	}
}

func (b *fakeBroker) invalidate(req *tokenbrokerv1.InvalidateTokenRequest) *tokenbrokerv1.InvalidateTokenResponse {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.reissue || b.cached == "" || b.cached != req.GetAccessToken() {
		return &tokenbrokerv1.InvalidateTokenResponse{}
	}
	b.lastDropped, b.cached = b.cached, ""
	return &tokenbrokerv1.InvalidateTokenResponse{Invalidated: true}
}

// fakeAPI is a vendor API as an http.RoundTripper (no sockets): it answers
// 401 to revoked tokens, 200 otherwise, and can hold requests to a path
// until a gate is closed.
type fakeAPI struct {
	mu      sync.Mutex
	revoked map[string]bool
	seen    []string // "path token", in order
	gates   map[string]chan struct{}
}

func newFakeAPI() *fakeAPI {
	return &fakeAPI{revoked: map[string]bool{}, gates: map[string]chan struct{}{}}
}

func (a *fakeAPI) revoke(token string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.revoked[token] = true
}

// hold makes requests to path wait until the returned channel is closed.
func (a *fakeAPI) hold(path string) chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	gate := make(chan struct{})
	a.gates[path] = gate
	return gate
}

func (a *fakeAPI) requests() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.seen...)
}

func (a *fakeAPI) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		_, _ = io.Copy(io.Discard, req.Body)
		req.Body.Close()
	}
	token, _ := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
	a.mu.Lock()
	gate := a.gates[req.URL.Path]
	a.mu.Unlock()
	if gate != nil {
		<-gate
	}
	a.mu.Lock()
	a.seen = append(a.seen, req.URL.Path+" "+token)
	status := http.StatusOK
	if a.revoked[token] {
		status = http.StatusUnauthorized
	}
	a.mu.Unlock()
	return &http.Response{
		StatusCode: status,
		Status:     http.StatusText(status),
		Header:     http.Header{},
		Body:       io.NopCloser(strings.NewReader("")),
		Request:    req,
	}, nil
}
