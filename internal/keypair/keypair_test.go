package keypair

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// writePair writes a fresh self-signed certificate for cn and its key.
func writePair(t *testing.T, certFile, keyFile, cn string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	// Written beside, then renamed over: as a Secret volume swap does.
	for path, block := range map[string]*pem.Block{certFile: {Type: "CERTIFICATE", Bytes: der}, keyFile: {Type: "EC PRIVATE KEY", Bytes: keyDER}} {
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
}

func commonName(t *testing.T, r *Reloader) string {
	t.Helper()
	c, err := r.Certificate()
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf.Subject.CommonName
}

func TestRenewedPairIsServedWithoutRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	writePair(t, certFile, keyFile, "first")
	r, err := Load(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if got := commonName(t, r); got != "first" {
		t.Fatalf("cn = %q", got)
	}

	// A half-renewed pair (new certificate, old key) keeps the old one.
	otherCert, otherKey := filepath.Join(dir, "o.crt"), filepath.Join(dir, "o.key")
	writePair(t, otherCert, otherKey, "second")
	if err := os.Rename(otherCert, certFile); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * CheckInterval)
	for time.Now().Before(deadline) {
		if got := commonName(t, r); got != "first" {
			t.Fatalf("a mismatched pair replaced the certificate: cn = %q", got)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Then the key arrives: the new certificate is served.
	if err := os.Rename(otherKey, keyFile); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(5 * CheckInterval)
	for commonName(t, r) != "second" {
		if time.Now().After(deadline) {
			t.Fatal("the renewed certificate was not picked up")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestLoadFailsOnAMissingPair(t *testing.T) {
	t.Parallel()
	if _, err := Load(filepath.Join(t.TempDir(), "none.crt"), "none.key"); err == nil {
		t.Fatal("Load of missing files succeeded")
	}
}
