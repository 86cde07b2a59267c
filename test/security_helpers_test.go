package test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tokenbroker/tokenbroker/app"
	"github.com/tokenbroker/tokenbroker/config"
	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
	"github.com/tokenbroker/tokenbroker/testkit/brokertest"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"Tokenbroker Test"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key}
}

// issue makes a leaf certificate: a server certificate for 127.0.0.1, or a
// client certificate for subject, valid until notAfter.
func (ca *testCA) issue(t *testing.T, subject pkix.Name, notAfter time.Time, server bool) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      subject,
		NotBefore:    time.Now().Add(-2 * time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

func (ca *testCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// writeCA writes the CA certificate as PEM and returns the path.
func (ca *testCA) writeCA(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "client-ca.pem")
	writePEMFile(t, path, &pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})
	return path
}

// writeKeyPair writes a certificate and its key as PEM files.
func writeKeyPair(t *testing.T, dir string, c tls.Certificate) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem")
	writePEMFile(t, certFile, &pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]})
	der, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	writePEMFile(t, keyFile, &pem.Block{Type: "PRIVATE KEY", Bytes: der})
	return certFile, keyFile
}

func writePEMFile(t *testing.T, path string, b *pem.Block) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(b), 0o600); err != nil {
		t.Fatal(err)
	}
}

// sha256Hex is what clients.<name>.api_key_sha256 holds for key.
func sha256Hex(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// startAppWithLogs starts an app from cfg with a JSON log at debug level
// kept for the test; insecure is --insecure-allow-unauthenticated.
func startAppWithLogs(t *testing.T, cfg *config.Config, insecureFlag bool) (*app.App, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	b := brokertest.StartBrokerWith(t, nil, app.Options{
		Config:                       cfg,
		Logger:                       slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		InsecureAllowUnauthenticated: insecureFlag,
	})
	return b.App, logs
}

// clientTLS is a caller's TLS configuration: it trusts serverCA and
// presents cert (when not nil) whatever CAs the server names, so the tests
// reach the server's own checks.
func clientTLS(serverCA *testCA, cert *tls.Certificate) *tls.Config {
	c := &tls.Config{RootCAs: serverCA.pool(), MinVersion: tls.VersionTLS12}
	if cert != nil {
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	return c
}

// grpcClient dials a with tlsCfg (nil: plaintext).
func grpcClient(t *testing.T, a *app.App, tlsCfg *tls.Config) tokenbrokerv1.TokenServiceClient {
	t.Helper()
	creds := insecure.NewCredentials()
	if tlsCfg != nil {
		creds = credentials.NewTLS(tlsCfg)
	}
	conn, err := grpc.NewClient(a.Server.GRPCAddr().String(), grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return tokenbrokerv1.NewTokenServiceClient(conn)
}

// httpClient is a REST caller with tlsCfg (nil: plaintext).
func httpClient(t *testing.T, tlsCfg *tls.Config) *http.Client {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: tlsCfg}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}
