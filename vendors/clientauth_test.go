package vendors

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/secret"
)

var (
	rsaKey  = sync.OnceValue(func() *rsa.PrivateKey { return mustKey(rsa.GenerateKey(rand.Reader, 2048)) })
	ecKey   = sync.OnceValue(func() *ecdsa.PrivateKey { return mustKey(ecdsa.GenerateKey(elliptic.P256(), rand.Reader)) })
	ec384   = sync.OnceValue(func() *ecdsa.PrivateKey { return mustKey(ecdsa.GenerateKey(elliptic.P384(), rand.Reader)) })
	weakRSA = sync.OnceValue(func() *rsa.PrivateKey { return mustKey(rsa.GenerateKey(rand.Reader, 1024)) })
)

func mustKey[K any](k K, err error) K {
	if err != nil {
		panic(err)
	}
	return k
}

func pemOf(typ string, der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}

func pkcs8(key any) string {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		panic(err)
	}
	return pemOf("PRIVATE KEY", der)
}

// assertionClaims are the RFC 7523 claims the tests check.
type assertionClaims struct {
	Iss, Sub, Aud, Jti string
	Iat, Exp           int64
}

// verifyAssertion checks a client assertion's structure and signature the
// way an authorization server does, and returns its claims.
func verifyAssertion(t *testing.T, assertion, wantAlg string, verify func(signingInput, sig []byte) bool) assertionClaims {
	t.Helper()
	parts := strings.Split(assertion, ".")
	if len(parts) != 3 {
		t.Fatalf("assertion has %d parts", len(parts))
	}
	dec := base64.RawURLEncoding
	header, err1 := dec.DecodeString(parts[0])
	payload, err2 := dec.DecodeString(parts[1])
	sig, err3 := dec.DecodeString(parts[2])
	if err := errors.Join(err1, err2, err3); err != nil {
		t.Fatalf("assertion is not base64url without padding: %v", err)
	}
	var h struct{ Alg, Typ string }
	if err := json.Unmarshal(header, &h); err != nil || h.Alg != wantAlg || h.Typ != "JWT" {
		t.Fatalf("header %s, want alg %s", header, wantAlg)
	}
	if !verify([]byte(parts[0]+"."+parts[1]), sig) {
		t.Fatalf("signature does not verify")
	}
	var c assertionClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatalf("claims %s: %v", payload, err)
	}
	return c
}

func verifyHS256(key string) func([]byte, []byte) bool {
	return func(in, sig []byte) bool {
		mac := hmac.New(sha256.New, []byte(key))
		mac.Write(in)
		return hmac.Equal(mac.Sum(nil), sig)
	}
}

func verifyRS256(pub *rsa.PublicKey) func([]byte, []byte) bool {
	return func(in, sig []byte) bool {
		digest := sha256.Sum256(in)
		return rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig) == nil
	}
}

func verifyES256(pub *ecdsa.PublicKey) func([]byte, []byte) bool {
	return func(in, sig []byte) bool {
		if len(sig) != 64 {
			return false
		}
		digest := sha256.Sum256(in)
		return ecdsa.Verify(pub, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:]))
	}
}

