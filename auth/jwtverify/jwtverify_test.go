package jwtverify_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/tokenbroker/tokenbroker/auth/jwtverify"
	"github.com/tokenbroker/tokenbroker/testkit/fakeissuer"
)

// clock is a settable clock shared by a verifier and its key sources.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func issuerPool(t *testing.T, is *fakeissuer.Issuer) *x509.CertPool {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := is.WriteCA(path); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(path)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(raw)
	return pool
}

func startIssuer(t *testing.T) *fakeissuer.Issuer {
	t.Helper()
	is := fakeissuer.Start()
	t.Cleanup(is.Close)
	return is
}

func remoteVerifier(t *testing.T, is *fakeissuer.Issuer, clk *clock, discovery bool) (*jwtverify.Verifier, *jwtverify.RemoteKeys) {
	t.Helper()
	opts := jwtverify.RemoteOptions{Issuer: is.URL(), RootCAs: issuerPool(t, is), Now: clk.Now}
	if discovery {
		opts.Discovery = true
	} else {
		opts.JWKSURL = is.JWKSURL()
	}
	keys, err := jwtverify.NewRemoteKeys(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(keys.Close)
	v, err := jwtverify.New([]jwtverify.Issuer{{Issuer: is.URL(), Audiences: []string{"tokenbroker"}, MaxTokenLifetime: 24 * time.Hour, Keys: keys}}, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	return v, keys
}

// hs256 signs claims with HMAC-SHA256 keyed by the issuer's public key
// in its JWKS form: the algorithm-confusion attack of RFC 8725 section 2.1.
func hs256(t *testing.T, is *fakeissuer.Issuer, claims map[string]any) string {
	t.Helper()
	return fakeissuer.SignWith(is.JWKS(), jose.HS256, "", claims)
}

func unsigned(claims map[string]any) string {
	hdr := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
	payload, _ := json.Marshal(claims)
	return hdr + "." + base64.RawURLEncoding.EncodeToString(payload) + "."
}

func tamper(token string) string {
	parts := strings.Split(token, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	payload = []byte(strings.Replace(string(payload), "invoice-worker", "admin-worker00", 1))
	parts[1] = base64.RawURLEncoding.EncodeToString(payload)
	return strings.Join(parts, ".")
}

func with(claims map[string]any, key string, value any) map[string]any {
	out := map[string]any{}
	for k, v := range claims {
		out[k] = v
	}
	if value == nil {
		delete(out, key)
	} else {
		out[key] = value
	}
	return out
}

func TestVerifyBadInputs(t *testing.T) {
	t.Parallel()
	is := startIssuer(t)
	clk := &clock{now: time.Now()}
	v, _ := remoteVerifier(t, is, clk, false)
	now := clk.Now()
	good := is.Kubernetes("billing", "invoice-worker", "tokenbroker", now, time.Hour)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)

	tests := []struct {
		name  string
		token string
		want  error  // errors.Is, or nil for a match on text
		text  string // substring of the error
	}{
		{"expired", is.Sign(with(with(good, "exp", now.Add(-2*time.Minute).Unix()), "iat", now.Add(-time.Hour).Unix())), jwtverify.ErrExpired, ""},
		{"nbf in the future", is.Sign(with(good, "nbf", now.Add(5*time.Minute).Unix())), jwtverify.ErrNotYetValid, ""},
		{"iat in the future", is.Sign(with(with(good, "iat", now.Add(5*time.Minute).Unix()), "nbf", nil)), jwtverify.ErrIssuedFuture, ""},
		{"wrong aud", is.Sign(with(good, "aud", []string{"vault"})), jwtverify.ErrAudience, ""},
		{"no aud", is.Sign(with(good, "aud", nil)), jwtverify.ErrAudience, ""},
		{"wrong iss", is.Sign(with(good, "iss", "https://evil.example")), jwtverify.ErrWrongIssuer, ""},
		{"alg none", unsigned(good), nil, `algorithm "none" is not allowed`},
		{"HS256 keyed with the public key", hs256(t, is, good), nil, `algorithm "HS256" is not allowed`},
		{"unknown kid", fakeissuer.SignWith(other, jose.ES256, "not-published", good), jwtverify.ErrUnknownKey, ""},
		{"published kid, other key", fakeissuer.SignWith(other, jose.ES256, "", good), jwtverify.ErrSignature, ""},
		{"RS256 by a stranger", fakeissuer.SignWith(rsaKey, jose.RS256, "", good), jwtverify.ErrSignature, ""},
		{"tampered payload", tamper(is.Sign(good)), jwtverify.ErrSignature, ""},
		{"20 KiB", is.Sign(with(good, "pad", strings.Repeat("x", 20<<10))), jwtverify.ErrTooLarge, ""},
		{"lifetime over the cap", is.Sign(with(good, "exp", now.Add(48*time.Hour).Unix())), jwtverify.ErrLifetime, ""},
		{"no exp", is.Sign(with(good, "exp", nil)), jwtverify.ErrNoExpiry, ""},
		{"no sub", is.Sign(with(good, "sub", nil)), jwtverify.ErrNoSubject, ""},
		{"not a JWT", "eyJhbGciOiJFUzI1NiJ9.bm90IGpzb24.c2ln", jwtverify.ErrMalformed, ""},
		{"garbage header", "eyJ!!!.e30.sig", jwtverify.ErrMalformed, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.Verify(t.Context(), tc.token)
			if err == nil {
				t.Fatal("accepted")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("error %q, want %q", err, tc.want)
			}
			if tc.text != "" && !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("error %q, want it to contain %q", err, tc.text)
			}
			if strings.Contains(err.Error(), tc.token) || strings.Contains(err.Error(), strings.Split(tc.token, ".")[0]) {
				t.Fatalf("error %q quotes the token", err)
			}
		})
	}

	t.Run("skew tolerated", func(t *testing.T) {
		tok := is.Sign(with(with(good, "nbf", now.Add(30*time.Second).Unix()), "exp", now.Add(-30*time.Second).Unix()))
		if _, err := v.Verify(t.Context(), tok); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("good token and kubernetes.io claim", func(t *testing.T) {
		c, err := v.Verify(t.Context(), is.Sign(good))
		if err != nil {
			t.Fatal(err)
		}
		if c.Subject != "system:serviceaccount:billing:invoice-worker" || c.Namespace != "billing" || c.ServiceAccount != "invoice-worker" || c.Issuer != is.URL() {
			t.Fatalf("claims %+v", c)
		}
	})
}

func TestRotationRefetchesOncePerInterval(t *testing.T) {
	t.Parallel()
	is := startIssuer(t)
	clk := &clock{now: time.Now()}
	v, keys := remoteVerifier(t, is, clk, true)
	claims := func() map[string]any {
		return is.Kubernetes("billing", "invoice-worker", "tokenbroker", clk.Now(), time.Hour)
	}
	if _, err := v.Verify(t.Context(), is.Sign(claims())); err != nil {
		t.Fatal(err)
	}
	if n := is.Fetches(); n != 1 {
		t.Fatalf("%d JWKS fetches, want 1", n)
	}

	// The issuer rotates: a token with the new kid fetches again once the
	// interval since the last fetch has passed.
	clk.Advance(jwtverify.RefetchInterval)
	is.Rotate(true)
	if _, err := v.Verify(t.Context(), is.Sign(claims())); err != nil {
		t.Fatalf("after rotation: %v", err)
	}
	if n := is.Fetches(); n != 2 {
		t.Fatalf("%d JWKS fetches, want 2", n)
	}

	// A second rotation right away: one unknown kid does not fetch again
	// within the interval, however many tokens carry it.
	is.Rotate(true)
	for range 5 {
		if _, err := v.Verify(t.Context(), is.Sign(claims())); !errors.Is(err, jwtverify.ErrUnknownKey) {
			t.Fatalf("within the interval: %v, want ErrUnknownKey", err)
		}
	}
	if n := is.Fetches(); n != 2 {
		t.Fatalf("%d JWKS fetches within the interval, want 2", n)
	}
	clk.Advance(jwtverify.RefetchInterval)
	if _, err := v.Verify(t.Context(), is.Sign(claims())); err != nil {
		t.Fatalf("after the interval: %v", err)
	}
	if keys.Err() != nil {
		t.Fatal(keys.Err())
	}
}

func TestEndpointDownKeepsLastGoodKeys(t *testing.T) {
	t.Parallel()
	is := startIssuer(t)
	clk := &clock{now: time.Now()}
	v, keys := remoteVerifier(t, is, clk, false)
	sign := func() string {
		return is.Sign(is.Kubernetes("billing", "invoice-worker", "tokenbroker", clk.Now(), time.Hour))
	}
	if _, err := v.Verify(t.Context(), sign()); err != nil {
		t.Fatal(err)
	}
	is.SetDown(true)
	clk.Advance(jwtverify.RefreshAfter)
	// A new token (not cached) with a known kid: the refresh fails, the
	// last good keys verify it.
	if _, err := v.Verify(t.Context(), sign()); err != nil {
		t.Fatalf("with the endpoint down: %v", err)
	}
	if keys.Err() == nil || keys.Failures() != 1 {
		t.Fatalf("Err %v, Failures %d: want the failed fetch reported", keys.Err(), keys.Failures())
	}
	if st := v.Sources()[is.URL()].Err(); st == nil {
		t.Fatal("Status does not report the stale keys")
	}
	is.SetDown(false)
	clk.Advance(jwtverify.RefreshAfter)
	if _, err := v.Verify(t.Context(), sign()); err != nil {
		t.Fatal(err)
	}
	if keys.Err() != nil {
		t.Fatalf("after recovery: %v", keys.Err())
	}
}

func TestVerifiedTokensAreRemembered(t *testing.T) {
	t.Parallel()
	is := startIssuer(t)
	clk := &clock{now: time.Now()}
	v, _ := remoteVerifier(t, is, clk, false)
	tok := is.Sign(is.Kubernetes("billing", "invoice-worker", "tokenbroker", clk.Now(), time.Hour))
	for range 3 {
		if _, err := v.Verify(t.Context(), tok); err != nil {
			t.Fatal(err)
		}
	}
	// With the endpoint down and no keys left, a remembered token still
	// passes; past its exp (and the skew) it is verified again and fails.
	is.SetDown(true)
	if _, err := v.Verify(t.Context(), tok); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Hour + jwtverify.ClockSkew + time.Second)
	if _, err := v.Verify(t.Context(), tok); !errors.Is(err, jwtverify.ErrExpired) {
		t.Fatalf("after exp: %v, want ErrExpired", err)
	}
}

func TestFileKeysReloadOnChange(t *testing.T) {
	t.Parallel()
	is := startIssuer(t)
	clk := &clock{now: time.Now()}
	dir := t.TempDir()
	path := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(path, is.JWKS(), 0o600); err != nil {
		t.Fatal(err)
	}
	keys, err := jwtverify.NewFileKeys(path, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	v, err := jwtverify.New([]jwtverify.Issuer{{Issuer: is.URL(), Audiences: []string{"tokenbroker"}, Keys: keys}}, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	sign := func() string {
		return is.Sign(is.Kubernetes("billing", "invoice-worker", "tokenbroker", clk.Now(), time.Hour))
	}
	old := sign()
	if _, err := v.Verify(t.Context(), old); err != nil {
		t.Fatal(err)
	}
	is.Rotate(true)
	if _, err := v.Verify(t.Context(), sign()); !errors.Is(err, jwtverify.ErrUnknownKey) {
		t.Fatalf("before the file changes: %v", err)
	}
	// A Kubernetes-style swap: write a new file and rename it over.
	next := filepath.Join(dir, "jwks.json.new")
	if err := os.WriteFile(next, is.JWKS(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(next, path); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(t.Context(), sign()); err != nil {
		t.Fatalf("after the swap: %v", err)
	}
	// The retired key is gone, and so is what was remembered with it.
	if _, err := v.Verify(t.Context(), old); !errors.Is(err, jwtverify.ErrUnknownKey) {
		t.Fatalf("token of the retired key: %v", err)
	}
	// A broken file keeps the keys and says so.
	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * time.Second)
	if _, err := v.Verify(t.Context(), sign()); err != nil {
		t.Fatalf("with a broken file: %v", err)
	}
	if keys.Err() == nil {
		t.Fatal("a broken file is not reported")
	}
}

func TestLooksLikeJWT(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"eyJhbGciOiJFUzI1NiJ9.e30.c2ln", true},
		{"3q2+7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", false},
		{"0123456789abcdef0123456789abcdef", false},
		{"eyJ.only-one-dot", false},
		{"abc.def.ghi", false},
		{base64.RawURLEncoding.EncodeToString([]byte(`{ "alg":"ES256"}`)) + ".e30.c2ln", true},
		{base64.RawURLEncoding.EncodeToString([]byte("\n{\"alg\":\"ES256\"}")) + ".e30.c2ln", true},
		{"a.b.c", false},
		{"...", false},
	} {
		if got := jwtverify.LooksLikeJWT(tc.in); got != tc.want {
			t.Errorf("LooksLikeJWT(%q) = %v", tc.in, got)
		}
	}
}
