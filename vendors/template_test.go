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
