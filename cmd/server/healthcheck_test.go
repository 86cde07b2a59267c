package main

import (
	"bytes"
	"context"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func noEnv(string) (string, bool) { return "", false }

func TestHealthcheck(t *testing.T) {
	t.Parallel()
	ready := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	}))
	t.Cleanup(ready.Close)
	draining := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
	}))
	t.Cleanup(draining.Close)
	readyAddr := strings.TrimPrefix(ready.URL, "http://")
	cfgFile := filepath.Join(t.TempDir(), "tokenbroker.yaml")
	if err := os.WriteFile(cfgFile, []byte("http_addr: "+readyAddr+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"ready by --addr", []string{"--addr", readyAddr}, ""},
		{"ready by the config's http_addr", []string{"--config", cfgFile}, ""},
		{"not ready", []string{"--addr", strings.TrimPrefix(draining.URL, "http://")}, "503"},
		{"nothing listening", []string{"--addr", "127.0.0.1:1", "--timeout", "1s"}, "connect"},
		{"bad address", []string{"--addr", "nowhere"}, "missing port"},
		{"extra argument", []string{"now"}, "unexpected arguments"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			err := realMain(context.Background(), append([]string{"healthcheck"}, tc.args...), &stdout, &stderr, noEnv, nil)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("healthcheck %v: %v", tc.args, err)
			case tc.wantErr == "" && stdout.String() != "ready\n":
				t.Errorf("stdout = %q, want /readyz's body", stdout.String())
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("healthcheck %v = %v, want an error containing %q", tc.args, err, tc.wantErr)
			}
		})
	}
}

func TestReadyzURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		addr string
		tls  bool
		want string
	}{
		{"0.0.0.0:8080", false, "http://127.0.0.1:8080/readyz"},
		{":8080", false, "http://127.0.0.1:8080/readyz"},
		{"[::]:8443", true, "https://127.0.0.1:8443/readyz"},
		{"10.0.0.7:8080", false, "http://10.0.0.7:8080/readyz"},
	}
	for _, tc := range tests {
		got, err := readyzURL(tc.addr, tc.tls)
		if err != nil || got != tc.want {
			t.Errorf("readyzURL(%q, %v) = %q, %v; want %q", tc.addr, tc.tls, got, err, tc.want)
		}
	}
}

func TestCheckConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.yaml", "profiles:\n  p:\n    vendor: smartdocumentor\n    credentials: {client_id: a, client_secret: b}\n")
	typo := write("typo.yaml", "grpc_adr: 127.0.0.1:9090\n")
	badCredential := write("cred.yaml", "profiles:\n  p:\n    vendor: smartdocumentor\n    credentials: {user: a}\n")
	tests := []struct {
		name    string
		path    string
		wantErr string
	}{
		{"valid", good, ""},
		{"unknown key", typo, "grpc_adr"},
		{"credential the vendor does not take", badCredential, "profiles.p.credentials.user"},
		{"no file", "", "needs --config"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var stdout bytes.Buffer
			args := []string{"--check-config"}
			if tc.path != "" {
				args = append(args, "--config", tc.path)
			}
			err := realMain(context.Background(), args, &stdout, &bytes.Buffer{}, noEnv, nil)
			if tc.wantErr == "" && err != nil {
				t.Fatalf("--check-config: %v", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("--check-config = %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestVersionFlag(t *testing.T) {
	t.Parallel()
	var stdout bytes.Buffer
	if err := realMain(context.Background(), []string{"--version"}, &stdout, &bytes.Buffer{}, noEnv, nil); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(stdout.String(), "tokenbroker ") || !strings.Contains(stdout.String(), "revision ") {
		t.Errorf("--version printed %q", stdout.String())
	}
}

// TestHealthcheckVerifiedAndAuthenticated is the chart's helm test: the
// server's certificate verified against a CA, then ListVendors called
// with an API key.
func TestHealthcheckVerifiedAndAuthenticated(t *testing.T) {
	t.Parallel()
	const key = "test-api-key"
	broker := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/readyz":
			_, _ = w.Write([]byte("ready\n"))
		case "/v1/vendors":
			switch r.Header.Get("Authorization") {
			case "Bearer " + key:
				_, _ = w.Write([]byte(`{"vendors":[{"id":"oauth2"},{"id":"saasu"}]}`))
			case "Bearer empty-list":
				_, _ = w.Write([]byte(`{"vendors":[]}`))
			default:
				http.Error(w, `{"code":16,"message":"unauthenticated"}`, http.StatusUnauthorized)
			}
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(broker.Close)
	addr := strings.TrimPrefix(broker.URL, "https://")
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ca := write("ca.crt", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: broker.Certificate().Raw}))
	goodKey := write("key", []byte(key+"\n"))
	wrongKey := write("wrong", []byte("not-the-key"))
	emptyList := write("empty-list", []byte("empty-list"))
	notPEM := write("not-pem", []byte("hello"))

	tests := []struct {
		name       string
		args       []string
		wantErr    string
		wantStdout string
	}{
		{"verified, no key", []string{"--addr", addr, "--ca-file", ca, "--server-name", "example.com"}, "", "ready\n"},
		{"verified and ListVendors", []string{"--addr", addr, "--ca-file", ca, "--server-name", "example.com", "--api-key-file", goodKey}, "", "ready\nListVendors: 2 vendors\n"},
		{"a name the certificate does not carry", []string{"--addr", addr, "--ca-file", ca, "--server-name", "tokenbroker.tokens.svc"}, "tokenbroker.tokens.svc", ""},
		{"a wrong key", []string{"--addr", addr, "--ca-file", ca, "--server-name", "example.com", "--api-key-file", wrongKey}, "ListVendors: GET https://" + addr + "/v1/vendors: 401", ""},
		{"no vendors", []string{"--addr", addr, "--ca-file", ca, "--server-name", "example.com", "--api-key-file", emptyList}, "want a list of vendors", ""},
		{"a CA file that is not PEM", []string{"--addr", addr, "--ca-file", notPEM}, "no PEM certificate", ""},
		{"a key file that is not there", []string{"--addr", addr, "--api-key-file", filepath.Join(dir, "nope")}, "--api-key-file", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			err := realMain(context.Background(), append([]string{"healthcheck"}, tc.args...), &stdout, &stderr, noEnv, nil)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("healthcheck %v: %v", tc.args, err)
			case tc.wantErr == "" && stdout.String() != tc.wantStdout:
				t.Errorf("stdout = %q, want %q", stdout.String(), tc.wantStdout)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("healthcheck %v = %v, want an error containing %q", tc.args, err, tc.wantErr)
			}
		})
	}
}
