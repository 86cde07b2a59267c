package test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
	"github.com/tokenbroker/tokenbroker/testkit/brokertest"
	"github.com/tokenbroker/tokenbroker/testkit/fakeissuer"
)

// TestJWTCallersAgainstServerProcesses runs two server processes that
// trust a fake Kubernetes issuer (one reads its JWKS URL, the other finds
// it by OIDC discovery, both over https with a private CA) and tries a
// service-account token, a namespace wildcard, an API key beside it, and
// every bad token of docs/design.md (Security model) over gRPC and REST:
// each bad one is UNAUTHENTICATED (401), audited with its reason, and
// never quoted.
func TestJWTCallersAgainstServerProcesses(t *testing.T) {
	bin := brokertest.ServerBinary(t)
	sim := brokertest.StartSim(t)
	is := fakeissuer.Start()
	t.Cleanup(is.Close)
	caFile := filepath.Join(t.TempDir(), "issuer-ca.pem")
	if err := is.WriteCA(caFile); err != nil {
		t.Fatal(err)
	}
	clients := `clients:
  billing:
    jwt_subject: "system:serviceaccount:billing:*"
    allow: [acme-sd]
  reporting:
    jwt_subject: system:serviceaccount:data:reporting
    allow: [acme-sd]
  legacy:
    api_key_sha256: ` + sha256Hex("legacy-api-key") + `
    allow: [acme-sd]
`
	issuerYAML := func(keys string) string {
		return `auth:
  jwt_issuers:
    - issuer: ` + is.URL() + `
      audiences: [tokenbroker]
      ` + keys + `
      jwks_ca_file: ` + caFile + `
      max_token_lifetime: 24h
`
	}
	f := startMixedFleet(t, bin, sim, []string{
		fleetYAML(sim, "", clients+issuerYAML("jwks_url: "+is.JWKSURL())),
		fleetYAML(sim, "", clients+issuerYAML("discovery: true")),
	})

	now := time.Now()
	k8s := func(ns, sa string) map[string]any { return is.Kubernetes(ns, sa, "tokenbroker", now, time.Hour) }
	good := k8s("billing", "invoice-worker")
	stranger, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	alter := func(claims map[string]any, key string, value any) map[string]any {
		out := map[string]any{}
		for k, v := range claims {
			out[k] = v
		}
		out[key] = value
		return out
	}
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + payloadOf(good) + "."
	goodToken := is.Sign(good)
	parts := strings.Split(goodToken, ".")
	tampered := parts[0] + "." + payloadOf(alter(good, "sub", "system:serviceaccount:billing:admin")) + "." + parts[2]

	accepted := []struct {
		name  string
		token string
	}{
		{"service account by namespace wildcard", goodToken},
		{"another service account of the namespace", is.Sign(k8s("billing", "payment-worker"))},
		{"exact subject", is.Sign(k8s("data", "reporting"))},
		{"API key beside JWTs", "legacy-api-key"},
	}
	refused := []struct {
		name, token, reason string
	}{
		{"expired", is.Sign(alter(alter(good, "exp", now.Add(-5*time.Minute).Unix()), "iat", now.Add(-time.Hour).Unix())), "expired"},
		{"nbf in the future", is.Sign(alter(good, "nbf", now.Add(10*time.Minute).Unix())), "not valid yet"},
		{"wrong aud", is.Sign(alter(good, "aud", []string{"vault"})), "audience"},
		{"wrong iss", is.Sign(alter(good, "iss", "https://evil.example")), "issuer"},
		{"alg none", none, `algorithm \"none\" is not allowed`},
		{"HS256 keyed with the public key", fakeissuer.SignWith(is.JWKS(), jose.HS256, "", good), `algorithm \"HS256\" is not allowed`},
		{"unknown kid", fakeissuer.SignWith(stranger, jose.ES256, "rotated-away", good), "key id"},
		{"tampered payload", tampered, "signature"},
		{"20 KiB token", is.Sign(alter(good, "pad", strings.Repeat("p", 20<<10))), "larger than 16 KiB"},
		{"subject of no client", is.Sign(k8s("data", "intruder")), "no client's jwt_subject or spiffe_id matches"},
	}

	for i, r := range f.replicas {
		t.Run(fmt.Sprintf("replica %d", i), func(t *testing.T) {
			for _, tc := range accepted {
				ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tc.token), 20*time.Second)
				resp, err := r.client.GetToken(ctx, &tokenbrokerv1.GetTokenRequest{Profile: "acme-sd"})
				cancel()
				if err != nil || resp.GetAccessToken() == "" {
					t.Fatalf("gRPC %s: %v", tc.name, err)
				}
				if code, body := restToken(t, r.HTTPAddr, tc.token); code != http.StatusOK {
					t.Fatalf("REST %s: %d %s", tc.name, code, body)
				}
			}
			for _, tc := range refused {
				ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tc.token), 20*time.Second)
				_, err := r.client.GetToken(ctx, &tokenbrokerv1.GetTokenRequest{Profile: "acme-sd"})
				cancel()
				if status.Code(err) != codes.Unauthenticated {
					t.Errorf("gRPC %s: %v, want Unauthenticated", tc.name, err)
				}
				if code, body := restToken(t, r.HTTPAddr, tc.token); code != http.StatusUnauthorized {
					t.Errorf("REST %s: %d %s, want 401", tc.name, code, body)
				}
			}
			// The unknown kid made one JWKS fetch at most; asking again
			// within 30 s fetches nothing more.
			before := is.Fetches()
			for range 3 {
				restToken(t, r.HTTPAddr, refused[6].token)
			}
			if after := is.Fetches(); after != before {
				t.Errorf("unknown kid within the refetch interval: %d more JWKS fetches", after-before)
			}
			// Log lines are written in batches (internal/logbuf): wait
			// for the last refusal's line.
			var logs []byte
			brokertest.Eventually(t, "the audit lines in the log", 10*time.Second, brokertest.Holds(func() bool {
				logs, _ = os.ReadFile(r.LogFile())
				return strings.Count(string(logs), refused[len(refused)-1].reason) >= 2
			}))
			for _, tc := range refused {
				if !strings.Contains(string(logs), tc.reason) {
					t.Errorf("no audit line names %q for %s", tc.reason, tc.name)
				}
				sig := tc.token[strings.LastIndex(tc.token, ".")+1:]
				if len(sig) > 16 && strings.Contains(string(logs), sig) {
					t.Errorf("the log quotes the %s token", tc.name)
				}
			}
			if strings.Contains(string(logs), `"level":"ERROR"`) || strings.Contains(string(logs), "panic") {
				t.Errorf("errors in the log:\n%s", logs)
			}
		})
	}
	// Both replicas fetched the JWKS (one by URL, one after discovery), and
	// few times: once at the first token, at most once more for the
	// unknown kid.
	if n := is.Fetches(); n < 2 || n > 4 {
		t.Errorf("%d JWKS fetches by two replicas, want 2 to 4", n)
	}

	grpcCall := func(r *replica, token string) error {
		ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token), 20*time.Second)
		defer cancel()
		_, err := r.client.GetToken(ctx, &tokenbrokerv1.GetTokenRequest{Profile: "acme-sd"})
		return err
	}
	// The JWKS endpoint goes down: tokens signed with a known key keep
	// working (new tokens, not remembered ones).
	is.SetDown(true)
	for i, r := range f.replicas {
		if err := grpcCall(r, is.Sign(k8s("billing", fmt.Sprintf("down-%d", i)))); err != nil {
			t.Errorf("replica %d with the JWKS endpoint down: %v", i, err)
		}
	}
	is.SetDown(false)

	if testing.Short() {
		return
	}
	// The issuer rotates its key and withdraws the old one. A token of the
	// new key is refused until the refetch interval (30 s) since the last
	// fetch has passed, then accepted after one refetch; a token of the
	// withdrawn key is refused from then on.
	oldKeyToken := is.Sign(k8s("billing", "old-key"))
	is.Rotate(true)
	newKeyToken := is.Sign(k8s("billing", "new-key"))
	// One bound for the whole fleet: the replicas refetch at about the same
	// time.
	rotated := time.Now()
	for i, r := range f.replicas {
		brokertest.Eventually(t, fmt.Sprintf("replica %d: the rotated key's token", i), 60*time.Second-time.Since(rotated), func() error {
			err := grpcCall(r, newKeyToken)
			if err != nil && status.Code(err) != codes.Unauthenticated {
				t.Fatalf("replica %d: the rotated key's token: %v", i, err)
			}
			return err
		})
		if err := grpcCall(r, oldKeyToken); status.Code(err) != codes.Unauthenticated {
			t.Errorf("replica %d: a token of the withdrawn key: %v, want Unauthenticated", i, err)
		}
	}
}

func payloadOf(claims map[string]any) string {
	raw, err := json.Marshal(claims)
	if err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(raw)
}

// restToken posts a GetToken for acme-sd with the bearer credential.
func restToken(t *testing.T, httpAddr, credential string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+httpAddr+"/v1/token", strings.NewReader(`{"profile":"acme-sd"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+credential)
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body strings.Builder
	buf := make([]byte, 4096)
	n, _ := resp.Body.Read(buf)
	body.Write(buf[:n])
	return resp.StatusCode, body.String()
}
