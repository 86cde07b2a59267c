package test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
	"github.com/tokenbroker/tokenbroker/testkit/brokertest"
)

// pemPair is a certificate and its key as PEM.
func pemPair(t *testing.T, c tls.Certificate) (certPEM, keyPEM string) {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]})),
		string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

// servedSerial is the serial number of the certificate a new TLS
// connection to addr is given.
func servedSerial(roots *x509.CertPool, addr string) string {
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12})
	if err != nil {
		return ""
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

// TestKeyRotationAndCertificateRenewalUnderLoad rotates a client's API key
// with overlap (one hash, two, then the new one) and renews the server
// certificate (a Secret volume swap) while REST and gRPC callers keep
// calling over TLS: not one call fails, and new connections get the new
// certificate without a restart.
func TestKeyRotationAndCertificateRenewalUnderLoad(t *testing.T) {
	bin := brokertest.ServerBinary(t)
	sim := brokertest.StartSim(t)
	ca := newTestCA(t, "rotation CA")
	first := ca.issue(t, pkix.Name{CommonName: "broker"}, time.Now().Add(time.Hour), true)
	certPEM, keyPEM := pemPair(t, first)
	tlsVolume := newVolume(t, map[string]string{"tls.crt": certPEM, "tls.key": keyPEM})

	p := newProc(t, bin, "")
	render := func(keys ...string) string {
		hashes := make([]string, len(keys))
		for i, k := range keys {
			hashes[i] = sha256Hex(k)
		}
		return fmt.Sprintf(`grpc_addr: %s
http_addr: %s
shutdown_delay: 0s
tls: {cert_file: %s, key_file: %s}
vendors:
  smartdocumentor:
    token_url: %s/smartdocumentor/connect/token
%sclients:
  billing: {api_key_sha256: [%s], allow: [acme-sd]}
`, p.GRPCAddr, p.HTTPAddr, tlsVolume.path("tls.crt"), tlsVolume.path("tls.key"), sim.URL(), sdProfile, strings.Join(hashes, ", "))
	}
	config := newVolume(t, map[string]string{"tokenbroker.yaml": render("old-key")})
	p.SetConfigPath(config.path("tokenbroker.yaml"))
	// /readyz is served over TLS: wait for it with a client that trusts
	// the CA.
	probe := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool(), MinVersion: tls.VersionTLS12}, DisableKeepAlives: true}}
	if err := p.Start(30*time.Second, brokertest.Holds(func() bool {
		resp, err := probe.Get("https://" + p.HTTPAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})); err != nil {
		t.Fatal(err)
	}

	conn, err := grpc.NewClient(p.GRPCAddr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: ca.pool(), MinVersion: tls.VersionTLS12})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	client := tokenbrokerv1.NewTokenServiceClient(conn)
	grpcCall := func(key string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := client.GetToken(withKey(ctx, key), &tokenbrokerv1.GetTokenRequest{Profile: "acme-sd"})
		return err
	}
	restClient := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool(), MinVersion: tls.VersionTLS12}, MaxIdleConnsPerHost: 4}}
	t.Cleanup(restClient.CloseIdleConnections)
	restCallWithKey := func(key string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+p.HTTPAddr+"/v1/token", strings.NewReader(`{"profile":"acme-sd"}`))
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := restClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d: %s", resp.StatusCode, b)
		}
		return nil
	}

	var currentKey atomic.Value
	currentKey.Store("old-key")
	callers := startCallers(t)
	var rest, rpc callerStats
	callers.run(4, 5*time.Millisecond, &rest, func(int) error { return restCallWithKey(currentKey.Load().(string)) })
	callers.run(4, 5*time.Millisecond, &rpc, func(int) error { return grpcCall(currentKey.Load().(string)) })
	if brokertest.Poll(30*time.Second, brokertest.Holds(func() bool { return rest.ok.Load() >= 50 && rpc.ok.Load() >= 50 })) != nil {
		t.Fatalf("callers do not get going: REST %s; gRPC %s", &rest, &rpc)
	}

	// Key rotation with overlap: add the new key, move the callers, drop
	// the old key.
	since := time.Now()
	config.update(t, map[string]string{"tokenbroker.yaml": render("old-key", "new-key")})
	if brokertest.Poll(10*time.Second, brokertest.Holds(func() bool { return grpcCall("new-key") == nil })) != nil {
		t.Fatal("the new key is not accepted")
	}
	t.Logf("new key accepted after %v", time.Since(since).Round(time.Millisecond))
	currentKey.Store("new-key")
	calls := rest.ok.Load() + rpc.ok.Load()
	if brokertest.Poll(10*time.Second, brokertest.Holds(func() bool { return rest.ok.Load()+rpc.ok.Load() > calls+100 })) != nil {
		t.Fatal("callers stalled after moving to the new key")
	}
	since = time.Now()
	config.update(t, map[string]string{"tokenbroker.yaml": render("new-key")})
	if brokertest.Poll(10*time.Second, brokertest.Holds(func() bool { return status.Code(grpcCall("old-key")) == codes.Unauthenticated })) != nil {
		t.Fatal("the old key is still accepted")
	}
	t.Logf("old key refused after %v", time.Since(since).Round(time.Millisecond))

	// Certificate renewal: a new certificate and key swapped in at once.
	roots := ca.pool()
	oldSerial := first.Leaf.SerialNumber.String()
	for _, addr := range []string{p.GRPCAddr, p.HTTPAddr} {
		if got := servedSerial(roots, addr); got != oldSerial {
			t.Fatalf("%s serves serial %q before the renewal, want %s", addr, got, oldSerial)
		}
	}
	renewed := ca.issue(t, pkix.Name{CommonName: "broker"}, time.Now().Add(2*time.Hour), true)
	certPEM, keyPEM = pemPair(t, renewed)
	since = time.Now()
	tlsVolume.update(t, map[string]string{"tls.crt": certPEM, "tls.key": keyPEM})
	newSerial := renewed.Leaf.SerialNumber.String()
	for _, addr := range []string{p.GRPCAddr, p.HTTPAddr} {
		if brokertest.Poll(10*time.Second, brokertest.Holds(func() bool { return servedSerial(roots, addr) == newSerial })) != nil {
			t.Fatalf("%s does not serve the renewed certificate", addr)
		}
		took := time.Since(since)
		t.Logf("%s serves the renewed certificate after %v", addr, took.Round(time.Millisecond))
		if took > reloadWithin {
			t.Errorf("renewal took %v, more than %v", took, reloadWithin)
		}
	}
	calls = rest.ok.Load() + rpc.ok.Load()
	if brokertest.Poll(10*time.Second, brokertest.Holds(func() bool { return rest.ok.Load()+rpc.ok.Load() > calls+100 })) != nil {
		t.Fatal("callers stalled after the renewal")
	}

	callers.stop()
	t.Logf("callers during the rotation and renewal: REST %s; gRPC %s", &rest, &rpc)
	if rest.failed.Load() != 0 || rpc.failed.Load() != 0 {
		t.Fatalf("failed calls: REST %s; gRPC %s", &rest, &rpc)
	}
}
