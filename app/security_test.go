package app

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/tokenbroker/tokenbroker/auth"
	"github.com/tokenbroker/tokenbroker/config"
)

// TestForgedCertificateHeaderStrippedWithAndWithoutPolicy: the gateway
// forwards auth.ForwardedCertHeader to gRPC, so a caller's own value is
// removed from every REST request, whether or not a caller policy is
// loaded (docs/design.md, Security model).
func TestForgedCertificateHeaderStrippedWithAndWithoutPolicy(t *testing.T) {
	t.Parallel()
	withPolicy, err := auth.New(auth.Config{
		Clients: map[string]auth.Client{"a": {APIKeySHA256: []string{"0000000000000000000000000000000000000000000000000000000000000000"}, Allow: []string{"p"}}},
		Logger:  slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		policy *auth.Policy
	}{
		{"no policy", nil},
		{"policy", withPolicy},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a := &App{log: slog.New(slog.DiscardHandler)}
			a.config.Store(&configGeneration{cfg: config.Defaults(), policy: tc.policy})
			var seen []string
			h := a.forwardCertificates(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
				seen = r.Header.Values(auth.ForwardedCertHeader)
			}))
			for _, name := range []string{auth.ForwardedCertHeader, "x-tokenbroker-client-cert", "X-TOKENBROKER-CLIENT-CERT"} {
				seen = nil
				req := httptest.NewRequest(http.MethodPost, "/v1/token", nil)
				req.Header.Add(name, "MIIB-forged")
				req.Header.Add(name, "second")
				h.ServeHTTP(httptest.NewRecorder(), req)
				if len(seen) != 0 {
					t.Fatalf("header %s reached the gateway: %q", name, seen)
				}
			}
		})
	}
}
