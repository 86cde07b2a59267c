package vendorsim

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/testkit/fakeissuer"
)

// TestFederationIsStrict: the workload identity flows refuse what their
// RFCs refuse, with the RFC's error codes.
func TestFederationIsStrict(t *testing.T) {
	t.Parallel()
	sim, srv := newTestServer(t)
	is := fakeissuer.Start()
	t.Cleanup(is.Close)
	if err := sim.TrustIssuer(is.URL(), is.JWKS()); err != nil {
		t.Fatal(err)
	}
	sim.AddFederatedIdentity(FederatedIdentity{ClientID: "fed", Issuer: is.URL(), Subject: "system:serviceaccount:billing:broker", Audience: "sts", BoundToAssertion: true})
	now := time.Now()
	good := is.Sign(is.Kubernetes("billing", "broker", "sts", now, 10*time.Minute))
	other := is.Sign(is.Kubernetes("billing", "intruder", "sts", now, time.Hour))
	form := func(kv ...string) string {
		v := url.Values{}
		for i := 0; i < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v.Encode()
	}
	tests := []struct {
		name   string
		body   string
		basic  bool
		status int
		code   string
	}{
		{"jwt-bearer", form("grant_type", grantJWTBearer, "assertion", good), false, 200, ""},
		{"jwt-bearer without assertion", form("grant_type", grantJWTBearer), false, 400, "invalid_request"},
		{"jwt-bearer for an unknown subject", form("grant_type", grantJWTBearer, "assertion", other), false, 400, "invalid_grant"},
		{"jwt-bearer for another client_id", form("grant_type", grantJWTBearer, "assertion", good, "client_id", "someone-else"), false, 400, "invalid_grant"},
		{"jwt-bearer with a client secret", form("grant_type", grantJWTBearer, "assertion", good, "client_id", "fed", "client_secret", "x"), false, 401, "invalid_client"},
		{"jwt-bearer with Basic", form("grant_type", grantJWTBearer, "assertion", good), true, 401, "invalid_client"},
		{"client assertion", form("grant_type", "client_credentials", "client_assertion_type", clientAssertionType, "client_assertion", good), false, 200, ""},
		{"client assertion of the wrong type", form("grant_type", "client_credentials", "client_assertion_type", "urn:x", "client_assertion", good), false, 401, "invalid_client"},
		{"client assertion, tampered", form("grant_type", "client_credentials", "client_assertion_type", clientAssertionType, "client_assertion", good[:len(good)-4]+"AAAA"), false, 401, "invalid_client"},
		{"token exchange", form("grant_type", grantTokenExchange, "subject_token", good, "subject_token_type", tokenTypeJWT), false, 200, ""},
		{"token exchange without a type", form("grant_type", grantTokenExchange, "subject_token", good), false, 400, "invalid_request"},
		{"token exchange of a SAML token", form("grant_type", grantTokenExchange, "subject_token", good, "subject_token_type", "urn:ietf:params:oauth:token-type:saml2"), false, 400, "invalid_request"},
		{"token exchange for a refresh token", form("grant_type", grantTokenExchange, "subject_token", good, "subject_token_type", tokenTypeJWT, "requested_token_type", "urn:ietf:params:oauth:token-type:refresh_token"), false, 400, "invalid_request"},
		{"password grant with an assertion", form("grant_type", "password", "username", "u", "password", "p", "client_assertion_type", clientAssertionType, "client_assertion", good), false, 400, "unsupported_grant_type"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := call{path: "/oauth2/token", contentType: formType, body: tc.body}
			if tc.basic {
				c.header = map[string]string{"Authorization": "Basic ZmVkOng="}
			}
			resp, body := c.do(t, srv)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			var answer map[string]any
			if err := json.Unmarshal([]byte(body), &answer); err != nil {
				t.Fatal(err)
			}
			if tc.code != "" {
				if answer["error"] != tc.code {
					t.Fatalf("error %v, want %s", answer["error"], tc.code)
				}
				if strings.Contains(body, good[len(good)-20:]) {
					t.Fatal("the error quotes the assertion")
				}
				return
			}
			// Bound to the assertion: at most its 10 minutes.
			if exp, _ := answer["expires_in"].(float64); exp <= 0 || exp > 600 {
				t.Fatalf("expires_in %v, want at most the assertion's 600 s", answer["expires_in"])
			}
			if strings.Contains(tc.body, grantTokenExchange) && answer["issued_token_type"] != tokenTypeAccess {
				t.Fatalf("token exchange answer without issued_token_type: %s", body)
			}
		})
	}
}
