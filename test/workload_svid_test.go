package test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tokenbroker/tokenbroker/app"
	"github.com/tokenbroker/tokenbroker/config"
	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
	"github.com/tokenbroker/tokenbroker/testkit/brokertest"
	"github.com/tokenbroker/tokenbroker/testkit/fakeissuer"
)

// issueSVID makes an X.509-SVID (a client certificate whose URI SANs are
// uris) signed by ca.
func issueSVID(t *testing.T, ca *testCA, uris ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{Organization: []string{"SPIRE"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	for _, u := range uris {
		parsed, _ := url.Parse(u)
		tmpl.URIs = append(tmpl.URIs, parsed)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// writeSPIFFEBundle writes ca as the SPIFFE bundle (JWKS JSON) of td.
func writeSPIFFEBundle(t *testing.T, path, td string, ca *testCA) {
	t.Helper()
	b := spiffebundle.FromX509Authorities(spiffeid.RequireTrustDomainFromString(td), []*x509.Certificate{ca.cert})
	raw, err := b.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	writeAtomically(t, path, raw)
}

// writeAtomically replaces path by renaming a new file over it, as a
// Kubernetes volume update does.
func writeAtomically(t *testing.T, path string, raw []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// TestX509SVIDCallersOverMTLS: over real TLS, gRPC and REST, a SPIFFE ID
// client is found by the URI SAN of its verified X.509-SVID, a subject-DN
// client beside it keeps working, the bad SVIDs of docs/design.md
// (Security model) are UNAUTHENTICATED, and a new bundle file (PEM this
// time) takes effect on reload.
func TestX509SVIDCallersOverMTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	serverCA, clientCA := newTestCA(t, "server CA"), newTestCA(t, "client CA")
	acmeCA, foreignCA, nextCA := newTestCA(t, "acme.internal"), newTestCA(t, "other.example"), newTestCA(t, "acme.internal next")
	certFile, keyFile := writeKeyPair(t, dir, serverCA.issue(t, pkix.Name{CommonName: "127.0.0.1"}, time.Now().Add(time.Hour), true))
	caFile := clientCA.writeCA(t, dir)
	bundleFile := filepath.Join(dir, "acme-bundle.json")
	writeSPIFFEBundle(t, bundleFile, "acme.internal", acmeCA)
	foreignBundle := filepath.Join(dir, "other-bundle.json")
	writeSPIFFEBundle(t, foreignBundle, "other.example", newTestCA(t, "other.example real"))
	sim := brokertest.StartSim(t)
	yaml := fmt.Sprintf(`
profiles:
  acme-sd:
    vendor: smartdocumentor
    credentials: {client_id: demo-client, client_secret: demo-secret}
clients:
  reporting:
    spiffe_id: spiffe://acme.internal/ns/data/sa/reporting
    allow: [acme-sd]
  billing:
    cert_subject: %q
    allow: [acme-sd]
auth:
  spiffe_bundles:
    - {trust_domain: acme.internal, bundle_file: %s}
    - {trust_domain: other.example, bundle_file: %s}
tls: {cert_file: %s, key_file: %s, client_ca_file: %s}
`, billingSubject.String(), bundleFile, foreignBundle, certFile, keyFile, caFile)
	cfg := brokertest.SimConfig(t, sim, yaml)
	cfg.ShutdownDelay = 0
	a := brokertest.StartBrokerWith(t, sim, app.Options{
		Config: cfg,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Load: func() (*config.Config, error) {
			c := brokertest.SimConfig(t, sim, yaml)
			c.ShutdownDelay = 0
			return c, nil
		},
	}).App

	reporting := issueSVID(t, acmeCA, "spiffe://acme.internal/ns/data/sa/reporting")
	billing := clientCA.issue(t, billingSubject, time.Now().Add(time.Hour), false)
	try := func(name string, cert tls.Certificate, want codes.Code) {
		t.Helper()
		tlsCfg := clientTLS(serverCA, &cert)
		c := grpcClient(t, a, tlsCfg)
		cctx, ccancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer ccancel()
		_, err := c.GetToken(cctx, &tokenbrokerv1.GetTokenRequest{Profile: "acme-sd"})
		if status.Code(err) != want {
			t.Errorf("gRPC %s: %v, want %v", name, err, want)
		}
		resp, err := httpClient(t, tlsCfg).Post("https://"+a.Server.HTTPAddr().String()+"/v1/token", "application/json", strings.NewReader(`{"profile":"acme-sd"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		wantHTTP := map[codes.Code]int{codes.OK: 200, codes.Unauthenticated: 401}[want]
		if resp.StatusCode != wantHTTP {
			t.Errorf("REST %s: %d, want %d", name, resp.StatusCode, wantHTTP)
		}
	}
	try("X.509-SVID", reporting, codes.OK)
	try("subject-DN client", billing, codes.OK)
	try("two URI SANs", issueSVID(t, acmeCA, "spiffe://acme.internal/ns/data/sa/reporting", "spiffe://acme.internal/ns/data/sa/admin"), codes.Unauthenticated)
	try("foreign trust domain", issueSVID(t, foreignCA, "spiffe://other.example/ns/data/sa/reporting"), codes.Unauthenticated)
	try("another CA claiming the trust domain", issueSVID(t, foreignCA, "spiffe://acme.internal/ns/data/sa/reporting"), codes.Unauthenticated)
	try("SPIFFE ID of no client", issueSVID(t, acmeCA, "spiffe://acme.internal/ns/data/sa/intruder"), codes.Unauthenticated)

	// The trust domain moves to a new CA, written as PEM this time.
	writeAtomically(t, bundleFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: nextCA.cert.Raw}))
	if err := a.Reload("test"); err != nil {
		t.Fatal(err)
	}
	try("SVID of the new CA", issueSVID(t, nextCA, "spiffe://acme.internal/ns/data/sa/reporting"), codes.OK)
	try("SVID of the retired CA", issueSVID(t, acmeCA, "spiffe://acme.internal/ns/data/sa/reporting"), codes.Unauthenticated)
}

// TestJWKSEndpointDownIsReported: while an issuer's JWKS cannot be read,
// /readyz says degraded (200) and tokenbroker_jwks_stale is 1; when it
// comes back, the next token verifies and both clear.
func TestJWKSEndpointDownIsReported(t *testing.T) {
	t.Parallel()
	is := fakeissuer.Start()
	t.Cleanup(is.Close)
	caFile := filepath.Join(t.TempDir(), "issuer-ca.pem")
	if err := is.WriteCA(caFile); err != nil {
		t.Fatal(err)
	}
	is.SetDown(true)
	sim := brokertest.StartSim(t)
	b := brokertest.StartBroker(t, sim, brokertest.SimConfig(t, sim, sdProfile+`clients:
  billing:
    jwt_subject: "system:serviceaccount:billing:*"
    allow: [acme-sd]
auth:
  jwt_issuers:
    - issuer: `+is.URL()+`
      audiences: [tokenbroker]
      jwks_url: `+is.JWKSURL()+`
      jwks_ca_file: `+caFile+`
`))
	token := is.Sign(is.Kubernetes("billing", "invoice-worker", "tokenbroker", time.Now(), time.Hour))
	call := func() error {
		ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token), 20*time.Second)
		defer cancel()
		_, err := b.Client.GetToken(ctx, &tokenbrokerv1.GetTokenRequest{Profile: "acme-sd"})
		return err
	}
	if err := call(); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("with no keys ever fetched: %v, want Unauthenticated", err)
	}
	ready := func() (int, string) {
		resp, err := http.Get(b.HTTP + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, body := ready(); code != 200 || !strings.Contains(body, "degraded: jwks of issuer "+is.URL()) {
		t.Fatalf("/readyz %d %q", code, body)
	}
	if v := metricValue(t, scrape(t, b), "tokenbroker_jwks_stale", map[string]string{"issuer": is.URL()}); v != 1 {
		t.Fatalf("tokenbroker_jwks_stale %v, want 1", v)
	}
	is.SetDown(false)
	// With no keys the source retries every 2 s: bounded in time and in
	// calls.
	brokertest.Eventually(t, "the token accepted once the JWKS came back", 15*time.Second, call)
	if code, body := ready(); code != 200 || body != "ready\n" {
		t.Fatalf("/readyz after recovery: %d %q", code, body)
	}
	if v := metricValue(t, scrape(t, b), "tokenbroker_jwks_stale", map[string]string{"issuer": is.URL()}); v != 0 {
		t.Fatalf("tokenbroker_jwks_stale %v after recovery, want 0", v)
	}
}
