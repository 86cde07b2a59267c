package app

import (
	"strings"
	"testing"

	"github.com/tokenbroker/tokenbroker/vendors"
)

// TestProfileNamesAreTheVendors: a profile's credential and param names
// are checked by the vendor's own check, field path included.
func TestProfileNamesAreTheVendors(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, profile, wantErr string }{
		{"credential", "{vendor: smartdocumentor, credentials: {client_id: a, client_secert: b}}",
			"profiles.p.credentials.client_secert: is not a credential of vendor smartdocumentor"},
		{"param", "{vendor: smartdocumentor, credentials: {client_id: a}, params: {regoin: eu}}",
			"profiles.p.params.regoin: is not a parameter of vendor smartdocumentor"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := ServiceConfig(cacheConfig(t, "profiles:\n  p: "+tc.profile+"\n"), vendors.Default())
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// TestProfileAllowParams: allow_params names the vendor's params, never
// one the profile fixes, and a param that chooses where the request goes
// only with the values it may take.
func TestProfileAllowParams(t *testing.T) {
	t.Parallel()
	const hotdocs = "{vendor: hotdocs_advance, credentials: {client_name: c, principal_name: p, principal_password: x}"
	const oauth = "{vendor: oauth2, settings: {token_url: 'https://idp.example/token'}, credentials: {client_id: a, client_secret: b}"
	const oauthTemplated = "{vendor: oauth2, settings: {token_url: 'https://idp.example/{scope}/token'}, credentials: {client_id: a, client_secret: b}"
	tests := []struct{ name, profile, wantErr string }{
		{"scope, any value", oauth + ", allow_params: [scope]}", ""},
		{"scope, listed values", oauth + ", allow_params: {scope: [read, 'read write']}}", ""},
		{"scope, null is any value", oauth + ", allow_params: {scope: null}}", ""},
		{"not a param", oauth + ", allow_params: [audience]}", "profiles.p.allow_params.audience: not a parameter of vendor oauth2"},
		{"fixed by the profile", oauth + ", params: {scope: read}, allow_params: [scope]}", "profiles.p.allow_params.scope: the profile fixes this param"},
		{"tenancy, any value", hotdocs + ", allow_params: [tenancy]}", "profiles.p.allow_params.tenancy: this param chooses where the vendor request"},
		{"tenancy, listed", hotdocs + ", allow_params: {tenancy: [acme, acme-test]}}", ""},
		{"a param in the operator's URL, any value", oauthTemplated + ", allow_params: [scope]}", "profiles.p.allow_params.scope: this param chooses where"},
		{"abbyy region, any value", "{vendor: abbyy_vantage, credentials: {client_id: a, client_secret: b, username: u, password: p}, allow_params: [region]}", "allow_params.region: this param chooses where"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := ServiceConfig(cacheConfig(t, "profiles:\n  p: "+tc.profile+"\n"), vendors.Default())
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// TestCheckExposure: without caller authentication a server listens only
// on loopback, unless --insecure-allow-unauthenticated.
func TestCheckExposure(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		yaml     string
		insecure bool
		wantErr  string
	}{
		{"loopback", "grpc_addr: 127.0.0.1:1\nhttp_addr: '[::1]:2'\n", false, ""},
		{"localhost", "grpc_addr: localhost:1\nhttp_addr: 127.0.0.1:2\n", false, ""},
		{"every interface", "grpc_addr: ':1'\n", false, "grpc_addr :1 is not a loopback address and no callers are configured"},
		{"a host name", "http_addr: broker.internal:2\n", false, "http_addr broker.internal:2 is not a loopback address"},
		{"every interface, accepted", "grpc_addr: 0.0.0.0:1\n", true, ""},
		{"every interface with clients", "grpc_addr: 0.0.0.0:1\nclients: {c: {api_key_sha256: '00'}}\n", false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := checkExposure(cacheConfig(t, tc.yaml), tc.insecure)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// TestCheckAllowEntries: each allow entry names a configured profile, a
// known vendor or admin:status.
func TestCheckAllowEntries(t *testing.T) {
	t.Parallel()
	const profile = "profiles: {p: {vendor: smartdocumentor}}\n"
	tests := []struct{ name, allow, wantErr string }{
		{"profile", "[p]", ""},
		{"vendor", "['vendor:oauth2']", ""},
		{"status", "['admin:status']", ""},
		{"unknown profile", "[p, q]", `clients.c.allow[1]: no profile "q" is configured`},
		{"unknown vendor", "['vendor:nope']", `clients.c.allow[0]: "vendor:nope" names no known vendor`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := cacheConfig(t, profile+"clients: {c: {api_key_sha256: '00', allow: "+tc.allow+"}}\n")
			err := checkAllowEntries(cfg, vendors.Default())
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// TestVendorSettings: vendors.<id> names a known vendor and only its
// settings, with valid values.
func TestVendorSettings(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, yaml, wantErr string }{
		{"known", "vendors: {smartdocumentor: {timeout: 5s}}\n", ""},
		{"unknown vendor", "vendors: {nope: {}}\n", "vendors.nope: unknown vendor id"},
		{"unknown setting", "vendors: {smartdocumentor: {tokne_url: x}}\n", "vendors.smartdocumentor.tokne_url: not a setting of vendor smartdocumentor"},
		{"bad duration", "vendors: {smartdocumentor: {timeout: soon}}\n", "vendors.smartdocumentor"},
		{"plain http", "vendors: {smartdocumentor: {token_url: 'http://idp.example/token'}}\n", "vendors.smartdocumentor.token_url"},
		{"unknown profile vendor", "profiles: {p: {vendor: nope}}\n", `profiles.p.vendor: unknown vendor id "nope"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := ServiceConfig(cacheConfig(t, tc.yaml), vendors.Default())
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}
