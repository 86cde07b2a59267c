package test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/testkit/brokertest"
)

// TestNodeClientExample runs docs/clients.md's Node.js example
// (examples/node/example.js: @grpc/grpc-js, @grpc/proto-loader, fetch)
// against a broker on loopback with an API-key caller, and checks what it
// read: the same token over gRPC and REST with the REST field names, and
// the same error details from the gRPC trailer and the REST body. Its
// packages come from npm (make client-examples runs npm ci first); without
// them the test is skipped, except in CI.
func TestNodeClientExample(t *testing.T) {
	t.Parallel()
	dir := filepath.Join("..", "examples", "node")
	node, err := exec.LookPath("node")
	if _, statErr := os.Stat(filepath.Join(dir, "node_modules")); err != nil || statErr != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("node or examples/node/node_modules missing in CI (make client-examples runs npm ci): %v %v", err, statErr)
		}
		t.Skip("node or examples/node/node_modules missing: make client-examples")
	}
	const apiKey = "node-example-key"
	sim := brokertest.StartSim(t)
	b := brokertest.StartBroker(t, sim, brokertest.SimConfig(t, sim, `
profiles:
  demo-smartdocumentor:
    vendor: smartdocumentor
    credentials: {client_id: demo-client, client_secret: demo-secret}
clients:
  node-example:
    api_key_sha256: `+sha256Hex(apiKey)+`
    allow: [demo-smartdocumentor]
`))
	cmd := exec.Command(node, "example.js")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"TOKENBROKER_GRPC="+b.App.Server.GRPCAddr().String(),
		"TOKENBROKER_HTTP="+b.HTTP,
		"TOKENBROKER_API_KEY="+apiKey,
		"TOKENBROKER_PROFILE=demo-smartdocumentor",
	)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("node example.js: %v\n%s", err, stderr.String())
	}
	type token struct {
		Status      int    `json:"status"`
		TokenSHA256 string `json:"token_sha256"`
		TokenType   string `json:"token_type"`
		ExpiresIn   int    `json:"expires_in"`
		ExpiresAt   string `json:"expires_at"`
		CacheHit    bool   `json:"cache_hit"`
	}
	var out struct {
		GRPC      token `json:"grpc"`
		REST      token `json:"rest"`
		GRPCError struct {
			Code    string           `json:"code"`
			Message string           `json:"message"`
			Details []map[string]any `json:"details"`
		} `json:"grpc_error"`
		RESTError struct {
			Status  int              `json:"status"`
			Code    int              `json:"code"`
			Message string           `json:"message"`
			Details []map[string]any `json:"details"`
		} `json:"rest_error"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatalf("example output: %v\n%s", err, stdout.String())
	}
	t.Logf("example output:\n%s", stdout.String())

	if out.GRPC.TokenSHA256 == "" || out.GRPC.TokenType != "Bearer" || out.GRPC.ExpiresIn <= 60 || out.GRPC.CacheHit {
		t.Errorf("gRPC GetToken as read with the documented loader options: %+v", out.GRPC)
	}
	if out.REST.Status != 200 || out.REST.TokenSHA256 != out.GRPC.TokenSHA256 || !out.REST.CacheHit || out.REST.TokenType != "Bearer" {
		t.Errorf("REST GetToken: %+v, want 200 and the gRPC call's token from the cache", out.REST)
	}
	grpcExpiry, err1 := time.Parse(time.RFC3339Nano, out.GRPC.ExpiresAt)
	restExpiry, err2 := time.Parse(time.RFC3339Nano, out.REST.ExpiresAt)
	if err1 != nil || err2 != nil || grpcExpiry.Sub(restExpiry).Abs() > time.Millisecond {
		t.Errorf("expires_at: gRPC %q (a Timestamp read with longs: String), REST %q: want the same instant", out.GRPC.ExpiresAt, out.REST.ExpiresAt)
	}

	// The same error both ways: INVALID_ARGUMENT with a BadRequest that
	// names the param.
	if out.GRPCError.Code != "INVALID_ARGUMENT" || len(out.GRPCError.Details) != 1 || out.GRPCError.Details[0]["type"] != "google.rpc.BadRequest" {
		t.Fatalf("gRPC error: %+v, want INVALID_ARGUMENT with a decoded google.rpc.BadRequest", out.GRPCError)
	}
	violations, _ := out.GRPCError.Details[0]["field_violations"].([]any)
	if len(violations) != 1 || !strings.HasPrefix(violations[0].(map[string]any)["field"].(string), "params") {
		t.Errorf("gRPC BadRequest field_violations = %v, want one on params", violations)
	}
	if out.RESTError.Status != 400 || out.RESTError.Code != 3 || out.RESTError.Message != out.GRPCError.Message || len(out.RESTError.Details) != 1 ||
		out.RESTError.Details[0]["@type"] != "type.googleapis.com/google.rpc.BadRequest" {
		t.Errorf("REST error: %+v, want 400, code 3, the gRPC message and the BadRequest with its @type", out.RESTError)
	}
}
