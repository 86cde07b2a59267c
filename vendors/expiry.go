package vendors

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// MaxLifetime bounds a usable lifetime: an expires_in above it is treated as
// missing (docs/design.md, Token semantics).
const MaxLifetime = 365 * 24 * time.Hour

// parseExpiresIn reads a JSON expires_in (number or numeric string, rounded
// down to whole seconds). ok is false for anything unusable; present tells
// whether there was something to warn about.
func parseExpiresIn(raw json.RawMessage) (d time.Duration, ok bool, present bool) {
	s := strings.TrimSpace(string(raw))
	if s == "" || s == "null" {
		return 0, false, s == "null"
	}
	if strings.HasPrefix(s, `"`) {
		var str string
		if json.Unmarshal(raw, &str) != nil {
			return 0, false, true
		}
		s = strings.TrimSpace(str)
	}
	d, ok = secondsToDuration(s)
	return d, ok, true
}

// decimalSeconds is a JSON number without a sign: ParseFloat alone would
// also take "+5", "0x1p4", "Inf" and "1_0".
var decimalSeconds = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?$`)

// secondsToDuration parses a decimal number of seconds, > 0 and <= 1 year.
func secondsToDuration(s string) (time.Duration, bool) {
	if !decimalSeconds.MatchString(s) {
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, false
	}
	f = math.Floor(f)
	if f <= 0 || f > MaxLifetime.Seconds() {
		return 0, false
	}
	return time.Duration(f) * time.Second, true
}

// JWTExpiry returns the exp claim of a JWS compact token, without verifying
// it: the broker only needs to know when the vendor will stop accepting it.
func JWTExpiry(token string) (time.Time, bool) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 || len(parts[1]) > 8192 {
		return time.Time{}, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return time.Time{}, false
	}
	var claims struct {
		Exp json.Number `json:"exp"`
	}
	if json.Unmarshal(payload, &claims) != nil || claims.Exp == "" {
		return time.Time{}, false
	}
	f, err := claims.Exp.Float64()
	if err != nil || f <= 0 || f > 1e11 {
		return time.Time{}, false
	}
	return time.Unix(int64(f), 0), true
}

// applyExpiry sets tok.ExpiresAt by the chain of docs/design.md, Token semantics:
// expires_in, then the JWT exp claim, then defaultTTL.
func applyExpiry(tok *Token, expiresIn time.Duration, haveExpiresIn bool, defaultTTL time.Duration) error {
	if haveExpiresIn {
		tok.ExpiresAt = tok.IssuedAt.Add(expiresIn)
		tok.ExpirySource = "expires_in"
		return nil
	}
	if exp, ok := JWTExpiry(tok.AccessToken); ok {
		life := exp.Sub(tok.IssuedAt)
		if life > 0 && life <= MaxLifetime {
			tok.ExpiresAt = exp
			tok.ExpirySource = "jwt_exp"
			return nil
		}
		tok.Warnings = append(tok.Warnings, fmt.Sprintf("JWT exp %d is in the past or more than a year ahead; ignored", exp.Unix()))
	}
	if defaultTTL > 0 {
		tok.ExpiresAt = tok.IssuedAt.Add(defaultTTL)
		tok.ExpirySource = "default_ttl"
		return nil
	}
	return fmt.Errorf("the answer carries no usable lifetime and no default_ttl is configured")
}
