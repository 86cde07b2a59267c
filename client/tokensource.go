package client

import (
	"context"
	"fmt"
	"sync"
	"time"

	"golang.org/x/oauth2"

	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
)

// tokenSource caches one broker token in the process.
type tokenSource struct {
	ctx context.Context
	api tokenbrokerv1.TokenServiceClient
	req *tokenbrokerv1.GetTokenRequest
	// margin is how long a token must stay valid to be handed out: the
	// request's min_ttl, so the local cache keeps the broker's promise.
	margin time.Duration
	now    func() time.Time

	// mu is held across a broker call, so concurrent callers wait for it
	// instead of each asking.
	mu  sync.Mutex
	tok *oauth2.Token
}

// Token implements oauth2.TokenSource.
func (ts *tokenSource) Token() (*oauth2.Token, error) { return ts.token(ts.ctx) }

// token returns the cached token while it stays valid for the margin,
// else a new one from the broker.
func (ts *tokenSource) token(ctx context.Context) (*oauth2.Token, error) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.tok != nil && ts.tok.Expiry.Sub(ts.now()) >= ts.margin {
		return ts.tok, nil
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	sent := ts.now()
	resp, err := ts.api.GetToken(ctx, ts.req)
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
	tok = tok.WithExtra(map[string]any{"scope": resp.GetScope()})
	ts.tok = tok
	return tok, nil
}

// invalidate forgets rejected (if it is the cached token) and tells the
// broker, which drops its cached token only if it is that same token.
func (ts *tokenSource) invalidate(ctx context.Context, rejected string) error {
	ts.mu.Lock()
	if ts.tok != nil && ts.tok.AccessToken == rejected {
		ts.tok = nil
	}
	ts.mu.Unlock()
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	_, err := ts.api.InvalidateToken(ctx, &tokenbrokerv1.InvalidateTokenRequest{
		Vendor:      ts.req.GetVendor(),
		Profile:     ts.req.GetProfile(),
		Credentials: ts.req.GetCredentials(),
		Params:      ts.req.GetParams(),
		AccessToken: rejected,
	})
	if err != nil {
		return fmt.Errorf("tokenbroker: InvalidateToken: %w", err)
	}
	return nil
}
