package vendors

import (
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
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// Client authentication methods (RFC 6749 section 2.3, RFC 7523 section
// 2.2, RFC 8705 section 2), by their OpenID Connect / RFC 8414 names.
const (
	authBasic     = "client_secret_basic"
	authPost      = "client_secret_post"
	authSecretJWT = "client_secret_jwt"
	authKeyJWT    = "private_key_jwt"
	authTLS       = "tls_client_auth"
	// authNone sends client_id (when there is one) and nothing else: public
	// clients, and vendors such as Saasu whose grant carries no client.
	authNone = "none"
)

// clientAssertionType is RFC 7523 section 2.2's client_assertion_type.
const clientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// assertionLifetime bounds a client assertion: long enough for clock skew,
// short enough that a captured one is soon useless.
const assertionLifetime = 5 * time.Minute

// clientAuth is how a client authenticates to the token endpoint.
type clientAuth struct {
	method       string
	clientID     string
	clientSecret string
	// privateKeyPEM is parsed on first use (key): parsing an RSA key costs
	// more than serving a cached token, and ResolveCall runs for every request.
	privateKeyPEM string
	keyOnce       sync.Once
	key           crypto.Signer
	keyErr        error
	// assertionFile holds the client assertion instead of a signed one
	// (client_assertion_file; workload.go).
	assertionFile string
}

// newClientAuth checks that the credentials the method needs are there and
// marks them used.
func newClientAuth(set Settings, in Input, defaultMethod string, used map[string]bool) (*clientAuth, error) {
	a := &clientAuth{
		method:       set.String("client_auth", defaultMethod),
		clientID:     in.Credentials.Get("client_id"),
		clientSecret: in.Credentials.Get("client_secret"),
	}
	need := func(names ...string) error {
		for _, name := range names {
			if in.Credentials.Get(name) == "" {
				return &ArgumentError{Field: "credentials." + name, Reason: "is required for client authentication " + a.method}
			}
			used[name] = true
		}
		return nil
	}
	switch a.method {
	case authBasic, authPost, authSecretJWT:
		return a, need("client_id", "client_secret")
	case authKeyJWT:
		if file := set["client_assertion_file"]; file != "" {
			a.assertionFile = file
			return a, need("client_id")
		}
		if err := need("client_id", "private_key"); err != nil {
			return a, err
		}
		a.privateKeyPEM = in.Credentials.Get("private_key")
		if block, _ := pem.Decode([]byte(a.privateKeyPEM)); block == nil || !knownKeyBlock[block.Type] {
			return a, &ArgumentError{Field: "credentials.private_key", Reason: "is not a PEM private key (PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)"}
		}
		return a, nil
	case authTLS:
		if set["tls_client_cert"] == "" || set["tls_client_key"] == "" {
			return a, &ConfigError{Setting: "client_auth", Reason: "tls_client_auth needs the tls_client_cert and tls_client_key settings"}
		}
		return a, need("client_id")
	case authNone:
		if a.clientID != "" {
			used["client_id"] = true
		}
		return a, nil
	}
	return a, &ConfigError{Setting: "client_auth", Reason: fmt.Sprintf("%q is not one of client_secret_basic, client_secret_post, client_secret_jwt, private_key_jwt, tls_client_auth, none", a.method)}
}

var knownKeyBlock = map[string]bool{"PRIVATE KEY": true, "RSA PRIVATE KEY": true, "EC PRIVATE KEY": true}

// header adds what the method sends in headers.
func (a *clientAuth) header(h http.Header) {
	if a.method == authBasic {
		// RFC 6749 section 2.3.1: both parts form-encoded before Basic.
		cred := url.QueryEscape(a.clientID) + ":" + url.QueryEscape(a.clientSecret)
		h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(cred)))
	}
}

// body adds what the method sends in the body. audience is the token URL
// the request goes to (the assertion's aud). It runs once per attempt, so
// a retried request carries a fresh assertion (a new jti).
func (a *clientAuth) body(f *fields, audience string, now time.Time) error {
	switch a.method {
	case authPost:
		f.set("client_id", a.clientID)
		f.set("client_secret", a.clientSecret)
	case authTLS, authNone:
		if a.clientID != "" {
			f.set("client_id", a.clientID)
		}
	case authSecretJWT, authKeyJWT:
		assertion, err := a.assertion(audience, now)
		if err != nil {
			return err
		}
		f.set("client_id", a.clientID)
		f.set("client_assertion_type", clientAssertionType)
		f.set("client_assertion", assertion)
	}
	return nil
}

