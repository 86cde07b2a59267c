package vendors

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/secret"
)

// testPKI is a client CA and a client certificate it signed, on disk.
type testPKI struct {
	pool              *x509.CertPool
	ca                *x509.Certificate
	certFile, keyFile string
}

func newTestPKI(t *testing.T, commonName string) testPKI {
	t.Helper()
	caKey := mustKey(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test client CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER := mustKey(x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey))
	ca := mustKey(x509.ParseCertificate(caDER))
	leafKey := mustKey(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: commonName},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	leafDER := mustKey(x509.CreateCertificate(rand.Reader, leafTmpl, ca, &leafKey.PublicKey, caKey))
	keyDER := mustKey(x509.MarshalECPrivateKey(leafKey))
	dir := t.TempDir()
	p := testPKI{pool: x509.NewCertPool(), ca: ca, certFile: filepath.Join(dir, "client.pem"), keyFile: filepath.Join(dir, "client-key.pem")}
	p.pool.AddCert(ca)
	if err := os.WriteFile(p.certFile, []byte(pemOf("CERTIFICATE", leafDER)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.keyFile, []byte(pemOf("EC PRIVATE KEY", keyDER)), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// mtlsServer is a TLS token endpoint that requires a client certificate
// from pki's CA and answers like each vendor.
func mtlsServer(t *testing.T, pki testPKI, check func(r *http.Request, form url.Values)) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		form, _ := url.ParseQuery(string(body))
		if len(r.TLS.PeerCertificates) == 0 {
			http.Error(w, "no client certificate", http.StatusUnauthorized)
			return
		}
		if check != nil {
			check(r, form)
		}
		if strings.HasSuffix(r.URL.Path, "ServicePrincipalLogIn") {
			w.Header().Set("Content-Type", "text/plain")
			_, _ = io.WriteString(w, "bare-token")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"access_token":"tok","token_type":"Bearer","expires_in":300}`)
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // handshake failures are expected
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pki.pool, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// TestMutualTLSForEveryVendor: tls_client_cert and tls_client_key present
// the certificate to any vendor's token endpoint.
func TestMutualTLSForEveryVendor(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t, "tokenbroker-test")
	tests := []struct {
		vendor   string
		settings Settings // {base} is the server
		creds    map[string]string
		params   map[string]string
	}{
		{"hotdocs_advance", Settings{"token_url": "{base}/{tenancy}/auth/Authorize/ServicePrincipalLogIn"},
			map[string]string{"client_name": "c", "principal_name": "p", "principal_password": "pw"}, map[string]string{"tenancy": "t"}},
		{"smartdocumentor", Settings{"token_url": "{base}/connect/token"}, map[string]string{"client_id": "a", "client_secret": "b"}, nil},
		{"abbyy_vantage", Settings{"token_url": "{base}/{region}/auth2/connect/token"},
			map[string]string{"client_id": "a", "client_secret": "b", "username": "u", "password": "p"}, map[string]string{"region": "eu"}},
		{"brightpattern", Settings{"host": "example.com", "token_url": "{base}/configapi/v2/oauth/token"}, map[string]string{"client_id": "a", "client_secret": "b"}, nil},
		{"saasu", Settings{"token_url": "{base}/authorisation/token"}, map[string]string{"username": "u", "password": "p"}, nil},
		{"oauth2", Settings{"token_url": "{base}/token"}, map[string]string{"client_id": "a", "client_secret": "b"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.vendor, func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			var subject string
			srv := mtlsServer(t, pki, func(r *http.Request, _ url.Values) {
				mu.Lock()
				defer mu.Unlock()
				subject = r.TLS.PeerCertificates[0].Subject.CommonName
			})
			set := withBase(tc.settings, srv.URL)
			set["tls_client_cert"], set["tls_client_key"] = pki.certFile, pki.keyFile
			call, err := strategyFor(t, tc.vendor).ResolveCall(Input{
				Settings:    set,
				Credentials: secret.FromStrings(tc.creds),
				Params:      tc.params,
				HTTPClient:  srv.Client(), // trusts the test server; the certificate is added to a clone
			})
			if err != nil {
				t.Fatalf("ResolveCall: %v", err)
			}
			tok, err := call.Fetch(context.Background(), "")
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			mu.Lock()
			defer mu.Unlock()
			if tok.AccessToken == "" || subject != "tokenbroker-test" {
				t.Fatalf("token %q, client certificate %q", tok.AccessToken, subject)
			}
		})
	}
}

// TestTLSClientAuth: RFC 8705 tls_client_auth sends client_id in the body
// and authenticates with the certificate alone.
func TestTLSClientAuth(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t, "my-client")
	var mu sync.Mutex
	var got url.Values
	var auth string
	srv := mtlsServer(t, pki, func(r *http.Request, form url.Values) {
		mu.Lock()
		defer mu.Unlock()
		got, auth = form, r.Header.Get("Authorization")
	})
	call, err := OAuth2().ResolveCall(Input{
		Settings: Settings{
			"token_url": srv.URL + "/token", "client_auth": "tls_client_auth",
			"tls_client_cert": pki.certFile, "tls_client_key": pki.keyFile,
		},
		Credentials: secret.FromStrings(map[string]string{"client_id": "my-client"}),
		HTTPClient:  srv.Client(),
	})
	if err != nil {
		t.Fatalf("ResolveCall: %v", err)
	}
	if _, err := call.Fetch(context.Background(), ""); err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if got.Encode() != "client_id=my-client&grant_type=client_credentials" || auth != "" {
		t.Fatalf("form %v, Authorization %q", got, auth)
	}
}

// TestMutualTLSFailures: without the certificate the handshake fails
// (a retryable transport error); unusable settings are ConfigErrors.
func TestMutualTLSFailures(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t, "c")
	srv := mtlsServer(t, pki, nil)
	creds := secret.FromStrings(map[string]string{"client_id": "a", "client_secret": "b"})

	call, err := OAuth2().ResolveCall(Input{Settings: Settings{"token_url": srv.URL, "timeout": "2s"}, Credentials: creds, HTTPClient: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	_, err = call.Fetch(context.Background(), "")
	var ve *Error
	if !errors.As(err, &ve) || ve.Kind != KindUnavailable {
		t.Fatalf("without a certificate: %v, want unavailable", err)
	}

	tests := []struct {
		name     string
		settings Settings
		client   *http.Client
	}{
		{"missing files", Settings{"tls_client_cert": filepath.Join(t.TempDir(), "none.pem"), "tls_client_key": pki.keyFile}, nil},
		{"key that does not match", Settings{"tls_client_cert": pki.certFile, "tls_client_key": newTestPKI(t, "other").keyFile}, nil},
		{"transport that cannot carry a certificate", Settings{"tls_client_cert": pki.certFile, "tls_client_key": pki.keyFile}, &http.Client{Transport: roundTripFunc(http.DefaultTransport.RoundTrip)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			set := Settings{"token_url": srv.URL}.Overlay(tc.settings)
			_, err := OAuth2().ResolveCall(Input{Settings: set, Credentials: creds, HTTPClient: tc.client})
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Setting != "tls_client_cert" {
				t.Fatalf("err = %v, want a ConfigError on tls_client_cert", err)
			}
		})
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestHTTPClientFor: one client per transport and key pair; no redirects
// whichever client is used.
func TestHTTPClientFor(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t, "c")
	set := Settings{"tls_client_cert": pki.certFile, "tls_client_key": pki.keyFile}
	a, err := httpClientFor(set, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := httpClientFor(set, nil)
	if err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Fatal("the mutual TLS client is built again for the same key pair")
	}
	if a.Transport == defaultTransport || a.Transport.(*http.Transport).TLSClientConfig.MinVersion < tls.VersionTLS12 {
		t.Fatal("the default transport was modified or TLS is below 1.2")
	}
	if len(defaultTransport.TLSClientConfig.Certificates) != 0 {
		t.Fatal("the certificate leaked into the shared default transport")
	}
	given := &http.Client{Timeout: 7 * time.Second}
	c, err := httpClientFor(Settings{}, given)
	if err != nil || c == given || c.CheckRedirect == nil || c.Timeout != 7*time.Second || given.CheckRedirect != nil {
		t.Fatalf("given client: %+v, %v", c, err)
	}
	d, err := httpClientFor(set, given)
	if err != nil || d.Timeout != 7*time.Second || d.CheckRedirect == nil {
		t.Fatalf("given client with mTLS: %+v, %v", d, err)
	}
}

// TestRedirectsAreNotFollowed: a token endpoint that redirects does not
// get the secrets sent on.
func TestRedirectsAreNotFollowed(t *testing.T) {
	t.Parallel()
	target, targetURL := serve(t, cannedAnswer{status: 200, ctype: "application/json", body: `{"access_token":"stolen","expires_in":60}`})
	for _, status := range []int{301, 302, 307, 308} {
		_, base := serve(t, cannedAnswer{status: status, header: http.Header{"Location": {targetURL + "/collect"}}})
		for _, client := range []*http.Client{nil, {}} {
			call, err := OAuth2().ResolveCall(Input{
				Settings:    Settings{"token_url": base},
				Credentials: secret.FromStrings(map[string]string{"client_id": "a", "client_secret": "b"}),
				HTTPClient:  client,
			})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := call.Fetch(context.Background(), ""); err == nil {
				t.Fatalf("%d: a redirect produced a token", status)
			}
		}
	}
	if n := len(target.seen()); n != 0 {
		t.Fatalf("the redirect target received %d requests", n)
	}
}

// TestRenewedClientCertificateIsPresented: a vendor mTLS certificate
// replaced on disk is presented by the next TLS handshake, without a
// restart.
func TestRenewedClientCertificateIsPresented(t *testing.T) {
	t.Parallel()
	first, renewed := newTestPKI(t, "before-renewal"), newTestPKI(t, "after-renewal")
	var mu sync.Mutex
	var subject string
	trusted := testPKI{pool: x509.NewCertPool()}
	trusted.pool.AddCert(first.ca)
	trusted.pool.AddCert(renewed.ca)
	srv := mtlsServer(t, trusted, func(r *http.Request, _ url.Values) {
		mu.Lock()
		defer mu.Unlock()
		subject = r.TLS.PeerCertificates[0].Subject.CommonName
	})
	// Every request on a new connection: a new handshake.
	srv.Config.SetKeepAlivesEnabled(false)

	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	copyFile(t, first.certFile, certFile)
	copyFile(t, first.keyFile, keyFile)
	call, err := strategyFor(t, "smartdocumentor").ResolveCall(Input{
		Settings:    Settings{"token_url": srv.URL + "/connect/token", "tls_client_cert": certFile, "tls_client_key": keyFile},
		Credentials: secret.FromStrings(map[string]string{"client_id": "a", "client_secret": "b"}),
		HTTPClient:  srv.Client(),
	})
	if err != nil {
		t.Fatal(err)
	}
	presented := func() string {
		if _, err := call.Fetch(context.Background(), ""); err != nil {
			t.Fatalf("Fetch: %v", err)
		}
		mu.Lock()
		defer mu.Unlock()
		return subject
	}
	if got := presented(); got != "before-renewal" {
		t.Fatalf("presented %q", got)
	}
	copyFile(t, renewed.certFile, certFile)
	copyFile(t, renewed.keyFile, keyFile)
	deadline := time.Now().Add(10 * time.Second)
	for presented() != "after-renewal" {
		if time.Now().After(deadline) {
			t.Fatal("the renewed certificate is not presented")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// copyFile replaces dst with src's content by a rename.
func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst+".tmp", b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(dst+".tmp", dst); err != nil {
		t.Fatal(err)
	}
}
