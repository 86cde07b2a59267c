package app

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/tokenbroker/tokenbroker/config"
	"github.com/tokenbroker/tokenbroker/testkit/fakeissuer"
	"github.com/tokenbroker/tokenbroker/testkit/testpki"
)

// TestKeySourcesSurviveReloads: a reload keeps an issuer's key source (its
// last good keys and refetch pacing) unless what configures it changed,
// the content of its CA file included; sources no longer configured are
// dropped.
func TestKeySourcesSurviveReloads(t *testing.T) {
	t.Parallel()
	is := fakeissuer.Start()
	t.Cleanup(is.Close)
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	if err := is.WriteCA(caFile); err != nil {
		t.Fatal(err)
	}
	jwksFile := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(jwksFile, is.JWKS(), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := func(issuers ...config.JWTIssuer) *config.Config {
		return &config.Config{Auth: config.Auth{JWTIssuers: issuers}}
	}
	remote := config.JWTIssuer{Issuer: is.URL(), Audiences: []string{"tokenbroker"}, JWKSURL: is.JWKSURL(), JWKSCAFile: caFile}
	file := config.JWTIssuer{Issuer: "https://other", Audiences: []string{"tokenbroker"}, JWKSFile: jwksFile}
	a := &App{}
	first, err := a.jwtVerifier(cfg(remote, file))
	if err != nil {
		t.Fatal(err)
	}
	second, err := a.jwtVerifier(cfg(remote, file))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{is.URL(), "https://other"} {
		if first.Sources()[name] != second.Sources()[name] {
			t.Errorf("issuer %s: a reload made a new key source", name)
		}
	}
	// A new CA file content (one more CA): a new source for that issuer
	// only.
	extra, err := testpki.NewCA("another CA")
	if err != nil {
		t.Fatal(err)
	}
	pemBytes, _ := os.ReadFile(caFile)
	if err := os.WriteFile(caFile, append(pemBytes, extra.PEM...), 0o600); err != nil {
		t.Fatal(err)
	}
	third, err := a.jwtVerifier(cfg(remote, file))
	if err != nil {
		t.Fatal(err)
	}
	if third.Sources()[is.URL()] == second.Sources()[is.URL()] || third.Sources()["https://other"] != second.Sources()["https://other"] {
		t.Error("a changed CA file did not replace exactly its issuer's source")
	}
	if _, err := a.jwtVerifier(cfg(file)); err != nil || len(a.keySources) != 1 {
		t.Fatalf("after removing an issuer: %v, %d sources kept", err, len(a.keySources))
	}
	// Bad configurations name the key.
	for _, bad := range []config.JWTIssuer{
		{Issuer: "x", Audiences: []string{"a"}, JWKSFile: filepath.Join(dir, "missing.json")},
		{Issuer: "x", Audiences: []string{"a"}, JWKSURL: "http://plain.example/jwks"},
		{Issuer: "x", Audiences: []string{"a"}, JWKSURL: "https://x/jwks", JWKSCAFile: jwksFile},
	} {
		if _, err := (&App{}).jwtVerifier(cfg(bad)); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	files := workloadFiles(&config.Config{Auth: config.Auth{JWTIssuers: []config.JWTIssuer{remote, file}, SPIFFEBundles: []config.SPIFFEBundle{{TrustDomain: "t", BundleFile: "/b.json"}}}})
	if !slices.Equal(files, []string{"/b.json", caFile}) {
		t.Errorf("watched files %v", files)
	}
}
