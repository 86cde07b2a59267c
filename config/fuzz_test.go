package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// envMarker is what every environment variable holds in these targets:
// once resolved it is a secret, and must never show in an error or in any
// rendering of the config.
const envMarker = "EnvS3cretMarker-7Q"

// fileMarker is the content of the one secret file the targets may read.
const fileMarker = "FileS3cretMarker-9Z"

func markerEnv(name string) (string, bool) {
	if strings.HasPrefix(name, "UNSET") {
		return "", false
	}
	return envMarker, true
}

// FuzzResolveSecret resolves arbitrary secret references (file: references
// are FuzzResolveSecretFile's). Properties: "${NAME}" with a set variable
// is its value; an unset one is an error naming the variable; any other
// value is itself; no error carries the variable's value.
func FuzzResolveSecret(f *testing.F) {
	for _, s := range []string{"${REDIS_PASSWORD}", "${UNSET_X}", "${1BAD}", "$REDIS", "${A}${B}", "literal", "", "${}", "file:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, value string) {
		if strings.HasPrefix(value, "file:") {
			return
		}
		got, err := ResolveSecret(value, markerEnv)
		if err != nil {
			if strings.Contains(err.Error(), envMarker) {
				t.Fatalf("error %q carries the variable's value", err)
			}
			if m := envRef.FindStringSubmatch(value); m == nil || !strings.Contains(err.Error(), m[1]) {
				t.Fatalf("ResolveSecret(%q): error %q does not name a variable", value, err)
			}
			return
		}
		if m := envRef.FindStringSubmatch(value); m != nil {
			if got.Reveal() != envMarker {
				t.Fatalf("ResolveSecret(%q) = %q, want the variable", value, got.Reveal())
			}
		} else if got.Reveal() != value {
			t.Fatalf("literal %q resolved to %q", value, got.Reveal())
		}
		if s, want := fmt.Sprintf("%v|%+v|%#v|%s|%q", got, got, got, got, got), strings.Repeat("[REDACTED]|", 4)+"[REDACTED]"; s != want {
			t.Fatalf("a formatted secret shows its value: %s", s)
		}
	})
}

// FuzzResolveSecretFile resolves "file:" references to files of arbitrary
// content. Properties: content up to 64 KiB is the secret, with trailing
// CR/LF removed; larger content is an error that does not carry it.
func FuzzResolveSecretFile(f *testing.F) {
	f.Add([]byte("s3cret\n"))
	f.Add([]byte("s3cret\r\n\r\n"))
	f.Add([]byte("multi\nline\nsecret"))
	f.Add([]byte(""))
	f.Add(bytes.Repeat([]byte("k"), maxSecretFile+1))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, content []byte) {
		path := filepath.Join(dir, "secret")
		if err := os.WriteFile(path, content, 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := ResolveSecret("file:"+path, markerEnv)
		if len(content) > maxSecretFile {
			if err == nil {
				t.Fatalf("a %d-byte file was accepted", len(content))
			}
			if len(content) >= 8 && strings.Contains(err.Error(), string(content[:8])) && !strings.Contains(path, string(content[:8])) {
				t.Fatalf("error %q carries the file's content", err)
			}
			return
		}
		if err != nil {
			t.Fatalf("file of %d bytes: %v", len(content), err)
		}
		if want := strings.TrimRight(string(content), "\r\n"); got.Reveal() != want {
			t.Fatalf("file secret = %q, want %q", got.Reveal(), want)
		}
	})
}

// designConfig is the example of docs/design.md, Configuration, with secret references.
const designConfig = `
grpc_addr: 127.0.0.1:9090
http_addr: 127.0.0.1:8080
cache:
  redis:
    addrs: [127.0.0.1:6379]
    master_name: ""
    username: ""
    password: ${REDIS_PASSWORD}
    tls: false
  encryption_keys: [${TOKENBROKER_CACHE_KEY}]
  allow_plaintext: false
vendors:
  smartdocumentor:
    token_url: https://cloud.smartdocumentor.net/connect/token
  hotdocs_advance:
    default_ttl: 30m
profiles:
  acme-smartdoc:
    vendor: smartdocumentor
    credentials: {client_id: acme, client_secret: ${ACME_SD_SECRET}}
    params: {}
    settings: {}
  acme-file:
    vendor: saasu
    credentials: {username: u, password: "file:secret"}
clients:
  billing-service:
    api_key_sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
    cert_subject: ""
    allow: [acme-smartdoc, "vendor:abbyy_vantage"]
tls: {cert_file: a.pem, key_file: a-key.pem, client_ca_file: ca.pem}
limits: {refresh_per_minute: 60, refresh_burst: 30}
`

// FuzzParse parses arbitrary config files. Every environment variable
// holds envMarker and the only readable secret file holds fileMarker
// ("file:" paths are confined to a temporary directory). Properties: no
// error carries a resolved secret; a parsed config passes validation
// again, and neither fmt nor YAML nor JSON rendering of it shows a resolved
// secret.
func FuzzParse(f *testing.F) {
	f.Add([]byte(designConfig))
	f.Add([]byte("grpc_addr: x\ngrpc_adr: y\n"))
	f.Add([]byte("cache:\n  encryption_keys: [\"${UNSET_KEY}\"]\n"))
	f.Add([]byte("profiles:\n  p: {vendor: v, credentials: {a: \"file:missing\"}}\n"))
	f.Add([]byte("cache: {redis: {addrs: []}}\n"))
	f.Add([]byte("clients: {c: {allow: [p]}}\n"))
	f.Add([]byte("vendors: {oauth2: {extra_params: {audience: x, n: 1}}}\n"))
	f.Add([]byte("&a [*a]"))
	dir := f.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "secret"), []byte(fileMarker+"\n"), 0o600); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		// Confine file: references to dir, so a mutated path never reads
		// (or blocks on) a real file of the machine.
		raw = bytes.ReplaceAll(raw, []byte("file:"), []byte("file:"+dir+"/"))
		cfg, err := Parse(raw, markerEnv)
		if err != nil {
			if msg := err.Error(); strings.Contains(msg, envMarker) || strings.Contains(msg, fileMarker) {
				t.Fatalf("error %q carries a resolved secret", msg)
			}
			return
		}
		if err := cfg.validate(); err != nil {
			t.Fatalf("parsed config fails validation: %v", err)
		}
		renderings := []string{fmt.Sprintf("%v", cfg), fmt.Sprintf("%+v", *cfg), fmt.Sprintf("%#v", *cfg)}
		if y, err := yaml.Marshal(cfg); err == nil {
			renderings = append(renderings, string(y))
		}
		if j, err := json.Marshal(cfg); err == nil {
			renderings = append(renderings, string(j))
		}
		for _, r := range renderings {
			if strings.Contains(r, envMarker) || strings.Contains(r, fileMarker) {
				t.Fatalf("a rendering of the config shows a resolved secret:\n%s", r)
			}
		}
	})
}
