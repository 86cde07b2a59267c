package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "sd-secret")
	if err := os.WriteFile(secretFile, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := func(name string) (string, bool) {
		v, ok := map[string]string{"SD_SECRET": "from-env"}[name]
		return v, ok
	}
	tests := []struct {
		name    string
		yaml    string
		wantErr string
		check   func(t *testing.T, c *Config)
	}{
		{name: "empty file gives defaults", yaml: "", check: func(t *testing.T, c *Config) {
			if c.GRPCAddr != "127.0.0.1:9090" || c.HTTPAddr != "127.0.0.1:8080" {
				t.Errorf("defaults = %q %q", c.GRPCAddr, c.HTTPAddr)
			}
		}},
		{name: "secret references", yaml: `
profiles:
  a:
    vendor: smartdocumentor
    credentials: {client_id: id, client_secret: "${SD_SECRET}"}
  b:
    vendor: smartdocumentor
    credentials: {client_id: id, client_secret: "file:` + secretFile + `"}
`, check: func(t *testing.T, c *Config) {
			if got := c.Profiles["a"].Credentials["client_secret"].Reveal(); got != "from-env" {
				t.Errorf("env secret = %q", got)
			}
			if got := c.Profiles["b"].Credentials["client_secret"].Reveal(); got != "from-file" {
				t.Errorf("file secret = %q", got)
			}
		}},
		{name: "unknown top-level key", yaml: "grpc_adr: x\n", wantErr: "grpc_adr"},
		{name: "unknown nested key", yaml: "cache:\n  allow_plaintxt: true\n", wantErr: "allow_plaintxt"},
		{name: "missing env", yaml: "cache:\n  encryption_keys: [\"${NOPE}\"]\n", wantErr: "NOPE is not set"},
		{name: "missing file", yaml: "cache:\n  encryption_keys: [\"file:/nonexistent/k\"]\n", wantErr: "does not exist"},
		{name: "profile without vendor", yaml: "profiles:\n  p: {}\n", wantErr: "profiles.p.vendor"},
		{name: "client without credential", yaml: "clients:\n  c: {allow: [p]}\n", wantErr: "clients.c"},
		{name: "sentinel password without sentinel", yaml: "cache:\n  redis: {addrs: [127.0.0.1:6379], sentinel_password: x}\n", wantErr: "need cache.redis.master_name"},
		{name: "sentinel password from a missing env", yaml: "cache:\n  redis: {addrs: [127.0.0.1:26379], master_name: m, sentinel_password: \"${NOPE}\"}\n", wantErr: "cache.redis.sentinel_password: environment variable NOPE is not set"},
		{name: "access log default logs every hit", yaml: "", check: func(t *testing.T, c *Config) {
			if got := c.AccessLog.HitsOneIn(); got != 1 {
				t.Errorf("HitsOneIn() = %d, want 1 (all)", got)
			}
		}},
		{name: "access log sampled", yaml: "access_log: {cache_hits: sampled, sample_one_in: 100}\n", check: func(t *testing.T, c *Config) {
			if got := c.AccessLog.HitsOneIn(); got != 100 {
				t.Errorf("HitsOneIn() = %d, want 100", got)
			}
		}},
		{name: "access log none", yaml: "access_log: {cache_hits: none}\n", check: func(t *testing.T, c *Config) {
			if got := c.AccessLog.HitsOneIn(); got != 0 {
				t.Errorf("HitsOneIn() = %d, want 0 (none)", got)
			}
		}},
		{name: "access log unknown policy", yaml: "access_log: {cache_hits: some}\n", wantErr: `access_log.cache_hits: "some" is not one of all, sampled, none`},
		{name: "access log sampled without a rate", yaml: "access_log: {cache_hits: sampled}\n", wantErr: "access_log.sample_one_in: must be in 2..1000000 (one line per that many cache hits), got 0"},
		{name: "access log sampled one in one", yaml: "access_log: {cache_hits: sampled, sample_one_in: 1}\n", wantErr: "access_log.sample_one_in: must be in 2..1000000 (one line per that many cache hits), got 1"},
		{name: "access log rate without sampling", yaml: "access_log: {sample_one_in: 10}\n", wantErr: "access_log.sample_one_in needs access_log.cache_hits: sampled"},
		{name: "redis CA file without TLS", yaml: "cache:\n  redis: {addrs: [127.0.0.1:6379], tls_ca_file: /ca.pem}\n", wantErr: "cache.redis.tls_ca_file needs cache.redis.tls: true"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := Parse([]byte(tc.yaml), env)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want mention of %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}

func TestSettingsFlatten(t *testing.T) {
	t.Parallel()
	s := Settings{"scope": "a b", "timeout": "5s", "extra_params": map[string]any{"resource": "x", "n": 1}}
	got, err := s.Flatten("vendors.oauth2")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"scope": "a b", "timeout": "5s", "extra_params.resource": "x", "extra_params.n": "1"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if _, err := (Settings{"bad": []any{1}}).Flatten("vendors.x"); err == nil || !strings.Contains(err.Error(), "vendors.x.bad") {
		t.Errorf("list setting err = %v", err)
	}
}

// TestExtraParamsFromYAML: a nested settings map written in YAML (which
// decodes it as Settings, not map[string]any) flattens like one built in
// Go, in both YAML styles.
func TestExtraParamsFromYAML(t *testing.T) {
	t.Parallel()
	for _, y := range []string{
		"vendors:\n  oauth2:\n    extra_params: {resource: x, n: 1}\n",
		"vendors:\n  oauth2:\n    extra_params:\n      resource: x\n      n: 1\n",
	} {
		cfg, err := Parse([]byte(y), func(string) (string, bool) { return "", false })
		if err != nil {
			t.Fatalf("%q: %v", y, err)
		}
		got, err := cfg.Vendors["oauth2"].Flatten("vendors.oauth2")
		if err != nil {
			t.Fatalf("%q: %v", y, err)
		}
		if got["extra_params.resource"] != "x" || got["extra_params.n"] != "1" {
			t.Fatalf("%q: flattened to %v", y, got)
		}
	}
}

func TestAllowParamsForms(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, yaml string
		want       AllowParams
		wantErr    string
	}{
		{"list of names", "[scope, tenancy]", AllowParams{"scope": nil, "tenancy": nil}, ""},
		{"map of values", "{scope: [read, 'read write'], tenancy: null}", AllowParams{"scope": {"read", "read write"}, "tenancy": nil}, ""},
		{"empty value list", "{scope: []}", nil, "an empty list allows nothing"},
		{"scalar", "scope", nil, "a list of param names, or a map"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := Parse([]byte("profiles:\n  p:\n    vendor: oauth2\n    allow_params: "+tc.yaml+"\n"), nil)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Profiles["p"].AllowParams; !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("allow_params = %#v, want %#v", got, tc.want)
			}
		})
	}
}