// assertion is an RFC 7523 section 3 client assertion: iss and sub are the
// client id, aud the token endpoint, jti random, signed HS256 with the
// client secret (client_secret_jwt) or RS256/ES256 with the private key
// (private_key_jwt).
func (a *clientAuth) assertion(audience string, now time.Time) (string, error) {
	if a.assertionFile != "" {
		tok, err := readTokenFile(a.assertionFile)
		if err != nil {
			return "", &ConfigError{Setting: "client_assertion_file", Reason: err.Error()}
		}
		return tok, nil
	}
	jti := make([]byte, 16)
	_, _ = rand.Read(jti) // never fails (crypto/rand crashes the program instead)
	claims, err := json.Marshal(struct {
		Iss string `json:"iss"`
		Sub string `json:"sub"`
		Aud string `json:"aud"`
		Jti string `json:"jti"`
		Iat int64  `json:"iat"`
		Exp int64  `json:"exp"`
	}{a.clientID, a.clientID, audience, base64.RawURLEncoding.EncodeToString(jti), now.Unix(), now.Add(assertionLifetime).Unix()})
	if err != nil {
		return "", err
	}
	var key crypto.Signer // nil: HS256 with the client secret
	if a.method == authKeyJWT {
		if key, err = a.signer(); err != nil {
			return "", err
		}
	}
	jws, err := signCompact(key, []byte(a.clientSecret), claims)
	if err != nil {
		return "", fmt.Errorf("signing the client assertion: %w", err)
	}
	return jws, nil
}

// signCompact signs payload as a compact JWS with the header
// {"alg":...,"typ":"JWT"}: HS256 with hmacKey when key is nil, RS256 with
// an RSA key, ES256 with a P-256 key (RFC 7518 section 3).
func signCompact(key crypto.Signer, hmacKey, payload []byte) (string, error) {
	alg := "RS256"
	switch key.(type) {
	case nil:
		alg = "HS256"
	case *ecdsa.PrivateKey:
		alg = "ES256"
	}
	enc := base64.RawURLEncoding
	signingInput := enc.EncodeToString([]byte(`{"alg":"`+alg+`","typ":"JWT"}`)) + "." + enc.EncodeToString(payload)
	digest := sha256.Sum256([]byte(signingInput))
	var sig []byte
	switch k := key.(type) {
	case nil:
		mac := hmac.New(sha256.New, hmacKey)
		mac.Write([]byte(signingInput))
		sig = mac.Sum(nil)
	case *rsa.PrivateKey:
		var err error
		if sig, err = rsa.SignPKCS1v15(nil, k, crypto.SHA256, digest[:]); err != nil {
			return "", err
		}
	case *ecdsa.PrivateKey:
		r, s, err := ecdsa.Sign(rand.Reader, k, digest[:])
		if err != nil {
			return "", err
		}
		// RFC 7518 section 3.4: R and S as fixed-size big-endian halves.
		sig = make([]byte, 64)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
	default:
		return "", errors.New("unsupported key")
	}
	return signingInput + "." + enc.EncodeToString(sig), nil
}

// signer parses the private key once per call.
func (a *clientAuth) signer() (crypto.Signer, error) {
	a.keyOnce.Do(func() { a.key, a.keyErr = parseSigningKey(a.privateKeyPEM) })
	return a.key, a.keyErr
}

// parseSigningKey reads an RSA (2048 bits or more) or P-256 private key in
// PKCS #8, PKCS #1 or SEC 1 PEM.
func parseSigningKey(pemText string) (crypto.Signer, error) {
	bad := func(reason string) error {
		return &ArgumentError{Field: "credentials.private_key", Reason: reason}
	}
	block, _ := pem.Decode([]byte(pemText))
	if block == nil {
		return nil, bad("is not PEM")
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, bad("PEM block " + block.Type + " is not a private key")
	}
	if err != nil {
		return nil, bad("cannot be parsed as a private key")
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if k.N.BitLen() < 2048 {
			return nil, bad("RSA keys must have at least 2048 bits")
		}
		return k, nil
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P256() {
			return nil, bad("EC keys must be on P-256 (ES256)")
		}
		return k, nil
	}
	return nil, bad(fmt.Sprintf("%T keys are not supported; use RSA (RS256) or P-256 (ES256)", key))
}
