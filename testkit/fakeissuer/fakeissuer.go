// Package fakeissuer is a token issuer for tests: an https server on
// loopback with an OpenID configuration and a JWKS (the endpoints a
// Kubernetes API server publishes: /.well-known/openid-configuration and
// /openid/v1/jwks), signing keys that rotate, and Kubernetes
// service-account token claims (docs/design.md, Security model).
package fakeissuer

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// JWKSPath is where the JWKS is served, as on a Kubernetes API server.
const JWKSPath = "/openid/v1/jwks"

// Issuer is a running fake issuer.
type Issuer struct {
	srv *httptest.Server

	mu      sync.Mutex
	keys    []signingKey // published; the last one signs
	down    atomic.Bool
	fetches atomic.Int64
}

type signingKey struct {
	kid string
	key crypto.Signer
}

// Start serves on a loopback port with one signing key.
func Start() *Issuer {
	is := &Issuer{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		if is.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer":                                is.URL(),
			"jwks_uri":                              is.URL() + JWKSPath,
			"response_types_supported":              []string{"id_token"},
			"subject_types_supported":               []string{"public"},
			"id_token_signing_alg_values_supported": []string{"ES256"},
		})
	})
	mux.HandleFunc("GET "+JWKSPath, func(w http.ResponseWriter, _ *http.Request) {
		is.fetches.Add(1)
		if is.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_, _ = w.Write(is.JWKS())
	})
	is.srv = httptest.NewTLSServer(mux)
	is.Rotate(false)
	return is
}

// Close stops the server.
func (is *Issuer) Close() { is.srv.Close() }

// URL is the issuer (iss) and the server's base URL.
func (is *Issuer) URL() string { return is.srv.URL }

// JWKSURL is the JWKS endpoint.
func (is *Issuer) JWKSURL() string { return is.srv.URL + JWKSPath }

// WriteCA writes the server's certificate (its own root) as PEM to path.
func (is *Issuer) WriteCA(path string) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: is.srv.Certificate().Raw}), 0o600)
}

// SetDown makes both endpoints answer 503 (true) or work again.
func (is *Issuer) SetDown(down bool) { is.down.Store(down) }

// Fetches counts JWKS requests.
func (is *Issuer) Fetches() int64 { return is.fetches.Load() }

// Rotate adds a new signing key that signs from now on; with retire the
// previous keys are withdrawn from the JWKS.
func (is *Issuer) Rotate(retire bool) string {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	id := make([]byte, 8)
	_, _ = rand.Read(id)
	kid := hex.EncodeToString(id)
	is.mu.Lock()
	defer is.mu.Unlock()
	if retire {
		is.keys = nil
	}
	is.keys = append(is.keys, signingKey{kid: kid, key: key})
	return kid
}

// JWKS is the published key set.
func (is *Issuer) JWKS() []byte {
	is.mu.Lock()
	defer is.mu.Unlock()
	var set jose.JSONWebKeySet
	for _, k := range is.keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.key.Public(), KeyID: k.kid, Algorithm: string(jose.ES256), Use: "sig"})
	}
	raw, err := json.Marshal(set)
	if err != nil {
		panic(err)
	}
	return raw
}

// Sign signs claims with the current key.
func (is *Issuer) Sign(claims map[string]any) string {
	is.mu.Lock()
	k := is.keys[len(is.keys)-1]
	is.mu.Unlock()
	return SignWith(k.key, jose.ES256, k.kid, claims)
}

// SignWith signs claims with any key, algorithm and kid (an unpublished
// key makes an unknown-kid token).
func SignWith(key any, alg jose.SignatureAlgorithm, kid string, claims map[string]any) string {
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		panic(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		panic(err)
	}
	obj, err := signer.Sign(payload)
	if err != nil {
		panic(err)
	}
	out, err := obj.CompactSerialize()
	if err != nil {
		panic(err)
	}
	return out
}

// Kubernetes are the claims of a projected service-account token for
// namespace/serviceAccount with audience aud, issued now for lifetime (the
// shape the kubelet gets from the TokenRequest API).
func (is *Issuer) Kubernetes(namespace, serviceAccount, aud string, now time.Time, lifetime time.Duration) map[string]any {
	return map[string]any{
		"iss": is.URL(),
		"sub": fmt.Sprintf("system:serviceaccount:%s:%s", namespace, serviceAccount),
		"aud": []string{aud},
		"exp": now.Add(lifetime).Unix(),
		"iat": now.Unix(),
		"nbf": now.Unix(),
		"kubernetes.io": map[string]any{
			"namespace": namespace,
			"node":      map[string]any{"name": "node-1", "uid": "2f5a6c1e-0000-4000-8000-000000000001"},
			"pod":       map[string]any{"name": serviceAccount + "-7d9c6", "uid": "2f5a6c1e-0000-4000-8000-000000000002"},
			"serviceaccount": map[string]any{
				"name": serviceAccount,
				"uid":  "2f5a6c1e-0000-4000-8000-000000000003",
			},
			"warnafter": now.Add(lifetime / 2).Unix(),
		},
	}
}
