package app

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"os"
	"slices"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/tokenbroker/tokenbroker/auth/jwtverify"
	"github.com/tokenbroker/tokenbroker/config"
	"github.com/tokenbroker/tokenbroker/metrics"
)

// Workload identity wiring (docs/design.md, Security model): auth.jwt_issuers
// into a jwtverify.Verifier, auth.spiffe_bundles into an X.509 bundle set.

// workloadIdentity is one generation's verifiers; nil fields when not
// configured.
type workloadIdentity struct {
	jwt     *jwtverify.Verifier
	bundles *x509bundle.Set
	// bundleCAs are the bundles' authorities, named to TLS clients as
	// acceptable CAs.
	bundleCAs []*x509.Certificate
}

// keySources keeps each issuer's key source across reloads, so a reload
// neither refetches every JWKS nor forgets the last good keys and the
// refetch pacing. Guarded by App.reloadMu (build runs under it, or before
// the App is shared).
type keySources map[string]jwtverify.KeySource

// sourceKey names a key source by everything that configures it, the
// content of its CA file included (a changed CA file reloads the
// configuration, and then makes a new source).
func sourceKey(is config.JWTIssuer) string {
	ca := ""
	if is.JWKSCAFile != "" {
		raw, _ := os.ReadFile(is.JWKSCAFile) // an unreadable file fails in newKeySource
		sum := sha256.Sum256(raw)
		ca = is.JWKSCAFile + "\x00" + hex.EncodeToString(sum[:])
	}
	switch {
	case is.JWKSFile != "":
		return "file\x00" + is.JWKSFile
	case is.Discovery:
		return "discovery\x00" + is.Issuer + "\x00" + ca
	}
	return "url\x00" + is.JWKSURL + "\x00" + ca + "\x00" + is.Issuer
}

// jwtVerifier builds the verifier of cfg's issuers (nil when none),
// reusing the key sources of earlier generations; sources no longer
// configured are dropped.
func (a *App) jwtVerifier(cfg *config.Config) (*jwtverify.Verifier, error) {
	if len(cfg.Auth.JWTIssuers) == 0 {
		return nil, nil
	}
	if a.keySources == nil {
		a.keySources = keySources{}
	}
	next := keySources{}
	issuers := make([]jwtverify.Issuer, 0, len(cfg.Auth.JWTIssuers))
	for i, is := range cfg.Auth.JWTIssuers {
		field := fmt.Sprintf("auth.jwt_issuers[%d]", i)
		key := sourceKey(is)
		src, ok := a.keySources[key]
		if !ok {
			var err error
			if src, err = newKeySource(field, is); err != nil {
				return nil, err
			}
		}
		next[key] = src
		issuers = append(issuers, jwtverify.Issuer{Issuer: is.Issuer, Audiences: is.Audiences, MaxTokenLifetime: is.MaxTokenLifetime, Keys: src})
	}
	v, err := jwtverify.New(issuers, nil)
	if err != nil {
		return nil, fmt.Errorf("auth.jwt_issuers: %w", err)
	}
	a.keySources = next
	return v, nil
}

