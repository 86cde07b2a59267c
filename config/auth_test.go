package config

import (
	"strings"
	"testing"
)

func TestAuthSection(t *testing.T) {
	t.Parallel()
	const tlsFiles = "tls: {cert_file: c, key_file: k}\n"
	tests := []struct {
		name    string
		yaml    string
		wantErr string
	}{
		{"kubernetes issuer", `
auth:
  jwt_issuers:
    - issuer: https://kubernetes.default.svc.cluster.local
      audiences: [tokenbroker]
      jwks_file: /etc/tokenbroker/cluster-jwks.json
      max_token_lifetime: 24h
clients:
  billing: {jwt_subject: "system:serviceaccount:billing:*", allow: [p]}
  reporting: {spiffe_id: spiffe://acme.internal/ns/data/sa/reporting, allow: [p]}
`, ""},
		{"url with CA", "auth: {jwt_issuers: [{issuer: https://i, audiences: [a], jwks_url: https://i/jwks, jwks_ca_file: ca.pem}]}", ""},
		{"discovery", "auth: {jwt_issuers: [{issuer: https://i, audiences: [a], discovery: true}]}", ""},
		{"spiffe bundle", tlsFiles + "auth: {spiffe_bundles: [{trust_domain: acme.internal, bundle_file: b.json}]}", ""},
		{"no issuer", "auth: {jwt_issuers: [{audiences: [a], discovery: true}]}", "auth.jwt_issuers[0].issuer"},
		{"no audiences", "auth: {jwt_issuers: [{issuer: https://i, discovery: true}]}", "auth.jwt_issuers[0].audiences"},
		{"no key source", "auth: {jwt_issuers: [{issuer: https://i, audiences: [a]}]}", "exactly one of jwks_file, jwks_url and discovery"},
		{"two key sources", "auth: {jwt_issuers: [{issuer: https://i, audiences: [a], jwks_file: f, discovery: true}]}", "exactly one of"},
		{"CA with a file", "auth: {jwt_issuers: [{issuer: https://i, audiences: [a], jwks_file: f, jwks_ca_file: ca}]}", "jwks_ca_file"},
		{"issuer twice", "auth: {jwt_issuers: [{issuer: https://i, audiences: [a], discovery: true}, {issuer: https://i, audiences: [a], discovery: true}]}", "auth.jwt_issuers[1].issuer"},
		{"bad lifetime", "auth: {jwt_issuers: [{issuer: https://i, audiences: [a], discovery: true, max_token_lifetime: forever}]}", "max_token_lifetime"},
		{"unknown key", "auth: {jwt_issuers: [{issuer: https://i, audiences: [a], discovery: true, audience: x}]}", "audience"},
		{"bundle without TLS", "auth: {spiffe_bundles: [{trust_domain: acme.internal, bundle_file: b}]}", "auth.spiffe_bundles needs tls.cert_file"},
		{"bundle without file", tlsFiles + "auth: {spiffe_bundles: [{trust_domain: acme.internal}]}", "auth.spiffe_bundles[0]"},
		{"trust domain twice", tlsFiles + "auth: {spiffe_bundles: [{trust_domain: t, bundle_file: a}, {trust_domain: t, bundle_file: b}]}", "auth.spiffe_bundles[1].trust_domain"},
		{"client with no credential", "clients: {a: {jwt_issuer: https://i, allow: [p]}}", "set api_key_sha256, cert_subject, jwt_subject or spiffe_id"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse([]byte(tc.yaml), func(string) (string, bool) { return "", false })
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.wantErr)
			}
		})
	}
}
