package service

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
	"github.com/tokenbroker/tokenbroker/secret"
	"github.com/tokenbroker/tokenbroker/store"
	"github.com/tokenbroker/tokenbroker/vendors"
)

// benchService is a service with one profile whose vendor answers at once.
func benchService(b *testing.B) *Service {
	b.Helper()
	vendor := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"access_token":"tok-0123456789abcdef0123456789abcdef","token_type":"Bearer","expires_in":3600,"scope":"WebAPI"}`))
	}))
	b.Cleanup(vendor.Close)
	s := New(Config{
		VendorSettings: map[string]vendors.Settings{"smartdocumentor": {"token_url": vendor.URL + "/connect/token"}},
		Profiles: map[string]Profile{"bench": {
			Vendor:      "smartdocumentor",
			Credentials: secret.Map{"client_id": secret.New("id"), "client_secret": secret.New("secret")},
		}},
		FingerprintKey: []byte("0123456789abcdef0123456789abcdef"),
		Store:          store.NewMemory(0),
	})
	b.Cleanup(s.Close)
	return s
}

func BenchmarkGetTokenCachedProfile(b *testing.B) {
	benchCached(b, &tokenbrokerv1.GetTokenRequest{Profile: "bench", MinTtl: durationpb.New(0)})
}

func BenchmarkGetTokenCachedInline(b *testing.B) {
	benchCached(b, &tokenbrokerv1.GetTokenRequest{Vendor: "smartdocumentor", Credentials: map[string]string{"client_id": "id", "client_secret": "secret"}})
}

// benchCached caches req's token, then measures GetToken answering it
// from the cache.
func benchCached(b *testing.B, req *tokenbrokerv1.GetTokenRequest) {
	s := benchService(b)
	ctx := context.Background()
	if _, err := s.GetToken(ctx, req); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.GetToken(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFingerprint(b *testing.B) {
	s := benchService(b)
	creds := secret.Map{"client_id": secret.New("id"), "client_secret": secret.New("secret")}
	settings := vendors.Settings{"token_url": "https://cloud.smartdocumentor.net/connect/token"}
	b.ReportAllocs()
	for b.Loop() {
		_ = fingerprint(s.snapshot.Load().fingerprintKey, "inline", "smartdocumentor", "https://cloud.smartdocumentor.net/connect/token", creds, nil, settings)
	}
}

func BenchmarkResponse(b *testing.B) {
	s := benchService(b)
	e := store.Entry{AccessToken: "tok", TokenType: "Bearer", Scope: "WebAPI", ExpiresAt: time.Now().Add(time.Hour)}
	r := &resolved{}
	b.ReportAllocs()
	for b.Loop() {
		_ = s.response(e, true, r, time.Now())
	}
}
