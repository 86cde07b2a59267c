package vendors

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/secret"
)

// unsignedJWT is a JWS compact token with the given exp claim.
func unsignedJWT(exp int64) string {
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." +
		enc.EncodeToString([]byte(fmt.Sprintf(`{"sub":"x","exp":%d}`, exp))) + ".c2lnbmF0dXJl"
}

// TestExpiryChain: expires_in (number or numeric string), then the JWT exp
// claim, then default_ttl; unusable values are warned about and skipped.
func TestExpiryChain(t *testing.T) {
	t.Parallel()
	now := time.Now()
	jwt2h := unsignedJWT(now.Add(2 * time.Hour).Unix())
	tests := []struct {
		name        string
		ctype       string
		body        string
		defaultTTL  string
		wantSource  string
		wantLife    time.Duration // for expires_in and default_ttl
		wantJWT     bool          // lifetime ends at the JWT's exp
		wantWarning string
		wantErr     bool
	}{
		{name: "number", body: `{"access_token":"t","expires_in":3600}`, wantSource: "expires_in", wantLife: time.Hour},
		{name: "numeric string", body: `{"access_token":"t","expires_in":"3599"}`, wantSource: "expires_in", wantLife: 3599 * time.Second},
		{name: "fraction rounds down", body: `{"access_token":"t","expires_in":59.9}`, wantSource: "expires_in", wantLife: 59 * time.Second},
		{name: "exponent", body: `{"access_token":"t","expires_in":3.6e3}`, wantSource: "expires_in", wantLife: time.Hour},
		{name: "exactly one year", body: `{"access_token":"t","expires_in":31536000}`, wantSource: "expires_in", wantLife: MaxLifetime},
		{name: "form answer", ctype: "application/x-www-form-urlencoded", body: `access_token=t&expires_in=60`, wantSource: "expires_in", wantLife: time.Minute},
		{name: "XML answer", ctype: "application/xml", body: `<r><access_token>t</access_token><expires_in> 120 </expires_in></r>`, wantSource: "expires_in", wantLife: 2 * time.Minute},
		{name: "missing, JWT exp", body: `{"access_token":"` + jwt2h + `"}`, wantSource: "jwt_exp", wantJWT: true},
		{name: "missing, default_ttl", body: `{"access_token":"t"}`, defaultTTL: "5m", wantSource: "default_ttl", wantLife: 5 * time.Minute},
		{name: "zero, JWT exp", body: `{"access_token":"` + jwt2h + `","expires_in":0}`, wantSource: "jwt_exp", wantJWT: true, wantWarning: "unusable expires_in 0"},
		{name: "negative", body: `{"access_token":"t","expires_in":-5}`, defaultTTL: "5m", wantSource: "default_ttl", wantLife: 5 * time.Minute, wantWarning: "unusable expires_in -5"},
		{name: "null", body: `{"access_token":"t","expires_in":null}`, defaultTTL: "5m", wantSource: "default_ttl", wantLife: 5 * time.Minute, wantWarning: "unusable expires_in null"},
		{name: "false", body: `{"access_token":"t","expires_in":false}`, defaultTTL: "5m", wantSource: "default_ttl", wantLife: 5 * time.Minute, wantWarning: "unusable expires_in false"},
		{name: "object", body: `{"access_token":"t","expires_in":{}}`, defaultTTL: "5m", wantSource: "default_ttl", wantLife: 5 * time.Minute, wantWarning: "unusable expires_in {}"},
		{name: "soon", body: `{"access_token":"t","expires_in":"soon"}`, defaultTTL: "5m", wantSource: "default_ttl", wantLife: 5 * time.Minute, wantWarning: `unusable expires_in "soon"`},
		{name: "more than a year", body: `{"access_token":"t","expires_in":31536001}`, defaultTTL: "5m", wantSource: "default_ttl", wantLife: 5 * time.Minute, wantWarning: "unusable expires_in 31536001"},
		{name: "signed string", body: `{"access_token":"t","expires_in":"+60"}`, defaultTTL: "5m", wantSource: "default_ttl", wantLife: 5 * time.Minute, wantWarning: "unusable expires_in"},
		{name: "hex string", body: `{"access_token":"t","expires_in":"0x1p4"}`, defaultTTL: "5m", wantSource: "default_ttl", wantLife: 5 * time.Minute, wantWarning: "unusable expires_in"},
		{name: "empty string", body: `{"access_token":"t","expires_in":""}`, defaultTTL: "5m", wantSource: "default_ttl", wantLife: 5 * time.Minute, wantWarning: "unusable expires_in"},
		{name: "XML junk", ctype: "text/xml", body: `<r><access_token>t</access_token><expires_in>soon</expires_in></r>`, defaultTTL: "5m", wantSource: "default_ttl", wantLife: 5 * time.Minute, wantWarning: "unusable expires_in"},
		{name: "JWT exp in the past", body: `{"access_token":"` + unsignedJWT(now.Add(-time.Minute).Unix()) + `"}`, defaultTTL: "5m", wantSource: "default_ttl", wantLife: 5 * time.Minute, wantWarning: "in the past or more than a year ahead"},
		{name: "JWT exp beyond a year", body: `{"access_token":"` + unsignedJWT(now.Add(400*24*time.Hour).Unix()) + `"}`, defaultTTL: "5m", wantSource: "default_ttl", wantLife: 5 * time.Minute, wantWarning: "in the past or more than a year ahead"},
		{name: "no lifetime at all", body: `{"access_token":"t"}`, wantErr: true},
		{name: "bad expires_in and nothing else", body: `{"access_token":"t","expires_in":"soon"}`, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctype := tc.ctype
			if ctype == "" {
				ctype = "application/json"
			}
			_, base := serve(t, cannedAnswer{status: 200, ctype: ctype, body: tc.body})
			set := Settings{"token_url": base + "/token"}
			if tc.defaultTTL != "" {
				set["default_ttl"] = tc.defaultTTL
			}
			call, err := OAuth2().ResolveCall(Input{Settings: set, Credentials: secret.FromStrings(map[string]string{"client_id": "a", "client_secret": "b"})})
			if err != nil {
				t.Fatalf("ResolveCall: %v", err)
			}
			tok, err := call.Fetch(context.Background(), "")
			if tc.wantErr {
				var ve *Error
				if !errors.As(err, &ve) || ve.Kind != KindBadResponse {
					t.Fatalf("err = %v, want bad_response", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			if tok.ExpirySource != tc.wantSource {
				t.Errorf("source %q, want %q", tok.ExpirySource, tc.wantSource)
			}
			if tc.wantJWT {
				if exp, _ := JWTExpiry(tok.AccessToken); !tok.ExpiresAt.Equal(exp) {
					t.Errorf("ExpiresAt %v, want the JWT exp %v", tok.ExpiresAt, exp)
				}
			} else if life := tok.ExpiresAt.Sub(tok.IssuedAt); life != tc.wantLife {
				t.Errorf("lifetime %v, want %v", life, tc.wantLife)
			}
			warnings := strings.Join(tok.Warnings, "; ")
			if (tc.wantWarning == "") != (warnings == "") || !strings.Contains(warnings, tc.wantWarning) {
				t.Errorf("warnings %q, want %q", warnings, tc.wantWarning)
			}
		})
	}
}

// TestExpiryCountsFromTheRequest: expires_at is the time the request was
// sent plus expires_in, however long the answer took.
func TestExpiryCountsFromTheRequest(t *testing.T) {
	t.Parallel()
	h, base := serve(t, cannedAnswer{status: 200, ctype: "application/json", body: `{"access_token":"t","expires_in":60}`, delay: 300 * time.Millisecond})
	call, err := OAuth2().ResolveCall(Input{Settings: Settings{"token_url": base}, Credentials: secret.FromStrings(map[string]string{"client_id": "a", "client_secret": "b"})})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := call.Fetch(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	received := h.seen()[0].at
	if tok.IssuedAt.After(received) {
		t.Fatalf("IssuedAt %v is after the vendor received the request (%v)", tok.IssuedAt, received)
	}
	if got := tok.ExpiresAt.Sub(tok.IssuedAt); got != time.Minute {
		t.Fatalf("lifetime %v, want 1m from the request", got)
	}
	if left := time.Until(tok.ExpiresAt); left > time.Minute-250*time.Millisecond {
		t.Fatalf("%v left after a 300ms answer: lifetime counted from the answer", left)
	}
}

func TestJWTExpiry(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		token string
		want  int64
		ok    bool
	}{
		{"valid", unsignedJWT(1900000000), 1900000000, true},
		{"two parts", "a.b", 0, false},
		{"not base64", "a.!!!.c", 0, false},
		{"no exp", "eyJhbGciOiJIUzI1NiJ9." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"x"}`)) + ".c2ln", 0, false},
		{"exp string", "eyJhbGciOiJIUzI1NiJ9." + base64.RawURLEncoding.EncodeToString([]byte(`{"exp":"soon"}`)) + ".c2ln", 0, false},
		{"opaque", "your access token", 0, false},
		{"Bright Pattern's example", "eyJhbGciOiJSUzI1NiI5q9Jgt...6HznsvPWy7UP3MINA", 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			exp, ok := JWTExpiry(tc.token)
			if ok != tc.ok || (ok && exp.Unix() != tc.want) {
				t.Fatalf("JWTExpiry = %v, %v; want %d, %v", exp, ok, tc.want, tc.ok)
			}
		})
	}
}
