package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"strings"
)

// maxAPIKeyLen bounds a presented key; keys are 32 random bytes in hex or
// base64, far below it.
const maxAPIKeyLen = 512

// errors that say what to fix; they never contain the key.
var (
	errNotBearer       = errors.New(`the authorization value must be "Bearer <api key or JWT>"`)
	errBadBearerSyntax = errors.New("the API key is not an RFC 6750 bearer token (letters, digits and -._~+/ then optional =)")
	errUnknownKey      = errors.New("the API key is not a configured client's key")
)

// ParseBearer returns the credential of an "authorization" value of the
// form "Bearer <b64token>" (RFC 6750 section 2.1; the scheme is
// case-insensitive, RFC 9110 section 11.1).
func ParseBearer(value string) (string, error) {
	key, err := bearerCredential(value)
	if err != nil {
		return "", err
	}
	if err := checkAPIKey(key); err != nil {
		return "", err
	}
	return key, nil
}

// bearerCredential returns what follows "Bearer " (the scheme is
// case-insensitive), not yet checked: an API key or a JWT.
func bearerCredential(value string) (string, error) {
	scheme, rest, ok := strings.Cut(value, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", errNotBearer
	}
	return strings.TrimLeft(rest, " "), nil
}

// checkAPIKey checks a bearer credential's syntax as an API key.
func checkAPIKey(key string) error {
	if key == "" || len(key) > maxAPIKeyLen || !isB64Token(key) {
		return errBadBearerSyntax
	}
	return nil
}

// isB64Token reports whether s is RFC 6750's b64token:
// 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
func isB64Token(s string) bool {
	i := 0
	for ; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~+/", c) >= 0 {
			continue
		}
		break
	}
	if i == 0 {
		return false
	}
	for ; i < len(s); i++ {
		if s[i] != '=' {
			return false
		}
	}
	return true
}

// clientForKey returns the client one of whose configured digests is the
// key's SHA-256, or nil. It compares the digest with every digest of every
// client in constant time and never stops early, so the time taken says
// nothing about which client, if any, matched or how much of a digest did
// (only the number of configured digests, which is no secret).
func (p *Policy) clientForKey(key string) *client {
	digest := sha256.Sum256([]byte(key))
	match := -1
	for i, c := range p.clients {
		for _, d := range c.keyDigests {
			eq := subtle.ConstantTimeCompare(digest[:], d[:])
			match = subtle.ConstantTimeSelect(eq, i, match)
		}
	}
	if match < 0 {
		return nil
	}
	return p.clients[match]
}
