package service

import (
	"errors"
	"testing"

	"github.com/tokenbroker/tokenbroker/secret"
	"github.com/tokenbroker/tokenbroker/vendors"
)

// TestInlineCallsNeverUseTheBrokersIdentity: the broker's own workload
// identity files (assertion_file, client_assertion_file,
// subject_token_file) set at vendor level are secret material like its
// TLS key: a profile uses them, an inline call never does (docs/design.md,
// Security model).
func TestInlineCallsNeverUseTheBrokersIdentity(t *testing.T) {
	t.Parallel()
	const path = "/var/run/secrets/tokenbroker/vendor-token"
	tests := []struct {
		setting, grant string
	}{
		{"client_assertion_file", "client_credentials"},
		{"assertion_file", "urn:ietf:params:oauth:grant-type:jwt-bearer"},
		{"subject_token_file", "urn:ietf:params:oauth:grant-type:token-exchange"},
	}
	for _, tc := range tests {
		t.Run(tc.setting, func(t *testing.T) {
			t.Parallel()
			if !vendors.IsSecretSetting(tc.setting) {
				t.Fatalf("%s is not a secret setting", tc.setting)
			}
			s, _ := newTestService(t, 3600, func(c *Config) {
				c.VendorSettings["oauth2"] = vendors.Settings{
					"token_url":  c.VendorSettings["smartdocumentor"]["token_url"],
					"grant_type": tc.grant,
					tc.setting:   path,
				}
				c.Profiles["op"] = Profile{Vendor: "oauth2", Credentials: secret.Map{"client_id": secret.New("id")}}
			})
			profile, err := s.resolve(s.snapshot.Load(), selector{profile: "op"})
			if err != nil {
				t.Fatalf("profile: %v", err)
			}
			if profile.settings[tc.setting] != path {
				t.Fatalf("a profile lost the vendor's %s", tc.setting)
			}
			// An inline call with its own secret: the identity file is not
			// among its settings; where the grant needs it, it is refused
			// for the missing setting, never served with the broker's.
			inline, err := s.resolve(s.snapshot.Load(), selector{vendor: "oauth2", credentials: map[string]string{"client_id": "id", "client_secret": "s"}})
			var ce *vendors.ConfigError
			switch {
			case err == nil:
				if _, ok := inline.settings[tc.setting]; ok {
					t.Fatalf("an inline call got the vendor's %s", tc.setting)
				}
			case !errors.As(err, &ce) || ce.Setting != tc.setting:
				t.Fatalf("inline call: %v, want success without %s or its ConfigError", err, tc.setting)
			}
		})
	}
}
