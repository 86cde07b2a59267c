package vendorsim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Workload identity federation on the generic oauth2 endpoint: a client
// proves who it is with a JWT from an issuer the server trusts (a
// Kubernetes service-account token, a SPIFFE JWT-SVID) instead of a
// secret, the way Microsoft Entra ID's federated credentials and Google's
// Security Token Service work. Three flows, each strictly per its RFC:
//
//   - RFC 7523 section 2.1, grant_type
//     urn:ietf:params:oauth:grant-type:jwt-bearer: exactly one "assertion";
//     client authentication optional (section 3.1).
//   - RFC 7523 section 2.2, client authentication for any grant:
//     client_assertion_type urn:ietf:params:oauth:client-assertion-type:jwt-bearer
//     and exactly one client_assertion; no other client credential.
//   - RFC 8693, grant_type urn:ietf:params:oauth:grant-type:token-exchange:
//     subject_token and subject_token_type (section 2.1) required;
//     requested_token_type, when sent, must be
//     urn:ietf:params:oauth:token-type:access_token; the answer carries
//     issued_token_type (section 2.2.1).
//
// Every JWT is checked per RFC 7523 section 3: signed (RS256, ES256 and
// the other asymmetric algorithms) by a key of its trusted issuer, iss and
// sub naming a registered identity, aud containing that identity's
// audience, exp in the future (no skew), nbf and iat not in the future.
// A failed grant JWT is invalid_grant (400); a failed client assertion is
// invalid_client (401).

const (
	grantJWTBearer      = "urn:ietf:params:oauth:grant-type:jwt-bearer"
	grantTokenExchange  = "urn:ietf:params:oauth:grant-type:token-exchange"
	clientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
	tokenTypeJWT        = "urn:ietf:params:oauth:token-type:jwt"
	tokenTypeIDToken    = "urn:ietf:params:oauth:token-type:id_token"
	tokenTypeAccess     = "urn:ietf:params:oauth:token-type:access_token"
)

// FederatedIdentity maps a workload identity to an oauth2 client.
type FederatedIdentity struct {
	// ClientID is the client the identity acts as.
	ClientID string
	// Issuer and Subject are the iss and sub its JWTs carry.
	Issuer, Subject string
	// Audience must be in the JWTs' aud (Entra ID uses
	// "api://AzureADTokenExchange").
	Audience string
	// BoundToAssertion: issued tokens expire no later than the JWT they
	// were obtained with.
	BoundToAssertion bool
}

// federation is a Sim's trusted issuers and identities.
type federation struct {
	mu         sync.Mutex
	keys       map[string][]jose.JSONWebKey
	identities []FederatedIdentity
	used       int // JWTs accepted, for tests
}

// fed returns the simulator's federation state.
func (s *Sim) fed() *federation { return &s.federation }

// TrustIssuer makes the simulator accept JWTs of issuer signed by a key of
// jwks (a JWKS document, RFC 7517 section 5).
func (s *Sim) TrustIssuer(issuer string, jwks []byte) error {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(jwks, &set); err != nil {
		return fmt.Errorf("vendorsim: TrustIssuer: %w", err)
	}
	f := s.fed()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.keys == nil {
		f.keys = map[string][]jose.JSONWebKey{}
	}
	f.keys[issuer] = set.Keys
	return nil
}

// AddFederatedIdentity registers an identity whose JWTs the oauth2
// endpoint accepts for its client.
func (s *Sim) AddFederatedIdentity(id FederatedIdentity) {
	f := s.fed()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.identities = append(f.identities, id)
}

// FederatedTokensAccepted counts the workload identity JWTs accepted.
func (s *Sim) FederatedTokensAccepted() int {
	f := s.fed()
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.used
}

var jwtAlgorithms = []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.ES256, jose.ES384, jose.EdDSA}

// verifyJWT checks a workload identity JWT and returns its identity and
// exp; errors are described for error_description.
func (s *Sim) verifyJWT(raw string) (FederatedIdentity, time.Time, error) {
	tok, err := jwt.ParseSigned(raw, jwtAlgorithms)
	if err != nil {
		return FederatedIdentity{}, time.Time{}, fmt.Errorf("not a signed JWT with an accepted algorithm")
	}
	var unverified jwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&unverified); err != nil {
		return FederatedIdentity{}, time.Time{}, fmt.Errorf("unreadable claims")
	}
	f := s.fed()
	f.mu.Lock()
	keys := f.keys[unverified.Issuer]
	identities := slices.Clone(f.identities)
	f.mu.Unlock()
	if keys == nil {
		return FederatedIdentity{}, time.Time{}, fmt.Errorf("untrusted issuer")
	}
	var claims jwt.Claims
	verified := false
	for _, k := range keys {
		if len(tok.Headers) == 1 && tok.Headers[0].KeyID != "" && tok.Headers[0].KeyID != k.KeyID {
			continue
		}
		if tok.Claims(k.Key, &claims) == nil {
			verified = true
			break
		}
	}
	if !verified {
		return FederatedIdentity{}, time.Time{}, fmt.Errorf("bad signature")
	}
	now := s.now()
	switch {
	case claims.Expiry == nil:
		return FederatedIdentity{}, time.Time{}, fmt.Errorf("no exp")
	case !now.Before(claims.Expiry.Time()):
		return FederatedIdentity{}, time.Time{}, fmt.Errorf("expired")
	case claims.NotBefore != nil && now.Before(claims.NotBefore.Time()):
		return FederatedIdentity{}, time.Time{}, fmt.Errorf("not yet valid")
	case claims.IssuedAt != nil && now.Add(time.Second).Before(claims.IssuedAt.Time()):
		return FederatedIdentity{}, time.Time{}, fmt.Errorf("issued in the future")
	}
	for _, id := range identities {
		if id.Issuer != claims.Issuer || id.Subject != claims.Subject {
			continue
		}
		if !claims.Audience.Contains(id.Audience) {
			return FederatedIdentity{}, time.Time{}, fmt.Errorf("wrong audience")
		}
		f.mu.Lock()
		f.used++
		f.mu.Unlock()
		return id, claims.Expiry.Time(), nil
	}
	return FederatedIdentity{}, time.Time{}, fmt.Errorf("no federated identity for this issuer and subject")
}

