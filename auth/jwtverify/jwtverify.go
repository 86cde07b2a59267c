// Package jwtverify verifies the JWTs that callers present as workload
// identity (docs/design.md, Security model: Kubernetes projected
// service-account tokens, OIDC ID tokens, SPIFFE JWT-SVIDs). It implements
// the checks of RFC 7519 section 7.2 and RFC 8725 (JWT best current
// practice): an algorithm allow-list of asymmetric algorithms only, the
// issuer, the audience, exp/nbf/iat with a bounded clock skew, a lifetime
// cap and a size cap. Keys come from each issuer's JWKS (RFC 7517): a
// file reread when it changes, an https URL, or OpenID Connect discovery
// (OpenID Connect Discovery 1.0 section 4).
//
// A token that verified is remembered by its SHA-256 digest until its exp,
// so the hot path costs one hash and one map lookup, not a signature check.
package jwtverify

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/tokenbroker/tokenbroker/config"
)

// Limits of the checks (docs/design.md, Security model).
const (
	// MaxTokenBytes bounds a presented token.
	MaxTokenBytes = 16 << 10
	// ClockSkew is how far exp, nbf and iat may be off the broker's clock.
	ClockSkew = 60 * time.Second
	// maxVerified bounds the verified-token cache.
	maxVerified = 10_000
)

// Algorithms are the accepted signature algorithms: asymmetric only, so
// that a public key can never serve as an HMAC secret, and never "none".
var Algorithms = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.ES256, jose.ES384, jose.EdDSA,
}

// Issuer is one trusted token issuer (config auth.jwt_issuers[i]).
type Issuer struct {
	// Issuer is the exact iss value.
	Issuer string
	// Audiences: a token's aud must contain one of them.
	Audiences []string
	// MaxTokenLifetime bounds exp - iat (config.DefaultMaxTokenLifetime when 0).
	MaxTokenLifetime time.Duration
	// Keys finds the issuer's verification keys.
	Keys KeySource
}

// Claims is what a verified token says about its caller.
type Claims struct {
	Issuer  string
	Subject string
	Expiry  time.Time
	// Namespace and ServiceAccount come from a Kubernetes token's
	// "kubernetes.io" claim (empty otherwise), for the audit line.
	Namespace      string
	ServiceAccount string
}

// Verifier checks tokens against a fixed set of issuers. It is safe for
// concurrent use.
type Verifier struct {
	issuers map[string]*Issuer
	now     func() time.Time
	// verified remembers tokens that passed, by digest, until their exp.
	verified *lru.Cache[[32]byte, Claims]
	// keyGen is the sum of the key sources' generations when verified
	// was last valid: a key set change empties the cache, so a key an
	// issuer withdrew stops working at once. Read on every call without a
	// lock; mu serialises the rare purge.
	keyGen atomic.Uint64
	mu     sync.Mutex
	// sources are the issuers' key sources, for the per-call check.
	sources []KeySource
}

// New returns a verifier of the given issuers. now is the clock (nil:
// time.Now).
func New(issuers []Issuer, now func() time.Time) (*Verifier, error) {
	if now == nil {
		now = time.Now
	}
	cache, err := lru.New[[32]byte, Claims](maxVerified)
	if err != nil {
		return nil, err
	}
	v := &Verifier{issuers: map[string]*Issuer{}, now: now, verified: cache}
	for i := range issuers {
		is := issuers[i]
		if is.Issuer == "" || is.Keys == nil || len(is.Audiences) == 0 {
			return nil, fmt.Errorf("issuer %q: issuer, audiences and keys are required", is.Issuer)
		}
		if _, dup := v.issuers[is.Issuer]; dup {
			return nil, fmt.Errorf("issuer %q configured twice", is.Issuer)
		}
		if is.MaxTokenLifetime <= 0 {
			is.MaxTokenLifetime = config.DefaultMaxTokenLifetime
		}
		v.issuers[is.Issuer] = &is
		v.sources = append(v.sources, is.Keys)
	}
	return v, nil
}

