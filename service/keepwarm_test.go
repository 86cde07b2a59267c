package service

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
	"github.com/tokenbroker/tokenbroker/secret"
	"github.com/tokenbroker/tokenbroker/vendors"
)

// TestKeepWarm: with no caller at all, a keep_warm profile's token is
// fetched and then refreshed at its refresh-ahead point, once per token;
// a profile without keep_warm is never fetched.
func TestKeepWarm(t *testing.T) {
	t.Parallel()
	warm, cold := &switchingVendor{life: 2}, &switchingVendor{life: 2}
	warmSrv, coldSrv := httptest.NewServer(warm), httptest.NewServer(cold)
	t.Cleanup(warmSrv.Close)
	t.Cleanup(coldSrv.Close)
	s := New(Config{
		VendorSettings: map[string]vendors.Settings{"smartdocumentor": {}},
		Profiles: map[string]Profile{
			"warm": {Vendor: "smartdocumentor", KeepWarm: true, Settings: vendors.Settings{"token_url": warmSrv.URL + "/connect/token"},
				Credentials: secret.Map{"client_id": secret.New("id"), "client_secret": secret.New("s1")}},
			"cold": {Vendor: "smartdocumentor", Settings: vendors.Settings{"token_url": coldSrv.URL + "/connect/token"},
				Credentials: secret.Map{"client_id": secret.New("id"), "client_secret": secret.New("s2")}},
		},
		FingerprintKey: []byte("k"),
		Health:         Health{KeepWarmInterval: 100 * time.Millisecond},
	})
	t.Cleanup(s.Close)
	began := time.Now()
	// The startup fetch and two refreshes: 2 s tokens refreshed at 75-85%
	// of their life.
	eventually(t, "three vendor requests", func() bool { return warm.calls.Load() >= 3 })
	elapsed := time.Since(began)
	if most := int64(elapsed/(1500*time.Millisecond)) + 1; warm.calls.Load() > most {
		t.Fatalf("%d vendor requests in %v; want at most %d, one per token", warm.calls.Load(), elapsed, most)
	}
	resp, err := s.GetToken(context.Background(), &tokenbrokerv1.GetTokenRequest{Profile: "warm", MinTtl: durationpb.New(0)})
	if err != nil || !resp.CacheHit {
		t.Fatalf("the first caller: %v, %v; want a cache hit", resp, err)
	}
	if n := cold.calls.Load(); n != 0 {
		t.Fatalf("the profile without keep_warm was fetched %d times", n)
	}
}
