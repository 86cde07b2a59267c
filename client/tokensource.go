package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/oauth2"
	"google.golang.org/protobuf/proto"

	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
)

// ErrRejectedToken is returned (wrapped) when the broker answers, even to
// force_refresh, a token that a server has rejected and the broker was told
// about: its cached token was fetched less than force_refresh_interval ago,
// or the vendor issued the same token again. Retry later.
var ErrRejectedToken = errors.New("tokenbroker: the broker answered a token the server rejected with 401; it has no other yet, retry later")

// rejectedFallbackTTL is how long a rejected token is remembered when its
// expiry is unknown.
const rejectedFallbackTTL = time.Hour

// tokenSource caches one broker token in the process.
type tokenSource struct {
	ctx context.Context
	api tokenbrokerv1.TokenServiceClient
	req *tokenbrokerv1.GetTokenRequest
	// forced is req with force_refresh, asked only when the broker
	// answers a token in rejected.
	forced *tokenbrokerv1.GetTokenRequest
	// margin is how long a token must stay valid to be handed out: the
	// request's min_ttl, so the local cache keeps the broker's promise.
	margin time.Duration
	now    func() time.Time

	// lock (a one-slot semaphore, so a waiter's context ends its wait) is
	// held across every broker call: concurrent callers wait for one
	// GetToken instead of each asking, and no GetToken runs while an
	// InvalidateToken is under way, when the broker may still answer the
	// token being invalidated. It guards the fields below.
	lock chan struct{}
	tok  *oauth2.Token
	// rejected holds the tokens a server answered 401 to and the broker
	// was told about, with their expiry: they are never handed out again,
	// whatever the broker answers (a replica that has not heard of the
	// invalidation, a vendor that reissues a token).
	rejected map[string]time.Time
}

func newTokenSource(ctx context.Context, api tokenbrokerv1.TokenServiceClient, req *tokenbrokerv1.GetTokenRequest, margin time.Duration) *tokenSource {
	forced := proto.Clone(req).(*tokenbrokerv1.GetTokenRequest)
	forced.ForceRefresh = true
	return &tokenSource{
		ctx: ctx, api: api, req: req, forced: forced, margin: margin, now: time.Now,
		lock:     make(chan struct{}, 1),
		rejected: map[string]time.Time{},
	}
}

// acquire takes ts.lock, or gives up when ctx ends first.
func (ts *tokenSource) acquire(ctx context.Context) error {
	select {
	case ts.lock <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("tokenbroker: waiting for another caller's broker call: %w", ctx.Err())
	}
}

func (ts *tokenSource) release() { <-ts.lock }

// Token implements oauth2.TokenSource.
func (ts *tokenSource) Token() (*oauth2.Token, error) { return ts.token(ts.ctx) }

// token returns the cached token while it stays valid for the margin,
// else a new one from the broker; never a token in ts.rejected.
func (ts *tokenSource) token(ctx context.Context) (*oauth2.Token, error) {
	if err := ts.acquire(ctx); err != nil {
		return nil, err
	}
	defer ts.release()
	if ts.tok != nil && ts.tok.Expiry.Sub(ts.now()) >= ts.margin {
		return ts.tok, nil
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	tok, err := ts.fetch(ctx, ts.req)
	if err != nil {
		return nil, err
	}
	if ts.isRejected(tok.AccessToken) {
		// The broker bypasses its cache for force_refresh unless its
		// token is younger than force_refresh_interval.
		if tok, err = ts.fetch(ctx, ts.forced); err != nil {
			return nil, err
		}
		if ts.isRejected(tok.AccessToken) {
			return nil, ErrRejectedToken
		}
	}
	ts.tok = tok
	return tok, nil
}

// fetch asks the broker for a token.
func (ts *tokenSource) fetch(ctx context.Context, req *tokenbrokerv1.GetTokenRequest) (*oauth2.Token, error) {
	sent := ts.now()
	resp, err := ts.api.GetToken(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("tokenbroker: GetToken: %w", err)
	}
	// expires_in counts from when the broker answered; counting it from
	// when the request was sent errs on the early side and needs no clock
	// agreement with the broker (expires_at does).
	tok := &oauth2.Token{
		AccessToken: resp.GetAccessToken(),
		TokenType:   resp.GetTokenType(),
		Expiry:      sent.Add(time.Duration(resp.GetExpiresIn()) * time.Second),
		ExpiresIn:   int64(resp.GetExpiresIn()),
	}
	return tok.WithExtra(map[string]any{"scope": resp.GetScope()}), nil
}

func (ts *tokenSource) isRejected(accessToken string) bool {
	_, ok := ts.rejected[accessToken]
	return ok
}

// invalidate reports rejected to the broker, which drops its cached token
// only if it is that same token (compare-and-delete), and, once the broker
// answered, forgets it here and never hands it out again. Concurrent
// reports of one token cause one InvalidateToken. When the broker cannot
// be told, the token stays cached, so the next 401 reports it again.
func (ts *tokenSource) invalidate(ctx context.Context, rejected *oauth2.Token) error {
	if err := ts.acquire(ctx); err != nil {
		return err
	}
	defer ts.release()
	if ts.isRejected(rejected.AccessToken) {
		return nil // another caller told the broker
	}
	callCtx, cancel := withTimeout(ctx)
	defer cancel()
	_, err := ts.api.InvalidateToken(callCtx, &tokenbrokerv1.InvalidateTokenRequest{
		Vendor:      ts.req.GetVendor(),
		Profile:     ts.req.GetProfile(),
		Credentials: ts.req.GetCredentials(),
		Params:      ts.req.GetParams(),
		AccessToken: rejected.AccessToken,
	})
	if err != nil {
		return fmt.Errorf("tokenbroker: InvalidateToken: %w", err)
	}
	now := ts.now()
	for token, expiry := range ts.rejected {
		if !expiry.After(now) {
			delete(ts.rejected, token) // no broker serves an expired token
		}
	}
	expiry := rejected.Expiry
	if expiry.IsZero() {
		expiry = now.Add(rejectedFallbackTTL)
	}
	ts.rejected[rejected.AccessToken] = expiry
	if ts.tok != nil && ts.tok.AccessToken == rejected.AccessToken {
		ts.tok = nil
	}
	return nil
}
