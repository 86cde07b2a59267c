package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"log/slog"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/tokenbroker/tokenbroker/auth/jwtverify"
	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
	"github.com/tokenbroker/tokenbroker/testkit/fakeissuer"
)

// fileVerifier verifies tokens of is with its JWKS written to a file.
func fileVerifier(t *testing.T, issuers ...*fakeissuer.Issuer) *jwtverify.Verifier {
	t.Helper()
	var list []jwtverify.Issuer
	for _, is := range issuers {
		path := filepath.Join(t.TempDir(), "jwks.json")
		if err := os.WriteFile(path, is.JWKS(), 0o600); err != nil {
			t.Fatal(err)
		}
		keys, err := jwtverify.NewFileKeys(path, nil)
		if err != nil {
			t.Fatal(err)
		}
		list = append(list, jwtverify.Issuer{Issuer: is.URL(), Audiences: []string{"tokenbroker"}, Keys: keys})
	}
	v, err := jwtverify.New(list, nil)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func bearer(token string) metadata.MD { return metadata.Pairs("authorization", "Bearer "+token) }

func TestJWTCallers(t *testing.T) {
	t.Parallel()
	is := fakeissuer.Start()
	t.Cleanup(is.Close)
	logs := &syncBuffer{}
	p, err := New(Config{
		Clients: map[string]Client{
			"billing":   {JWTSubject: "system:serviceaccount:billing:*", Allow: []string{"billing-profile"}},
			"invoicing": {JWTSubject: "system:serviceaccount:billing:invoice-worker", Allow: []string{"invoice-profile"}},
			"reporting": {SPIFFEID: "spiffe://acme.internal/ns/data/sa/reporting", Allow: []string{"report-profile"}},
			"legacy":    {APIKeySHA256: []string{keyHash("legacy-key")}, Allow: []string{"billing-profile"}},
		},
		JWT:    fileVerifier(t, is),
		Logger: slog.New(slog.NewJSONHandler(logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	k8s := func(ns, sa string) string {
		return is.Sign(is.Kubernetes(ns, sa, "tokenbroker", now, time.Hour))
	}
	svid := is.Sign(map[string]any{"iss": is.URL(), "sub": "spiffe://acme.internal/ns/data/sa/reporting", "aud": "tokenbroker", "exp": now.Add(5 * time.Minute).Unix(), "iat": now.Unix()})
	getToken := tokenbrokerv1.TokenService_GetToken_FullMethodName
	profile := func(name string) *tokenbrokerv1.GetTokenRequest { return &tokenbrokerv1.GetTokenRequest{Profile: name} }
	tests := []struct {
		name    string
		md      metadata.MD
		profile string
		want    codes.Code
		reason  string // in the audit line
	}{
		{"namespace wildcard", bearer(k8s("billing", "payment-worker")), "billing-profile", codes.OK, ""},
		{"wildcard allow list applies", bearer(k8s("billing", "payment-worker")), "invoice-profile", codes.PermissionDenied, "may not use profile"},
		{"exact subject wins over the wildcard", bearer(k8s("billing", "invoice-worker")), "invoice-profile", codes.OK, ""},
		{"exact subject has its own allow list", bearer(k8s("billing", "invoice-worker")), "billing-profile", codes.PermissionDenied, "may not use profile"},
		{"other namespace", bearer(k8s("data", "payment-worker")), "billing-profile", codes.Unauthenticated, "no client's jwt_subject or spiffe_id matches"},
		{"wildcard is one segment", bearer(is.Sign(with(is.Kubernetes("billing", "x", "tokenbroker", now, time.Hour), "sub", "system:serviceaccount:billing:x:y"))), "billing-profile", codes.Unauthenticated, "no client's jwt_subject"},
		{"JWT-SVID", bearer(svid), "report-profile", codes.OK, ""},
		{"API key still works", bearer("legacy-key"), "billing-profile", codes.OK, ""},
		{"wrong audience", bearer(is.Sign(is.Kubernetes("billing", "payment-worker", "vault", now, time.Hour))), "billing-profile", codes.Unauthenticated, "audience"},
		{"20 KiB JWT", bearer(is.Sign(with(is.Kubernetes("billing", "w", "tokenbroker", now, time.Hour), "pad", strings.Repeat("p", 20<<10)))), "billing-profile", codes.Unauthenticated, "larger than 16 KiB"},
		{"unknown API key", bearer("not-a-key"), "billing-profile", codes.Unauthenticated, "not a configured client's key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(logs.String())
			err := call(p, getToken, profile(tc.profile), &peer.Peer{Addr: &net.TCPAddr{}}, tc.md)
			if status.Code(err) != tc.want {
				t.Fatalf("%v, want %v", err, tc.want)
			}
			line := logs.String()[before:]
			if !strings.Contains(line, `"audit":"authorization"`) {
				t.Fatalf("no audit line: %s", line)
			}
			if tc.reason != "" && !strings.Contains(line, tc.reason) {
				t.Fatalf("audit line %s does not name %q", line, tc.reason)
			}
			tok := strings.TrimPrefix(tc.md.Get("authorization")[0], "Bearer ")
			for _, part := range strings.Split(tok, ".") {
				if len(part) > 8 && (strings.Contains(line, part) || err != nil && strings.Contains(err.Error(), part)) {
					t.Fatalf("the token appears in the audit line or error: %s / %v", line, err)
				}
			}
			if tc.want == codes.OK && !strings.Contains(line, `"auth":"jwt"`) && !strings.Contains(line, `"auth":"api_key"`) {
				t.Fatalf("audit line does not say how: %s", line)
			}
		})
	}
}

func with(claims map[string]any, key string, value any) map[string]any {
	out := map[string]any{}
	for k, v := range claims {
		out[k] = v
	}
	out[key] = value
	return out
}

func TestJWTClientConfigErrors(t *testing.T) {
	t.Parallel()
	a, b := fakeissuer.Start(), fakeissuer.Start()
	t.Cleanup(a.Close)
	t.Cleanup(b.Close)
	one, two := fileVerifier(t, a), fileVerifier(t, a, b)
	tests := []struct {
		name    string
		clients map[string]Client
		jwt     *jwtverify.Verifier
		wantErr string
	}{
		{"jwt_subject without issuers", map[string]Client{"a": {JWTSubject: "x", Allow: []string{"p"}}}, nil, "clients.a.jwt_subject: needs auth.jwt_issuers"},
		{"several issuers need jwt_issuer", map[string]Client{"a": {JWTSubject: "x", Allow: []string{"p"}}}, two, "clients.a.jwt_issuer: required"},
		{"unknown jwt_issuer", map[string]Client{"a": {JWTSubject: "x", JWTIssuer: "https://nope", Allow: []string{"p"}}}, one, "clients.a.jwt_issuer"},
		{"star inside a segment", map[string]Client{"a": {JWTSubject: "system:serviceaccount:bill*", Allow: []string{"p"}}}, one, "clients.a.jwt_subject"},
		{"star not last", map[string]Client{"a": {JWTSubject: "system:*:billing", Allow: []string{"p"}}}, one, "clients.a.jwt_subject"},
		{"bare star", map[string]Client{"a": {JWTSubject: "*", Allow: []string{"p"}}}, one, "clients.a.jwt_subject"},
		{"same subject twice", map[string]Client{"a": {JWTSubject: "s", Allow: []string{"p"}}, "b": {JWTSubject: "s", Allow: []string{"p"}}}, one, "clients.b.jwt_subject"},
		{"bad SPIFFE ID", map[string]Client{"a": {SPIFFEID: "https://acme/x", Allow: []string{"p"}}}, one, "clients.a.spiffe_id"},
		{"same SPIFFE ID twice", map[string]Client{"a": {SPIFFEID: "spiffe://t/x", Allow: []string{"p"}}, "b": {SPIFFEID: "spiffe://t/x", Allow: []string{"p"}}}, nil, "clients.b.spiffe_id"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(Config{Clients: tc.clients, JWT: tc.jwt})
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.wantErr)
			}
		})
	}
	// With two issuers, a jwt_issuer picks one: the other's token for the
	// same subject matches no client.
	p, err := New(Config{Clients: map[string]Client{"a": {JWTSubject: "system:serviceaccount:ns:sa", JWTIssuer: a.URL(), Allow: []string{"p"}}}, JWT: two, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	getToken := tokenbrokerv1.TokenService_GetToken_FullMethodName
	req := &tokenbrokerv1.GetTokenRequest{Profile: "p"}
	if err := call(p, getToken, req, nil, bearer(a.Sign(a.Kubernetes("ns", "sa", "tokenbroker", now, time.Hour)))); err != nil {
		t.Fatalf("issuer a: %v", err)
	}
	if err := call(p, getToken, req, nil, bearer(b.Sign(b.Kubernetes("ns", "sa", "tokenbroker", now, time.Hour)))); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("issuer b: %v, want Unauthenticated", err)
	}
}

// svidCA is a SPIFFE trust domain's CA for X.509-SVIDs.
type svidCA struct {
	*pki
	td spiffeid.TrustDomain
}

func newSVIDCA(t *testing.T, td string) *svidCA {
	t.Helper()
	return &svidCA{pki: newPKI(t, td+" CA"), td: spiffeid.RequireTrustDomainFromString(td)}
}

// svid issues a leaf with the given URI SANs (an X.509-SVID when one
// spiffe:// URI of the trust domain).
func (ca *svidCA) svid(t *testing.T, uris ...string) *x509.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "svid"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	for _, u := range uris {
		parsed, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, parsed)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return cert
}

func TestX509SVIDCallers(t *testing.T) {
	t.Parallel()
	acme, foreign, dnCA := newSVIDCA(t, "acme.internal"), newSVIDCA(t, "other.example"), newPKI(t, "client CA")
	bundles := x509bundle.NewSet(x509bundle.FromX509Authorities(acme.td, []*x509.Certificate{acme.cert}))
	dnCert := dnCA.issue(t, pkix.Name{CommonName: "billing"}, time.Now().Add(time.Hour))
	logs := &syncBuffer{}
	p, err := New(Config{
		Clients: map[string]Client{
			"reporting": {SPIFFEID: "spiffe://acme.internal/ns/data/sa/reporting", Allow: []string{"report-profile"}},
			"billing":   {CertSubject: SubjectString(dnCert), Allow: []string{"billing-profile"}},
		},
		ClientCAs:     dnCA.pool(),
		SPIFFEBundles: bundles,
		Logger:        slog.New(slog.NewJSONHandler(logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	getToken := tokenbrokerv1.TokenService_GetToken_FullMethodName
	tests := []struct {
		name    string
		chain   []*x509.Certificate
		profile string
		want    codes.Code
		reason  string
	}{
		{"X.509-SVID", []*x509.Certificate{acme.svid(t, "spiffe://acme.internal/ns/data/sa/reporting")}, "report-profile", codes.OK, `"auth":"x509_svid"`},
		{"subject-DN client keeps working", []*x509.Certificate{dnCert}, "billing-profile", codes.OK, `"auth":"mtls"`},
		{"SVID not a client", []*x509.Certificate{acme.svid(t, "spiffe://acme.internal/ns/data/sa/other")}, "report-profile", codes.Unauthenticated, "not a configured client's spiffe_id"},
		{"two URI SANs", []*x509.Certificate{acme.svid(t, "spiffe://acme.internal/ns/data/sa/reporting", "spiffe://acme.internal/ns/data/sa/admin")}, "report-profile", codes.Unauthenticated, "more than one URI SAN"},
		{"foreign trust domain", []*x509.Certificate{foreign.svid(t, "spiffe://other.example/ns/data/sa/reporting")}, "report-profile", codes.Unauthenticated, "no X.509 bundle"},
		{"foreign CA claims the trust domain", []*x509.Certificate{foreign.svid(t, "spiffe://acme.internal/ns/data/sa/reporting")}, "report-profile", codes.Unauthenticated, "could not verify leaf certificate"},
		{"SVID allow list applies", []*x509.Certificate{acme.svid(t, "spiffe://acme.internal/ns/data/sa/reporting")}, "billing-profile", codes.PermissionDenied, "may not use profile"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(logs.String())
			pr := &peer.Peer{Addr: &net.TCPAddr{}, AuthInfo: credentials.TLSInfo{State: tls.ConnectionState{PeerCertificates: tc.chain}}}
			err := call(p, getToken, &tokenbrokerv1.GetTokenRequest{Profile: tc.profile}, pr, nil)
			if status.Code(err) != tc.want {
				t.Fatalf("%v, want %v", err, tc.want)
			}
			if line := logs.String()[before:]; !strings.Contains(line, tc.reason) {
				t.Fatalf("audit line %s does not contain %q", line, tc.reason)
			}
		})
	}
}
