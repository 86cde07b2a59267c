package service

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
	"github.com/tokenbroker/tokenbroker/secret"
)

// TestUseSwapsTheWholeConfiguration: after Use, new calls see the new
// profiles; a call pinned to the old snapshot still sees the old ones; a
// changed secret gives another cache key (the old token is not reached).
func TestUseSwapsTheWholeConfiguration(t *testing.T) {
	t.Parallel()
	var base Config
	s, v := newTestService(t, 3600, func(c *Config) { base = *c })
	ctx := context.Background()
	old := NewSnapshot(base)
	first, err := s.GetToken(ctx, &tokenbrokerv1.GetTokenRequest{Profile: "p"})
	if err != nil {
		t.Fatal(err)
	}

	next := base
	next.Profiles = map[string]Profile{
		"p":   {Vendor: "smartdocumentor", Credentials: secret.Map{"client_id": secret.New("id"), "client_secret": secret.New("rotated")}},
		"new": base.Profiles["p2"],
	}
	s.Use(NewSnapshot(next))

	if _, err := s.GetToken(ctx, &tokenbrokerv1.GetTokenRequest{Profile: "new"}); err != nil {
		t.Fatalf("added profile: %v", err)
	}
	if _, err := s.GetToken(ctx, &tokenbrokerv1.GetTokenRequest{Profile: "p2"}); status.Code(err) != codes.NotFound {
		t.Fatalf("removed profile: err = %v, want NOT_FOUND", err)
	}
	rotated, err := s.GetToken(ctx, &tokenbrokerv1.GetTokenRequest{Profile: "p"})
	if err != nil {
		t.Fatal(err)
	}
	if rotated.AccessToken == first.AccessToken || rotated.CacheHit {
		t.Fatalf("after the secret changed the old token was served (hit=%v)", rotated.CacheHit)
	}
	if got := v.calls.Load(); got != 3 {
		t.Errorf("vendor calls = %d, want 3", got)
	}

	pinned := WithSnapshot(ctx, old)
	if _, err := s.GetToken(pinned, &tokenbrokerv1.GetTokenRequest{Profile: "p2"}); err != nil {
		t.Fatalf("a call pinned to the old configuration lost its profile: %v", err)
	}
	again, err := s.GetToken(pinned, &tokenbrokerv1.GetTokenRequest{Profile: "p"})
	if err != nil {
		t.Fatal(err)
	}
	if again.AccessToken != first.AccessToken {
		t.Error("a call pinned to the old configuration did not reach the old token")
	}
}
