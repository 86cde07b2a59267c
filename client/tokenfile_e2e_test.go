package client_test

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/tokenbroker/tokenbroker/client"
	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
	"github.com/tokenbroker/tokenbroker/testkit/brokertest"
	"github.com/tokenbroker/tokenbroker/testkit/fakeissuer"
	"github.com/tokenbroker/tokenbroker/testkit/testpki"
)

// TestWithTokenFileAgainstABroker: a caller whose only credential is a
// projected service-account token file gets tokens through client.New's
// TokenSource, and its Transport's InvalidateToken after a 401 is
// authenticated the same way, against a real broker over TLS.
func TestWithTokenFileAgainstABroker(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	is := fakeissuer.Start()
	t.Cleanup(is.Close)
	jwks := filepath.Join(dir, "jwks.json")
	must(t, os.WriteFile(jwks, is.JWKS(), 0o600))
	ca, err := testpki.NewCA("broker CA")
	must(t, err)
	leaf, err := ca.Server("127.0.0.1", net.IPv4(127, 0, 0, 1))
	must(t, err)
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	must(t, os.WriteFile(certFile, leaf.CertPEM, 0o600))
	must(t, os.WriteFile(keyFile, leaf.KeyPEM, 0o600))
	sim := brokertest.StartSim(t)
	yaml := strings.NewReplacer("{issuer}", is.URL(), "{jwks}", jwks, "{cert}", certFile, "{key}", keyFile).Replace(`
shutdown_delay: 0s
profiles:
  demo-smartdocumentor:
    vendor: smartdocumentor
    credentials: {client_id: demo-client, client_secret: demo-secret}
auth:
  jwt_issuers:
    - {issuer: "{issuer}", audiences: [tokenbroker], jwks_file: "{jwks}"}
clients:
  invoicing:
    jwt_subject: system:serviceaccount:billing:invoice-worker
    allow: [demo-smartdocumentor]
tls: {cert_file: "{cert}", key_file: "{key}"}
`)
	b := brokertest.StartBroker(t, sim, brokertest.SimConfig(t, sim, yaml))

	tokenPath := filepath.Join(dir, "token")
	must(t, os.WriteFile(tokenPath, []byte(is.Sign(is.Kubernetes("billing", "invoice-worker", "tokenbroker", time.Now(), time.Hour))), 0o600))
	conn, err := grpc.NewClient(b.GRPCAddr,
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12})),
		client.WithTokenFile(tokenPath))
	must(t, err)
	t.Cleanup(func() { conn.Close() })
	tb := client.New(conn)
	req := &tokenbrokerv1.GetTokenRequest{Profile: "demo-smartdocumentor"}

	callCtx, callCancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer callCancel()
	first, err := tb.TokenSource(callCtx, req).Token()
	if err != nil {
		t.Fatalf("TokenSource with the token file: %v", err)
	}

	// The vendor API rejects the first token once: the Transport tells the
	// broker (InvalidateToken, authenticated by the token file) and
	// retries with a new one.
	var seen []string
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		seen = append(seen, tok)
		if tok == first.AccessToken || !sim.ValidToken("smartdocumentor", tok) {
			http.Error(w, "invalid token", http.StatusUnauthorized)
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(api.Close)
	httpClient := &http.Client{Transport: tb.Transport(req, nil), Timeout: 20 * time.Second}
	resp, err := httpClient.Get(api.URL)
	must(t, err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(seen) != 2 || seen[1] == first.AccessToken {
		t.Fatalf("status %d after %d requests: want the rejected token replaced through the broker", resp.StatusCode, len(seen))
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
