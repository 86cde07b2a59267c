package test

import (
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
	"github.com/tokenbroker/tokenbroker/testkit/brokertest"
	"github.com/tokenbroker/tokenbroker/vendorsim"
)

const sdProfile = `
profiles:
  acme-sd:
    vendor: smartdocumentor
    credentials: {client_id: demo-client, client_secret: demo-secret}
`

func sdCreds() map[string]string {
	return vendorsim.DemoAccounts()["smartdocumentor"]
}

func TestGetTokenGRPCThenCache(t *testing.T) {
	t.Parallel()
	sim := brokertest.StartSim(t)
	b := brokertest.StartBroker(t, sim, brokertest.SimConfig(t, sim, ""))
	ctx := ctxT(t)
	req := &tokenbrokerv1.GetTokenRequest{Vendor: "smartdocumentor", Credentials: sdCreds()}
	first, err := b.Client.GetToken(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if first.CacheHit || first.TokenType != "Bearer" || first.Scope != "WebAPI" || first.ExpiresIn < 3590 || first.ExpiresIn > 3600 {
		t.Fatalf("first = %v", first)
	}
	if !sim.ValidToken("smartdocumentor", first.AccessToken) {
		t.Fatal("the broker returned a token the simulator did not issue")
	}
	second, err := b.Client.GetToken(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if !second.CacheHit || second.AccessToken != first.AccessToken {
		t.Fatalf("second = %v, want a cache hit of the same token", second)
	}
	if n := sim.Requests("smartdocumentor"); n != 1 {
		t.Fatalf("upstream requests = %d, want 1", n)
	}
}

func TestGetTokenREST(t *testing.T) {
	t.Parallel()
	sim := brokertest.StartSim(t)
	b := brokertest.StartBroker(t, sim, brokertest.SimConfig(t, sim, sdProfile))
	code, hdr, body := postJSON(t, b.HTTP+"/v1/token", `{"profile":"acme-sd"}`)
	if code != 200 {
		t.Fatalf("status %d: %s", code, body)
	}
	if hdr.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control = %q", hdr.Get("Cache-Control"))
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{"access_token", "token_type", "expires_in", "expires_at", "scope", "cache_hit"} {
		if _, ok := got[field]; !ok {
			t.Errorf("REST answer lacks %s: %s", field, body)
		}
	}
	if _, ok := got["expires_in"].(float64); !ok {
		t.Errorf("expires_in is not a JSON number: %s", body)
	}
	_, _, body2 := postJSON(t, b.HTTP+"/v1/token", `{"profile":"acme-sd"}`)
	var again map[string]any
	_ = json.Unmarshal([]byte(body2), &again)
	if again["cache_hit"] != true || again["access_token"] != got["access_token"] {
		t.Fatalf("second REST call = %s", body2)
	}
}

func TestConcurrentColdCallersCauseOneFetch(t *testing.T) {
	t.Parallel()
	sim := brokertest.StartSim(t, vendorsim.WithLatency(50*time.Millisecond))
	b := brokertest.StartBroker(t, sim, brokertest.SimConfig(t, sim, sdProfile))
	const callers = 200
	sameTokenAtOnce(t, callers, func(int) tokenbrokerv1.TokenServiceClient { return b.Client }, &tokenbrokerv1.GetTokenRequest{Profile: "acme-sd"})
	if n := sim.Requests("smartdocumentor"); n != 1 {
		t.Fatalf("%d concurrent cold callers caused %d upstream requests, want 1", callers, n)
	}
	t.Logf("%d concurrent cold callers, %d upstream request", callers, sim.Requests("smartdocumentor"))
}

func TestMinTTLLongerThanCachedLifeRefetches(t *testing.T) {
	t.Parallel()
	sim := brokertest.StartSim(t)
	sim.SetTokenTTL("smartdocumentor", time.Minute)
	b := brokertest.StartBroker(t, sim, brokertest.SimConfig(t, sim, sdProfile))
	ctx := ctxT(t)
	first, err := b.Client.GetToken(ctx, &tokenbrokerv1.GetTokenRequest{Profile: "acme-sd"})
	if err != nil {
		t.Fatal(err)
	}
	hit, err := b.Client.GetToken(ctx, &tokenbrokerv1.GetTokenRequest{Profile: "acme-sd", MinTtl: durationpb.New(30 * time.Second)})
	if err != nil || !hit.CacheHit {
		t.Fatalf("min_ttl within the life: %v, %v", hit, err)
	}
	fresh, err := b.Client.GetToken(ctx, &tokenbrokerv1.GetTokenRequest{Profile: "acme-sd", MinTtl: durationpb.New(2 * time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if fresh.CacheHit || fresh.AccessToken == first.AccessToken {
		t.Fatalf("min_ttl beyond the cached life was served from cache: %v", fresh)
	}
	if n := sim.Requests("smartdocumentor"); n != 2 {
		t.Fatalf("upstream requests = %d, want 2", n)
	}
}

func TestInvalidateWithStaleTokenKeepsNewer(t *testing.T) {
	t.Parallel()
	sim := brokertest.StartSim(t)
	b := brokertest.StartBroker(t, sim, brokertest.SimConfig(t, sim, sdProfile))
	ctx := ctxT(t)
	first, err := b.Client.GetToken(ctx, &tokenbrokerv1.GetTokenRequest{Profile: "acme-sd"})
	if err != nil {
		t.Fatal(err)
	}
	inv, err := b.Client.InvalidateToken(ctx, &tokenbrokerv1.InvalidateTokenRequest{Profile: "acme-sd", AccessToken: first.AccessToken})
	if err != nil || !inv.Invalidated {
		t.Fatalf("invalidate current token: %v, %v", inv, err)
	}
	second, err := b.Client.GetToken(ctx, &tokenbrokerv1.GetTokenRequest{Profile: "acme-sd"})
	if err != nil || second.CacheHit || second.AccessToken == first.AccessToken {
		t.Fatalf("after invalidation: %v, %v", second, err)
	}
	stale, err := b.Client.InvalidateToken(ctx, &tokenbrokerv1.InvalidateTokenRequest{Profile: "acme-sd", AccessToken: first.AccessToken})
	if err != nil || stale.Invalidated {
		t.Fatalf("invalidate stale token: %v, %v", stale, err)
	}
	third, err := b.Client.GetToken(ctx, &tokenbrokerv1.GetTokenRequest{Profile: "acme-sd"})
	if err != nil || !third.CacheHit || third.AccessToken != second.AccessToken {
		t.Fatalf("a stale invalidation dropped the newer token: %v, %v", third, err)
	}
}

func TestErrorsMapToCodes(t *testing.T) {
	t.Parallel()
	sim := brokertest.StartSim(t)
	b := brokertest.StartBroker(t, sim, brokertest.SimConfig(t, sim, sdProfile))
	ctx := ctxT(t)
	tests := []struct {
		name     string
		req      *tokenbrokerv1.GetTokenRequest
		code     codes.Code
		reason   string
		field    string
		httpBody string
		httpCode int
	}{
		{"unknown vendor", &tokenbrokerv1.GetTokenRequest{Vendor: "nope", Credentials: map[string]string{"a": "b"}}, codes.NotFound, "", "",
			`{"vendor":"nope","credentials":{"a":"b"}}`, 404},
		{"unknown profile", &tokenbrokerv1.GetTokenRequest{Profile: "nope"}, codes.NotFound, "", "", `{"profile":"nope"}`, 404},
		{"no selector", &tokenbrokerv1.GetTokenRequest{}, codes.InvalidArgument, "", "vendor", `{}`, 400},
		{"missing credential", &tokenbrokerv1.GetTokenRequest{Vendor: "smartdocumentor", Credentials: map[string]string{"client_id": "x"}}, codes.InvalidArgument, "", "credentials.client_secret",
			`{"vendor":"smartdocumentor","credentials":{"client_id":"x"}}`, 400},
		{"negative min_ttl", &tokenbrokerv1.GetTokenRequest{Profile: "acme-sd", MinTtl: durationpb.New(-time.Second)}, codes.InvalidArgument, "", "min_ttl",
			`{"profile":"acme-sd","min_ttl":"-1s"}`, 400},
		{"invalid_client", &tokenbrokerv1.GetTokenRequest{Vendor: "smartdocumentor", Credentials: map[string]string{"client_id": "demo-client", "client_secret": "wrong"}},
			codes.FailedPrecondition, "VENDOR_REJECTED_CREDENTIALS", "",
			`{"vendor":"smartdocumentor","credentials":{"client_id":"demo-client","client_secret":"wrong2"}}`, 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := b.Client.GetToken(ctx, tc.req)
			st := status.Convert(err)
			if st.Code() != tc.code {
				t.Fatalf("code = %v (%s), want %v", st.Code(), st.Message(), tc.code)
			}
			for _, d := range st.Details() {
				switch d := d.(type) {
				case *errdetails.ErrorInfo:
					if d.Reason != tc.reason || d.Domain != "tokenbroker" || d.Metadata["vendor"] == "" {
						t.Errorf("ErrorInfo = %v", d)
					}
					if tc.reason == "VENDOR_REJECTED_CREDENTIALS" && d.Metadata["oauth_error"] != "invalid_client" {
						t.Errorf("oauth_error = %q", d.Metadata["oauth_error"])
					}
					tc.reason = ""
				case *errdetails.BadRequest:
					if len(d.FieldViolations) != 1 || d.FieldViolations[0].Field != tc.field {
						t.Errorf("BadRequest = %v, want field %s", d, tc.field)
					}
					tc.field = ""
				}
			}
			if tc.reason != "" || tc.field != "" {
				t.Errorf("missing details (reason %q, field %q) in %v", tc.reason, tc.field, st.Details())
			}
			code, _, body := postJSON(t, b.HTTP+"/v1/token", tc.httpBody)
			if code != tc.httpCode {
				t.Errorf("REST status = %d, want %d: %s", code, tc.httpCode, body)
			}
		})
	}
	// Bodies the gateway itself cannot decode are INVALID_ARGUMENT with a
	// BadRequest field violation too (docs/design.md, API and errors).
	for _, bad := range []string{`{"profile": "acme-sd",`, `{"profile":"acme-sd","bogus":1}`, `{"min_ttl":"soon"}`} {
		code, _, body := postJSON(t, b.HTTP+"/v1/token", bad)
		if code != 400 || !strings.Contains(body, `"@type":"type.googleapis.com/google.rpc.BadRequest"`) || !strings.Contains(body, `"field":"body"`) {
			t.Errorf("malformed body %s: status %d, want 400 with a BadRequest field violation: %s", bad, code, body)
		}
	}
}

func TestNegativeCacheOneRequestForManyWrongPasswords(t *testing.T) {
	t.Parallel()
	sim := brokertest.StartSim(t)
	b := brokertest.StartBroker(t, sim, brokertest.SimConfig(t, sim, ""))
	ctx := ctxT(t)
	var wg sync.WaitGroup
	for range 500 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := b.Client.GetToken(ctx, &tokenbrokerv1.GetTokenRequest{Vendor: "smartdocumentor",
				Credentials: map[string]string{"client_id": "demo-client", "client_secret": "wrong"}})
			if status.Code(err) != codes.FailedPrecondition {
				t.Errorf("code = %v", status.Code(err))
			}
		}()
	}
	wg.Wait()
	if n := sim.Requests("smartdocumentor"); n != 1 {
		t.Fatalf("500 calls with a wrong secret caused %d upstream requests, want 1", n)
	}
}