func newKeySource(field string, is config.JWTIssuer) (jwtverify.KeySource, error) {
	if is.JWKSFile != "" {
		src, err := jwtverify.NewFileKeys(is.JWKSFile, nil)
		if err != nil {
			return nil, fmt.Errorf("%s.jwks_file: %w", field, err)
		}
		return src, nil
	}
	var roots *x509.CertPool
	if is.JWKSCAFile != "" {
		raw, err := os.ReadFile(is.JWKSCAFile)
		if err != nil {
			return nil, fmt.Errorf("%s.jwks_ca_file: %w", field, err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(raw) {
			return nil, fmt.Errorf("%s.jwks_ca_file: no PEM certificate in %s", field, is.JWKSCAFile)
		}
	}
	src, err := jwtverify.NewRemoteKeys(jwtverify.RemoteOptions{JWKSURL: is.JWKSURL, Discovery: is.Discovery, Issuer: is.Issuer, RootCAs: roots})
	if err != nil {
		what := ".jwks_url"
		if is.Discovery {
			what = ".issuer (discovery)"
		}
		return nil, fmt.Errorf("%s%s: %w", field, what, err)
	}
	return src, nil
}

// spiffeBundles reads auth.spiffe_bundles (nil when none).
func spiffeBundles(cfg *config.Config) (*x509bundle.Set, []*x509.Certificate, error) {
	if len(cfg.Auth.SPIFFEBundles) == 0 {
		return nil, nil, nil
	}
	set := x509bundle.NewSet()
	var cas []*x509.Certificate
	for i, b := range cfg.Auth.SPIFFEBundles {
		field := fmt.Sprintf("auth.spiffe_bundles[%d]", i)
		td, err := spiffeid.TrustDomainFromString(b.TrustDomain)
		if err != nil {
			return nil, nil, fmt.Errorf("%s.trust_domain: %v", field, err)
		}
		bundle, err := loadX509Bundle(td, b.BundleFile)
		if err != nil {
			return nil, nil, fmt.Errorf("%s.bundle_file: %w", field, err)
		}
		set.Add(bundle)
		cas = append(cas, bundle.X509Authorities()...)
	}
	return set, cas, nil
}

// loadX509Bundle reads a trust bundle file: a SPIFFE bundle (a JWKS
// document, SPIFFE Trust Domain and Bundle specification section 4) or
// PEM certificates.
func loadX509Bundle(td spiffeid.TrustDomain, path string) (*x509bundle.Bundle, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if bytes.HasPrefix(bytes.TrimSpace(raw), []byte("{")) {
		b, err := spiffebundle.Parse(td, raw)
		if err != nil {
			return nil, err
		}
		if len(b.X509Authorities()) == 0 {
			return nil, fmt.Errorf("the SPIFFE bundle in %s has no X.509 authority", path)
		}
		return b.X509Bundle(), nil
	}
	b, err := x509bundle.Parse(td, raw)
	if err != nil {
		return nil, err
	}
	if len(b.X509Authorities()) == 0 {
		return nil, fmt.Errorf("no PEM certificate in %s", path)
	}
	return b, nil
}

// workloadFiles are the files a change of which reloads the configuration:
// the SPIFFE bundles and the JWKS endpoints' CA files (JWKS files reread
// themselves, jwtverify.FileKeys).
func workloadFiles(cfg *config.Config) []string {
	var out []string
	for _, b := range cfg.Auth.SPIFFEBundles {
		out = append(out, b.BundleFile)
	}
	for _, is := range cfg.Auth.JWTIssuers {
		if is.JWKSCAFile != "" {
			out = append(out, is.JWKSCAFile)
		}
	}
	return out
}

// jwksStatus is the current generation's issuers' key state, for metrics
// and readiness.
func (a *App) jwksStatus() []metrics.JWKSStatus {
	g := a.config.Load()
	if g == nil || g.identity.jwt == nil {
		return nil
	}
	var out []metrics.JWKSStatus
	for issuer, src := range g.identity.jwt.Sources() {
		out = append(out, metrics.JWKSStatus{Issuer: issuer, Stale: src.Err() != nil, Failures: src.Failures()})
	}
	slices.SortFunc(out, func(x, y metrics.JWKSStatus) int {
		if x.Issuer < y.Issuer {
			return -1
		}
		if x.Issuer > y.Issuer {
			return 1
		}
		return 0
	})
	return out
}

// jwksDegraded says which issuers' keys are stale, for /readyz.
func (a *App) jwksDegraded() []string {
	var out []string
	for _, s := range a.jwksStatus() {
		if s.Stale {
			out = append(out, "jwks of issuer "+s.Issuer+" could not be refreshed; verifying with the last good keys")
		}
	}
	return out
}