// TestClientAssertions: client_secret_jwt and private_key_jwt send an RFC
// 7523 assertion that the authorization server can verify with the key,
// and a fresh one on every attempt.
func TestClientAssertions(t *testing.T) {
	t.Parallel()
	rsaPKCS1 := pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey()))
	ecDER, err := x509.MarshalECPrivateKey(ecKey())
	if err != nil {
		t.Fatal(err)
	}
	ecSEC1 := pemOf("EC PRIVATE KEY", ecDER)
	tests := []struct {
		name   string
		method string
		creds  map[string]string
		alg    string
		verify func([]byte, []byte) bool
	}{
		{"client_secret_jwt", "client_secret_jwt", map[string]string{"client_secret": "a long shared client secret"}, "HS256", verifyHS256("a long shared client secret")},
		{"private_key_jwt RSA PKCS #8", "private_key_jwt", map[string]string{"private_key": pkcs8(rsaKey())}, "RS256", verifyRS256(&rsaKey().PublicKey)},
		{"private_key_jwt RSA PKCS #1", "private_key_jwt", map[string]string{"private_key": rsaPKCS1}, "RS256", verifyRS256(&rsaKey().PublicKey)},
		{"private_key_jwt P-256 PKCS #8", "private_key_jwt", map[string]string{"private_key": pkcs8(ecKey())}, "ES256", verifyES256(&ecKey().PublicKey)},
		{"private_key_jwt P-256 SEC 1", "private_key_jwt", map[string]string{"private_key": ecSEC1}, "ES256", verifyES256(&ecKey().PublicKey)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// The first attempt meets a 503: the retry must carry a new
			// assertion (a server may have recorded the first jti).
			h, base := serve(t,
				cannedAnswer{status: 503, ctype: "application/json", body: `{"error":"temporarily_unavailable"}`},
				cannedAnswer{status: 200, ctype: "application/json", body: `{"access_token":"tok","expires_in":60}`})
			creds := map[string]string{"client_id": "my-client"}
			for k, v := range tc.creds {
				creds[k] = v
			}
			call, err := OAuth2().ResolveCall(Input{
				Settings:    Settings{"token_url": base + "/oauth/token", "client_auth": tc.method, "scope": "api"},
				Credentials: secret.FromStrings(creds),
			})
			if err != nil {
				t.Fatalf("ResolveCall: %v", err)
			}
			start := time.Now()
			tok, err := call.Fetch(context.Background(), "")
			if err != nil || tok.AccessToken != "tok" {
				t.Fatalf("Fetch = %+v, %v", tok, err)
			}
			reqs := h.seen()
			if len(reqs) != 2 {
				t.Fatalf("%d requests, want 2", len(reqs))
			}
			var jtis []string
			for _, r := range reqs {
				if r.header.Get("Authorization") != "" {
					t.Errorf("Authorization header sent with %s", tc.method)
				}
				form, err := url.ParseQuery(r.body)
				if err != nil {
					t.Fatalf("body: %v", err)
				}
				if form.Get("grant_type") != "client_credentials" || form.Get("scope") != "api" || form.Get("client_id") != "my-client" ||
					form.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
					t.Errorf("form %v", form)
				}
				if form.Has("client_secret") || form.Has("private_key") {
					t.Errorf("form carries the secret itself: %v", form)
				}
				c := verifyAssertion(t, form.Get("client_assertion"), tc.alg, tc.verify)
				if c.Iss != "my-client" || c.Sub != "my-client" || c.Aud != base+"/oauth/token" || c.Jti == "" {
					t.Errorf("claims %+v", c)
				}
				if c.Iat < start.Unix()-1 || c.Iat > time.Now().Unix()+1 || c.Exp <= c.Iat || c.Exp-c.Iat > 600 {
					t.Errorf("iat %d exp %d: want now and a short lifetime", c.Iat, c.Exp)
				}
				jtis = append(jtis, c.Jti)
			}
			if jtis[0] == jtis[1] {
				t.Errorf("the retry reused jti %s", jtis[0])
			}
		})
	}
}

// TestClientAssertionKeyErrors: unusable keys are the caller's error,
// before any request is sent.
func TestClientAssertionKeyErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		key  string
	}{
		{"RSA below 2048 bits", pkcs8(weakRSA())},
		{"P-384", pkcs8(ec384())},
		{"garbage in a PEM block", pemOf("PRIVATE KEY", []byte("not DER"))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h, base := serve(t, cannedAnswer{status: 200, ctype: "application/json", body: `{"access_token":"tok","expires_in":60}`})
			call, err := OAuth2().ResolveCall(Input{
				Settings:    Settings{"token_url": base, "client_auth": "private_key_jwt"},
				Credentials: secret.FromStrings(map[string]string{"client_id": "c", "private_key": tc.key}),
			})
			if err == nil {
				_, err = call.Fetch(context.Background(), "")
			}
			var ae *ArgumentError
			if !errors.As(err, &ae) || ae.Field != "credentials.private_key" {
				t.Fatalf("err = %v, want an ArgumentError on credentials.private_key", err)
			}
			if n := len(h.seen()); n != 0 {
				t.Fatalf("%d requests sent with an unusable key", n)
			}
		})
	}
}