// isFederated reports whether a request uses workload identity.
func isFederated(req map[string]string) bool {
	g := req["grant_type"]
	return g == grantJWTBearer || g == grantTokenExchange || req["client_assertion"] != "" || req["client_assertion_type"] != ""
}

// serveFederated answers a request that uses workload identity.
// Repeated parameters are refused by parseForm (RFC 6749 section 3.2), so
// every assertion is exactly one.
func serveFederated(s *Sim, w http.ResponseWriter, r *http.Request, req map[string]string) *tokenError {
	grantType := req["grant_type"]
	// Client authentication: an assertion, or none (for the two grants).
	var client *FederatedIdentity
	var bound time.Time
	if r.Header.Get("Authorization") != "" || req["client_secret"] != "" {
		return &tokenError{http.StatusUnauthorized, "invalid_client", "federated clients authenticate with client_assertion, not a secret"}
	}
	if req["client_assertion"] != "" || req["client_assertion_type"] != "" {
		if req["client_assertion_type"] != clientAssertionType {
			return &tokenError{http.StatusUnauthorized, "invalid_client", "client_assertion_type must be " + clientAssertionType}
		}
		id, exp, err := s.verifyJWT(req["client_assertion"])
		if err != nil {
			return &tokenError{http.StatusUnauthorized, "invalid_client", "client_assertion: " + err.Error()}
		}
		if req["client_id"] != "" && req["client_id"] != id.ClientID {
			return &tokenError{http.StatusUnauthorized, "invalid_client", "client_id does not match the client assertion"}
		}
		client = &id
		if id.BoundToAssertion {
			bound = exp
		}
	}
	answer := map[string]any{"token_type": "Bearer"}
	switch grantType {
	case "client_credentials":
		if client == nil {
			return &tokenError{http.StatusUnauthorized, "invalid_client", "client authentication required"}
		}
		if req["scope"] != "" {
			answer["scope"] = req["scope"]
		}
	case grantJWTBearer:
		if req["assertion"] == "" {
			return invalidRequest("missing parameter %q", "assertion")
		}
		id, exp, err := s.verifyJWT(req["assertion"])
		if err != nil {
			return &tokenError{http.StatusBadRequest, "invalid_grant", "assertion: " + err.Error()}
		}
		if client != nil && client.ClientID != id.ClientID || req["client_id"] != "" && req["client_id"] != id.ClientID {
			return &tokenError{http.StatusBadRequest, "invalid_grant", "the assertion is for another client"}
		}
		if id.BoundToAssertion && (bound.IsZero() || exp.Before(bound)) {
			bound = exp
		}
	case grantTokenExchange:
		if e := requireFields(req, "subject_token", "subject_token_type"); e != nil {
			return e
		}
		if t := req["subject_token_type"]; t != tokenTypeJWT && t != tokenTypeIDToken {
			return invalidRequest("subject_token_type %q is not supported (%s, %s)", truncateDesc(t), tokenTypeJWT, tokenTypeIDToken)
		}
		if t := req["requested_token_type"]; t != "" && t != tokenTypeAccess {
			return invalidRequest("requested_token_type %q is not supported (%s)", truncateDesc(t), tokenTypeAccess)
		}
		id, exp, err := s.verifyJWT(req["subject_token"])
		if err != nil {
			return &tokenError{http.StatusBadRequest, "invalid_grant", "subject_token: " + err.Error()}
		}
		if client != nil && client.ClientID != id.ClientID {
			return &tokenError{http.StatusBadRequest, "invalid_grant", "the subject token is for another client"}
		}
		if id.BoundToAssertion && (bound.IsZero() || exp.Before(bound)) {
			bound = exp
		}
		answer["issued_token_type"] = tokenTypeAccess
	default:
		return &tokenError{http.StatusBadRequest, "unsupported_grant_type", "federated clients may use client_credentials, " + grantJWTBearer + ", " + grantTokenExchange}
	}
	token, expiresIn := s.issueToken(idOAuth2)
	if !bound.IsZero() {
		if left := int64(bound.Sub(s.now()) / time.Second); left < expiresIn {
			expiresIn = max(left, 1)
		}
	}
	answer["access_token"], answer["expires_in"] = token, expiresIn
	body, _ := json.Marshal(answer)
	writeBody(w, http.StatusOK, jsonType, string(body))
	return nil
}

func truncateDesc(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return strings.ToValidUTF8(s, "?")
}
