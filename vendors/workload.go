package vendors

import (
	"crypto"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// The broker's own identity toward vendors (docs/design.md, Vendors, the
// oauth2 vendor): grants whose credential is a JWT instead of a secret.
//
//   - RFC 7523 section 2.1, the JWT bearer grant: grant_type
//     urn:ietf:params:oauth:grant-type:jwt-bearer and "assertion", read
//     from the assertion_file setting (a projected service-account token)
//     or signed with the private_key credential (iss assertion_issuer,
//     default client_id; sub assertion_subject, default client_id; aud
//     assertion_audience, default the token URL).
//   - RFC 7523 section 2.2, client assertions read from a file
//     (client_assertion_file; clientauth.go): workload identity federation
//     as Microsoft Entra ID and Google STS accept it.
//   - RFC 8693, token exchange: grant_type
//     urn:ietf:params:oauth:grant-type:token-exchange, subject_token read
//     from subject_token_file, subject_token_type (default
//     urn:ietf:params:oauth:token-type:jwt), requested_token_type,
//     audience and resource.
//
// Files are read at every attempt, so a kubelet's renewal is used as soon
// as it lands. With expire_with_assertion: true the token is not kept past
// the exp of the assertion it was obtained with (for vendors whose tokens
// are only valid as long as the federated credential).
const (
	grantJWTBearer     = "urn:ietf:params:oauth:grant-type:jwt-bearer"
	grantTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	tokenTypeJWT       = "urn:ietf:params:oauth:token-type:jwt"
	// maxAssertionBytes bounds an assertion or subject token file.
	maxAssertionBytes = 64 << 10
)

// workloadGrant is a prepared JWT bearer or token exchange grant.
type workloadGrant struct {
	grant string
	// file holds the assertion (jwt-bearer) or the subject token.
	file string
	// signed: a jwt-bearer assertion signed with the private key.
	keyPEM        string
	keyOnce       sync.Once
	key           crypto.Signer
	keyErr        error
	iss, sub, aud string
	// subjectTokenType, requestedTokenType: token exchange.
	subjectTokenType, requestedTokenType string
}

// isWorkloadGrant reports whether grant is one of these grants.
func isWorkloadGrant(grant string) bool {
	return grant == grantJWTBearer || grant == grantTokenExchange
}

// newWorkloadGrant checks the settings and credentials of grant; target
// is the token URL (the default audience of a signed assertion).
func newWorkloadGrant(grant string, set Settings, in Input, used map[string]bool, target string) (*workloadGrant, error) {
	g := &workloadGrant{grant: grant}
	switch grant {
	case grantJWTBearer:
		file, key := set["assertion_file"], in.Credentials.Get("private_key")
		switch {
		case file != "" && key != "":
			return nil, &ConfigError{Setting: "assertion_file", Reason: "and the private_key credential both make the assertion; use one"}
		case file != "":
			g.file = file
		case key != "":
			if set["client_auth"] == authKeyJWT {
				return nil, &ConfigError{Setting: "client_auth", Reason: "private_key_jwt and a signed jwt-bearer assertion would use one key twice; use client_auth none or a client secret"}
			}
			used["private_key"] = true
			g.keyPEM = key
			id := in.Credentials.Get("client_id")
			g.iss, g.sub, g.aud = set.String("assertion_issuer", id), set.String("assertion_subject", id), set.String("assertion_audience", target)
		default:
			return nil, &ConfigError{Setting: "assertion_file", Reason: "the jwt-bearer grant needs assertion_file or the private_key credential"}
		}
	case grantTokenExchange:
		if g.file = set["subject_token_file"]; g.file == "" {
			return nil, &ConfigError{Setting: "subject_token_file", Reason: "is required for the token-exchange grant"}
		}
		g.subjectTokenType = set.String("subject_token_type", tokenTypeJWT)
		g.requestedTokenType = set["requested_token_type"]
		for name, v := range map[string]string{"subject_token_type": g.subjectTokenType, "requested_token_type": g.requestedTokenType} {
			if v != "" && !strings.HasPrefix(v, "urn:") {
				return nil, &ConfigError{Setting: name, Reason: "must be a token type URI (RFC 8693 section 3), e.g. " + tokenTypeJWT}
			}
		}
	}
	for _, name := range []string{"assertion_issuer", "assertion_subject", "assertion_audience"} {
		if set[name] != "" && g.keyPEM == "" {
			return nil, &ConfigError{Setting: name, Reason: "applies only to a jwt-bearer assertion signed with the private_key credential"}
		}
	}
	return g, nil
}

// body adds the grant's members for one attempt and returns the exp of the
// JWT it sends (zero when unknown) and the value to scrub from errors.
func (g *workloadGrant) body(f *fields, now time.Time) (exp time.Time, secretValue string, err error) {
	var tok string
	switch {
	case g.file != "":
		if tok, err = readTokenFile(g.file); err != nil {
			setting := "assertion_file"
			if g.grant == grantTokenExchange {
				setting = "subject_token_file"
			}
			return time.Time{}, "", &ConfigError{Setting: setting, Reason: err.Error()}
		}
	default:
		if tok, err = g.sign(now); err != nil {
			return time.Time{}, "", err
		}
	}
	switch g.grant {
	case grantJWTBearer:
		f.set("assertion", tok)
	case grantTokenExchange:
		f.set("subject_token", tok)
		f.set("subject_token_type", g.subjectTokenType)
		if g.requestedTokenType != "" {
			f.set("requested_token_type", g.requestedTokenType)
		}
	}
	exp, _ = JWTExpiry(tok)
	return exp, tok, nil
}

// sign makes an RFC 7523 section 3 assertion with the private key.
func (g *workloadGrant) sign(now time.Time) (string, error) {
	g.keyOnce.Do(func() { g.key, g.keyErr = parseSigningKey(g.keyPEM) })
	if g.keyErr != nil {
		return "", g.keyErr
	}
	jti := make([]byte, 16)
	_, _ = rand.Read(jti)
	return signJWS(g.key, map[string]any{
		"iss": g.iss, "sub": g.sub, "aud": g.aud,
		"jti": base64.RawURLEncoding.EncodeToString(jti),
		"iat": now.Unix(), "exp": now.Add(assertionLifetime).Unix(),
	})
}

// signJWS signs claims as a compact JWS: RS256 with an RSA key, ES256
// with a P-256 key (RFC 7518 section 3).
func signJWS(key crypto.Signer, claims map[string]any) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	if key == nil {
		return "", errors.New("signing the assertion: unsupported key")
	}
	jws, err := signCompact(key, nil, payload)
	if err != nil {
		return "", fmt.Errorf("signing the assertion: %w", err)
	}
	return jws, nil
}

// readTokenFile reads a token file (bounded, trimmed); the error never
// contains the content.
func readTokenFile(path string) (string, error) {
	file, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("cannot read %s: %v", path, errors.Unwrap(err))
	}
	defer file.Close()
	raw, err := io.ReadAll(io.LimitReader(file, maxAssertionBytes+1))
	if err != nil {
		return "", fmt.Errorf("cannot read %s", path)
	}
	if len(raw) > maxAssertionBytes {
		return "", fmt.Errorf("%s is larger than %d KiB", path, maxAssertionBytes>>10)
	}
	tok := strings.TrimSpace(string(raw))
	if tok == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return tok, nil
}

// capToAssertion keeps tok from outliving the assertion it came from.
func capToAssertion(tok *Token, exp time.Time) {
	if tok == nil || exp.IsZero() || !tok.ExpiresAt.After(exp) {
		return
	}
	tok.ExpiresAt = exp
	tok.ExpirySource = "assertion_exp"
}

// Bool reads a boolean setting ("true" or "false"; unset is false).
func (s Settings) Bool(key string) (bool, error) {
	switch s[key] {
	case "", "false":
		return false, nil
	case "true":
		return true, nil
	}
	return false, &ConfigError{Setting: key, Reason: "must be true or false"}
}