// Issuers returns the configured issuers' names.
func (v *Verifier) Issuers() []string {
	out := make([]string, 0, len(v.issuers))
	for name := range v.issuers {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// Sources returns each issuer's key source, by issuer, for metrics and
// readiness (a JWKS endpoint that is down keeps its last good keys, and
// its Err says so).
func (v *Verifier) Sources() map[string]KeySource {
	out := make(map[string]KeySource, len(v.issuers))
	for name, is := range v.issuers {
		out[name] = is.Keys
	}
	return out
}

// LooksLikeJWT reports whether a bearer credential is a JWT rather than an
// API key: a JWS in compact serialization (RFC 7515 section 7.1) has
// exactly two dots and its header is a base64url JSON object. API keys
// are hex or base64 and never have a dot.
func LooksLikeJWT(credential string) bool {
	if strings.Count(credential, ".") != 2 {
		return false
	}
	hdr, _, _ := strings.Cut(credential, ".")
	if strings.HasPrefix(hdr, "eyJ") { // `{"`, what every encoder writes
		return true
	}
	// Whitespace before the first member: decode the first bytes.
	raw, err := base64.RawURLEncoding.DecodeString(hdr[:min(len(hdr), 8)/4*4])
	return err == nil && strings.HasPrefix(strings.TrimLeft(string(raw), " \t\r\n"), "{")
}

// Errors name the reason a token is refused, for the audit line and the
// caller; none contains the token.
var (
	ErrTooLarge     = fmt.Errorf("the token is larger than %d KiB", MaxTokenBytes>>10)
	ErrMalformed    = errors.New("the token is not a signed JWT in compact form")
	ErrUnknownKey   = errors.New("no key of the issuer's JWKS has the token's key id (kid)")
	ErrSignature    = errors.New("the token's signature does not verify")
	ErrNoKeys       = errors.New("the issuer's keys are not available")
	ErrWrongIssuer  = errors.New("the token's issuer (iss) is not in auth.jwt_issuers")
	ErrAudience     = errors.New("the token's audience (aud) names none of the issuer's audiences")
	ErrExpired      = errors.New("the token has expired (exp)")
	ErrNotYetValid  = errors.New("the token is not valid yet (nbf)")
	ErrIssuedFuture = errors.New("the token is issued in the future (iat)")
	ErrNoExpiry     = errors.New("the token has no expiry (exp)")
	ErrNoSubject    = errors.New("the token has no subject (sub)")
	ErrLifetime     = errors.New("the token's lifetime (exp - iat) is longer than the issuer's max_token_lifetime")
)

// header is the part of a JOSE header read before any verification.
type header struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
}

// kubernetesClaim is the "kubernetes.io" claim of a projected
// service-account token.
type kubernetesClaim struct {
	Namespace      string `json:"namespace"`
	ServiceAccount struct {
		Name string `json:"name"`
	} `json:"serviceaccount"`
}

// Verify checks raw and returns its claims, or an error that says why it
// is refused (never containing the token).
func (v *Verifier) Verify(ctx context.Context, raw string) (Claims, error) {
	if len(raw) > MaxTokenBytes {
		return Claims{}, ErrTooLarge
	}
	now := v.now()
	digest := sha256.Sum256([]byte(raw))
	v.dropIfKeysChanged()
	if c, ok := v.verified.Get(digest); ok && now.Before(c.Expiry) {
		return c, nil
	}
	gen := v.keyGen.Load()
	c, err := v.verify(ctx, raw, now)
	if err != nil {
		return Claims{}, err
	}
	// Remembered only if no key set changed meanwhile: a token verified
	// with a key withdrawn during the check is checked again next time.
	if v.keySum() == gen {
		v.verified.Add(digest, c)
	}
	return c, nil
}

// keySum is the sum of the key sources' generations.
func (v *Verifier) keySum() uint64 {
	var sum uint64
	for _, src := range v.sources {
		sum += src.Generation()
	}
	return sum
}

// dropIfKeysChanged empties the verified cache when any issuer's key set
// changed since it was filled (generations only grow, so their sum
// changes whenever one does).
func (v *Verifier) dropIfKeysChanged() {
	sum := v.keySum()
	if sum == v.keyGen.Load() {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if sum != v.keyGen.Load() {
		v.verified.Purge()
		v.keyGen.Store(sum)
	}
}

func (v *Verifier) verify(ctx context.Context, raw string, now time.Time) (Claims, error) {
	hdrPart, _, ok := strings.Cut(raw, ".")
	if !ok {
		return Claims{}, ErrMalformed
	}
	hdrJSON, err := base64.RawURLEncoding.DecodeString(hdrPart)
	if err != nil {
		return Claims{}, ErrMalformed
	}
	var h header
	if err := json.Unmarshal(hdrJSON, &h); err != nil {
		return Claims{}, ErrMalformed
	}
	if !slices.Contains(Algorithms, jose.SignatureAlgorithm(h.Alg)) {
		return Claims{}, fmt.Errorf("the token's algorithm %q is not allowed (only RS256, RS384, RS512, PS256, ES256, ES384, EdDSA)", truncate(h.Alg))
	}
	tok, err := jwt.ParseSigned(raw, Algorithms)
	if err != nil {
		return Claims{}, ErrMalformed
	}
	var unverified jwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&unverified); err != nil {
		return Claims{}, ErrMalformed
	}
	is := v.issuers[unverified.Issuer]
	if is == nil {
		return Claims{}, ErrWrongIssuer
	}
	keys, err := is.Keys.Keys(ctx, h.Kid)
	if err != nil {
		return Claims{}, err
	}
	var claims jwt.Claims
	var extra struct {
		Kubernetes *kubernetesClaim `json:"kubernetes.io"`
	}
	verified := false
	for _, k := range keys {
		if err := tok.Claims(k.Key, &claims, &extra); err == nil {
			verified = true
			break
		}
	}
	if !verified {
		return Claims{}, ErrSignature
	}
	if err := checkClaims(is, &claims, now); err != nil {
		return Claims{}, err
	}
	out := Claims{Issuer: claims.Issuer, Subject: claims.Subject, Expiry: claims.Expiry.Time()}
	if k := extra.Kubernetes; k != nil {
		out.Namespace, out.ServiceAccount = k.Namespace, k.ServiceAccount.Name
	}
	return out, nil
}

// checkClaims applies RFC 7519 section 7.2 steps 10 (the claims) with the
// broker's rules: every time claim within ClockSkew, a bounded lifetime.
func checkClaims(is *Issuer, c *jwt.Claims, now time.Time) error {
	if c.Issuer != is.Issuer {
		return ErrWrongIssuer
	}
	if !slices.ContainsFunc(is.Audiences, c.Audience.Contains) {
		return ErrAudience
	}
	if c.Expiry == nil {
		return ErrNoExpiry
	}
	exp := c.Expiry.Time()
	if now.After(exp.Add(ClockSkew)) {
		return ErrExpired
	}
	if c.NotBefore != nil && now.Add(ClockSkew).Before(c.NotBefore.Time()) {
		return ErrNotYetValid
	}
	start := time.Time{}
	switch {
	case c.IssuedAt != nil:
		start = c.IssuedAt.Time()
		if now.Add(ClockSkew).Before(start) {
			return ErrIssuedFuture
		}
	case c.NotBefore != nil:
		start = c.NotBefore.Time()
	default:
		// No iat or nbf: the lifetime left is what is bounded.
		start = now
	}
	if exp.Sub(start) > is.MaxTokenLifetime {
		return ErrLifetime
	}
	if c.Subject == "" {
		return ErrNoSubject
	}
	return nil
}

// truncate bounds attacker-chosen text quoted in an error.
func truncate(s string) string {
	if len(s) > 32 {
		return s[:32] + "..."
	}
	return s
}
