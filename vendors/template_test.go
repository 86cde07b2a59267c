package vendors

import (
	"errors"
	"testing"
)

func TestResolveURL(t *testing.T) {
	t.Parallel()
	const hostTmpl = "https://{tenancy}.{domain}/auth/Authorize/ServicePrincipalLogIn"
	const pathTmpl = "https://vantage-eu.abbyy.com/auth2/{tenant_id}/connect/token"
	settings := Settings{"domain": "hotdocsadvance.com"}
	tests := []struct {
		name    string
		tmpl    string
		params  map[string]string
		want    string
		wantErr string // field of the ArgumentError, or "config"
	}{
		{"host label", hostTmpl, map[string]string{"tenancy": "acme-01"}, "https://acme-01.hotdocsadvance.com/auth/Authorize/ServicePrincipalLogIn", ""},
		{"host with dots", hostTmpl, map[string]string{"tenancy": "a.b"}, "", "params.tenancy"},
		{"host with path", hostTmpl, map[string]string{"tenancy": "evil.com/x"}, "", "params.tenancy"},
		{"host upper case", hostTmpl, map[string]string{"tenancy": "ACME"}, "", "params.tenancy"},
		{"host empty", hostTmpl, map[string]string{"tenancy": ""}, "", "params.tenancy"},
		{"host missing", hostTmpl, nil, "", "params.tenancy"},
		{"host 64 characters", hostTmpl, map[string]string{"tenancy": "a123456789012345678901234567890123456789012345678901234567890123"}, "", "params.tenancy"},
		{"host with port", hostTmpl, map[string]string{"tenancy": "a:1"}, "", "params.tenancy"},
		{"path segment", pathTmpl, map[string]string{"tenant_id": "3fa85f64-5717"}, "https://vantage-eu.abbyy.com/auth2/3fa85f64-5717/connect/token", ""},
		{"path dot-dot", pathTmpl, map[string]string{"tenant_id": ".."}, "", "params.tenant_id"},
		{"path dot", pathTmpl, map[string]string{"tenant_id": "."}, "", "params.tenant_id"},
		{"path encoded slash", pathTmpl, map[string]string{"tenant_id": "%2f"}, "", "params.tenant_id"},
		{"path slash", pathTmpl, map[string]string{"tenant_id": "a/b"}, "", "params.tenant_id"},
		{"path query", pathTmpl, map[string]string{"tenant_id": "a?b=c"}, "", "params.tenant_id"},
		{"http on a public host", "http://idp.example/token", nil, "", "config"},
		{"http on loopback", "http://127.0.0.1:9/{tenant_id}", map[string]string{"tenant_id": "t"}, "http://127.0.0.1:9/t", ""},
		{"http on ::1", "http://[::1]:9/token", nil, "http://[::1]:9/token", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := ResolveURL(tc.tmpl, settings, tc.params, map[string]bool{})
			var ae *ArgumentError
			var ce *ConfigError
			switch {
			case tc.wantErr == "config":
				if !errors.As(err, &ce) {
					t.Fatalf("err = %v, want ConfigError", err)
				}
			case tc.wantErr != "":
				if !errors.As(err, &ae) || ae.Field != tc.wantErr {
					t.Fatalf("err = %v, want ArgumentError on %s", err, tc.wantErr)
				}
			default:
				if err != nil || got != tc.want {
					t.Fatalf("got %q, %v; want %q", got, err, tc.want)
				}
			}
		})
	}
}

// TestResolveURLSettings: trusted settings fill placeholders as they are,
// but must still fit their place.
func TestResolveURLSettings(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		tmpl     string
		settings Settings
		want     string
		wantErr  string // setting named by the ConfigError
	}{
		{"host name", "https://{host}/configapi/v2/oauth/token", Settings{"host": "acme.example.com"}, "https://acme.example.com/configapi/v2/oauth/token", ""},
		{"host with port", "https://{host}/t", Settings{"host": "acme.example.com:8443"}, "https://acme.example.com:8443/t", ""},
		{"host in a path", "http://127.0.0.1:1/brightpattern/{host}/t", Settings{"host": "demo.example.com"}, "http://127.0.0.1:1/brightpattern/demo.example.com/t", ""},
		{"host with a path", "https://{host}/t", Settings{"host": "evil.com/x"}, "", "host"},
		{"host with user info", "https://{host}/t", Settings{"host": "a@evil.com"}, "", "host"},
		{"path setting with a slash", "http://127.0.0.1:1/{host}/t", Settings{"host": "a/b"}, "", "host"},
		{"path setting dot-dot", "http://127.0.0.1:1/{host}/t", Settings{"host": ".."}, "", "host"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := ResolveURL(tc.tmpl, tc.settings, nil, map[string]bool{})
			var ce *ConfigError
			switch {
			case tc.wantErr != "":
				if !errors.As(err, &ce) || ce.Setting != tc.wantErr {
					t.Fatalf("err = %v, want a ConfigError on %s", err, tc.wantErr)
				}
			case err != nil || got != tc.want:
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestResolveTarget(t *testing.T) {
	t.Parallel()
	info := Info{ID: "v", Params: []string{"region", "tenant_id"}}
	tests := []struct {
		name    string
		key     string
		set     Settings
		params  map[string]string
		want    string
		wantErr string
	}{
		{"param placeholder", "token_url", Settings{"token_url": "https://{region}.example.com/t"}, map[string]string{"region": "eu"}, "https://eu.example.com/t", ""},
		{"unknown placeholder is the operator's mistake", "token_url", Settings{"token_url": "https://{tenancy}.example.com/t"}, map[string]string{"tenancy": "x"}, "", "token_url"},
		{"missing template", "tenant_token_url", Settings{}, nil, "", "tenant_token_url"},
		{"http names the setting it came from", "tenant_token_url", Settings{"tenant_token_url": "http://{tenant_id}.example.com/t"}, map[string]string{"tenant_id": "x"}, "", "tenant_token_url"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := resolveTarget(info, tc.key, tc.set, tc.params, map[string]bool{})
			var ce *ConfigError
			switch {
			case tc.wantErr != "":
				if !errors.As(err, &ce) || ce.Setting != tc.wantErr {
					t.Fatalf("err = %v, want a ConfigError on %s", err, tc.wantErr)
				}
			case err != nil || got != tc.want:
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
