package test

import (
	"context"
	"crypto/tls"
	"crypto/x509/pkix"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/tokenbroker/tokenbroker/app"
	"github.com/tokenbroker/tokenbroker/config"
	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
	"github.com/tokenbroker/tokenbroker/testkit/brokertest"
)

// The API keys of the matrix. They are what a caller sends; the config
// holds only their SHA-256.
const (
	billingKey = "billingKey0123456789abcdefABCDEF-_"
	reportsKey = "reportsKey0123456789abcdefABCDEF+/=="
)

var billingSubject = pkix.Name{CommonName: "billing-service", Organization: []string{"Tokenbroker Test"}}

// mtlsBroker is a broker with API-key and certificate clients, TLS on both
// listeners and a client CA.
type mtlsBroker struct {
	app      *app.App
	logs     *logBuffer
	serverCA *testCA
	clientCA *testCA
}

func startMTLSBroker(t *testing.T, extra string) *mtlsBroker {
	t.Helper()
	dir := t.TempDir()
	serverCA, clientCA := newTestCA(t, "server CA"), newTestCA(t, "client CA")
	certFile, keyFile := writeKeyPair(t, dir, serverCA.issue(t, pkix.Name{CommonName: "127.0.0.1"}, time.Now().Add(time.Hour), true))
	caFile := clientCA.writeCA(t, dir)
	sim := brokertest.StartSim(t)
	cfg := brokertest.SimConfig(t, sim, fmt.Sprintf(`
profiles:
  acme-sd:
    vendor: smartdocumentor
    credentials: {client_id: demo-client, client_secret: demo-secret}
  reports-sd:
    vendor: smartdocumentor
    credentials: {client_id: demo-client, client_secret: demo-secret}
clients:
  billing:
    api_key_sha256: %s
    cert_subject: %q
    allow: [acme-sd]
  reports:
    api_key_sha256: %s
    allow: [reports-sd, "vendor:smartdocumentor"]
tls:
  cert_file: %s
  key_file: %s
  client_ca_file: %s
%s`, sha256Hex(billingKey), billingSubject.String(), sha256Hex(reportsKey), certFile, keyFile, caFile, extra))
	a, logs := startAppWithLogs(t, cfg, false)
	return &mtlsBroker{app: a, logs: logs, serverCA: serverCA, clientCA: clientCA}
}

// auditLine returns the authorization audit record of one request.
func auditLine(t *testing.T, logs *logBuffer, requestID string) map[string]any {
	t.Helper()
	var found map[string]any
	for _, rec := range logs.lines(t, "authorization") {
		if rec["request_id"] == requestID {
			if found != nil {
				t.Fatalf("two audit lines for request %s", requestID)
			}
			found = rec
		}
	}
	if found == nil {
		t.Fatalf("no audit line for request %s in:\n%s", requestID, logs.String())
	}
	return found
}

func TestAuthMatrixGRPCAndREST(t *testing.T) {
	t.Parallel()
	b := startMTLSBroker(t, "")
	rogueCA := newTestCA(t, "rogue CA")
	goodCert := b.clientCA.issue(t, billingSubject, time.Now().Add(time.Hour), false)
	expiredCert := b.clientCA.issue(t, billingSubject, time.Now().Add(-time.Minute), false)
	rogueCert := rogueCA.issue(t, billingSubject, time.Now().Add(time.Hour), false)
	unknownCert := b.clientCA.issue(t, pkix.Name{CommonName: "nobody"}, time.Now().Add(time.Hour), false)

	tests := []struct {
		name      string
		key       string
		cert      *tls.Certificate
		body      string // REST body; the gRPC request is the same
		code      codes.Code
		httpCode  int
		principal string
		decision  string
	}{
		{"no key", "", nil, `{"profile":"acme-sd"}`, codes.Unauthenticated, 401, "", "deny"},
		{"wrong key", "wrongKey0123456789", nil, `{"profile":"acme-sd"}`, codes.Unauthenticated, 401, "", "deny"},
		{"right key, wrong profile", billingKey, nil, `{"profile":"reports-sd"}`, codes.PermissionDenied, 403, "billing", "deny"},
		{"right key, right profile", billingKey, nil, `{"profile":"acme-sd"}`, codes.OK, 200, "billing", "allow"},
		{"right key, inline credentials not allowed", billingKey, nil, `{"vendor":"smartdocumentor","credentials":{"client_id":"demo-client","client_secret":"demo-secret"}}`, codes.PermissionDenied, 403, "billing", "deny"},
		{"right key, inline credentials allowed", reportsKey, nil, `{"vendor":"smartdocumentor","credentials":{"client_id":"demo-client","client_secret":"demo-secret"}}`, codes.OK, 200, "reports", "allow"},
		{"certificate from another CA", "", &rogueCert, `{"profile":"acme-sd"}`, codes.Unauthenticated, 401, "", "deny"},
		{"expired certificate", "", &expiredCert, `{"profile":"acme-sd"}`, codes.Unauthenticated, 401, "", "deny"},
		{"certificate of no client", "", &unknownCert, `{"profile":"acme-sd"}`, codes.Unauthenticated, 401, "", "deny"},
		{"right certificate, wrong profile", "", &goodCert, `{"profile":"reports-sd"}`, codes.PermissionDenied, 403, "billing", "deny"},
		{"right certificate, right profile", "", &goodCert, `{"profile":"acme-sd"}`, codes.OK, 200, "billing", "allow"},
		{"right certificate and its client's key", billingKey, &goodCert, `{"profile":"acme-sd"}`, codes.OK, 200, "billing", "allow"},
		{"right certificate and another client's key", reportsKey, &goodCert, `{"profile":"acme-sd"}`, codes.Unauthenticated, 401, "", "deny"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tlsCfg := clientTLS(b.serverCA, tc.cert)
			var req tokenbrokerv1.GetTokenRequest
			if err := protojson.Unmarshal([]byte(tc.body), &req); err != nil {
				t.Fatal(err)
			}

			// gRPC
			grpcID := fmt.Sprintf("matrix-grpc-%d", i)
			ctx := metadata.AppendToOutgoingContext(ctxT(t), "x-request-id", grpcID)
			if tc.key != "" {
				ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tc.key)
			}
			_, err := grpcClient(t, b.app, tlsCfg).GetToken(ctx, &req)
			if got := status.Code(err); got != tc.code {
				t.Errorf("gRPC code = %v (%v), want %v", got, err, tc.code)
			}
			if tc.key != "" && err != nil && strings.Contains(err.Error(), tc.key) {
				t.Errorf("gRPC error repeats the key: %v", err)
			}

			// REST
			restID := fmt.Sprintf("matrix-rest-%d", i)
			hreq, _ := http.NewRequest("POST", "https://"+b.app.Server.HTTPAddr().String()+"/v1/token", strings.NewReader(tc.body))
			hreq.Header.Set("X-Request-Id", restID)
			if tc.key != "" {
				hreq.Header.Set("Authorization", "Bearer "+tc.key)
			}
			resp, err := httpClient(t, tlsCfg).Do(hreq)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.httpCode {
				t.Errorf("REST status = %d (%s), want %d", resp.StatusCode, body, tc.httpCode)
			}

			for _, id := range []string{grpcID, restID} {
				rec := auditLine(t, b.logs, id)
				if rec["principal"] != tc.principal || rec["decision"] != tc.decision || rec["method"] != tokenbrokerv1.TokenService_GetToken_FullMethodName {
					t.Errorf("audit line of %s = %v, want principal %q decision %s", id, rec, tc.principal, tc.decision)
				}
				if (tc.cert == &rogueCert || tc.cert == &expiredCert) && rec["claimed_subject"] != billingSubject.String() {
					t.Errorf("audit line of a rejected certificate does not name its subject: %v", rec)
				}
				if want := targetOf(tc.body); rec["target"] != want {
					t.Errorf("audit target = %v, want %s", rec["target"], want)
				}
			}
		})
	}
	logs := b.logs.String()
	for _, key := range []string{billingKey, reportsKey, "wrongKey0123456789"} {
		if strings.Contains(logs, key) {
			t.Errorf("the log contains an API key")
		}
	}
}

// targetOf is the audit target of a matrix request body.
func targetOf(body string) string {
	if strings.Contains(body, `"profile"`) {
		return strings.Split(body, `"`)[3]
	}
	return "vendor:smartdocumentor"
}

func TestForgedCertificateHeaderIsIgnored(t *testing.T) {
	t.Parallel()
	b := startMTLSBroker(t, "")
	goodCert := b.clientCA.issue(t, billingSubject, time.Now().Add(time.Hour), false)
	forged := base64.StdEncoding.EncodeToString(goodCert.Certificate[0])
	noCert := clientTLS(b.serverCA, nil)

	// REST: the caller sets the header the middleware sets.
	hreq, _ := http.NewRequest("POST", "https://"+b.app.Server.HTTPAddr().String()+"/v1/token", strings.NewReader(`{"profile":"acme-sd"}`))
	hreq.Header.Set("X-Tokenbroker-Client-Cert", forged)
	resp, err := httpClient(t, noCert).Do(hreq)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("REST with a forged certificate header: status %d, want 401", resp.StatusCode)
	}

	// gRPC: the caller sends the metadata the gateway sends.
	ctx := metadata.AppendToOutgoingContext(ctxT(t), "x-tokenbroker-client-cert", forged)
	_, err = grpcClient(t, b.app, noCert).GetToken(ctx, &tokenbrokerv1.GetTokenRequest{Profile: "acme-sd"})
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("gRPC with forged certificate metadata: %v, want Unauthenticated", err)
	}
}

func TestOpenAndClosedMethodsWithClients(t *testing.T) {
	t.Parallel()
	b := startMTLSBroker(t, "")
	noCert := clientTLS(b.serverCA, nil)
	conn, err := grpc.NewClient(b.app.Server.GRPCAddr().String(), grpc.WithTransportCredentials(credentials.NewTLS(noCert)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := ctxT(t)

	// Health stays open: probes carry no credentials.
	brokertest.Eventually(t, "health without credentials", 10*time.Second, func() error {
		h, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		if err == nil && h.Status == healthpb.HealthCheckResponse_SERVING {
			return nil
		}
		return fmt.Errorf("%v, %v", h, err)
	})

	client := tokenbrokerv1.NewTokenServiceClient(conn)
	if _, err := client.ListVendors(ctx, &tokenbrokerv1.ListVendorsRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("ListVendors without credentials: %v, want Unauthenticated", err)
	}
	if _, err := client.ListVendors(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+reportsKey), &tokenbrokerv1.ListVendorsRequest{}); err != nil {
		t.Errorf("ListVendors with a key: %v", err)
	}
	if _, err := client.InvalidateToken(ctx, &tokenbrokerv1.InvalidateTokenRequest{Profile: "acme-sd", AccessToken: "x"}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("InvalidateToken without credentials: %v, want Unauthenticated", err)
	}
	resp, err := httpClient(t, noCert).Get("https://" + b.app.Server.HTTPAddr().String() + "/v1/vendors")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("GET /v1/vendors without credentials: %d, want 401", resp.StatusCode)
	}
}

func TestRefreshRateLimitPerClient(t *testing.T) {
	t.Parallel()
	sim := brokertest.StartSim(t)
	cfg := brokertest.SimConfig(t, sim, sdProfile+fmt.Sprintf(`
clients:
  billing: {api_key_sha256: %s, allow: [acme-sd]}
  reports: {api_key_sha256: %s, allow: [acme-sd]}
limits: {refresh_per_minute: 1, refresh_burst: 2}
`, sha256Hex(billingKey), sha256Hex(reportsKey)))
	a, logs := startAppWithLogs(t, cfg, false)
	client := grpcClient(t, a, nil)
	billing := metadata.AppendToOutgoingContext(ctxT(t), "authorization", "Bearer "+billingKey)
	if _, err := client.GetToken(billing, &tokenbrokerv1.GetTokenRequest{Profile: "acme-sd"}); err != nil {
		t.Fatal(err)
	}
	// Plain GetToken calls are not limited.
	for range 5 {
		if _, err := client.GetToken(billing, &tokenbrokerv1.GetTokenRequest{Profile: "acme-sd"}); err != nil {
			t.Fatalf("plain GetToken: %v", err)
		}
	}
	if _, err := client.GetToken(billing, &tokenbrokerv1.GetTokenRequest{Profile: "acme-sd", ForceRefresh: true}); err != nil {
		t.Fatalf("first force_refresh: %v", err)
	}
	if _, err := client.InvalidateToken(billing, &tokenbrokerv1.InvalidateTokenRequest{Profile: "acme-sd", AccessToken: "stale"}); err != nil {
		t.Fatalf("InvalidateToken within the burst: %v", err)
	}
	_, err := client.GetToken(billing, &tokenbrokerv1.GetTokenRequest{Profile: "acme-sd", ForceRefresh: true})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("third costly call: %v, want ResourceExhausted", err)
	}
	var retry *errdetails.RetryInfo
	for _, d := range status.Convert(err).Details() {
		if r, ok := d.(*errdetails.RetryInfo); ok {
			retry = r
		}
	}
	if retry == nil || retry.RetryDelay.AsDuration() <= 0 || retry.RetryDelay.AsDuration() > time.Minute {
		t.Errorf("RetryInfo = %v", retry)
	}
	// REST: 429.
	hreq, _ := http.NewRequest("POST", "http://"+a.Server.HTTPAddr().String()+"/v1/token:invalidate", strings.NewReader(`{"profile":"acme-sd","access_token":"stale"}`))
	hreq.Header.Set("Authorization", "Bearer "+billingKey)
	resp, err := http.DefaultClient.Do(hreq)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 429 {
		t.Errorf("REST over the limit: %d, want 429", resp.StatusCode)
	}
	// Another client has its own bucket.
	reports := metadata.AppendToOutgoingContext(ctxT(t), "authorization", "Bearer "+reportsKey)
	if _, err := client.InvalidateToken(reports, &tokenbrokerv1.InvalidateTokenRequest{Profile: "acme-sd", AccessToken: "stale"}); err != nil {
		t.Errorf("another client was limited: %v", err)
	}
	if !strings.Contains(logs.String(), "rate limited") {
		t.Error("the refusal was not audited")
	}
}

func TestBindAddressSafety(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	caFile := newTestCA(t, "client CA").writeCA(t, dir)
	serverCA := newTestCA(t, "server CA")
	certFile, keyFile := writeKeyPair(t, dir, serverCA.issue(t, pkix.Name{CommonName: "127.0.0.1"}, time.Now().Add(time.Hour), true))
	clients := fmt.Sprintf("clients:\n  billing: {api_key_sha256: %s, allow: [acme-sd]}\n", sha256Hex(billingKey))
	tests := []struct {
		name     string
		yaml     string
		insecure bool
		wantErr  []string
	}{
		{"all interfaces without clients", "grpc_addr: 0.0.0.0:0\n", false,
			[]string{"grpc_addr 0.0.0.0:0 is not a loopback address", "clients.<name>.api_key_sha256", "tls.client_ca_file", "--insecure-allow-unauthenticated", "Security model"}},
		{"empty host without clients", "http_addr: \":0\"\n", false, []string{"http_addr :0", "--insecure-allow-unauthenticated"}},
		{"all interfaces, insecure flag", "grpc_addr: 0.0.0.0:0\nhttp_addr: 0.0.0.0:0\n", true, nil},
		{"all interfaces with clients", "grpc_addr: 0.0.0.0:0\nhttp_addr: 0.0.0.0:0\n" + sdProfile + clients, false, nil},
		{"all interfaces with mTLS only", fmt.Sprintf("grpc_addr: 0.0.0.0:0\ntls: {cert_file: %s, key_file: %s, client_ca_file: %s}\n", certFile, keyFile, caFile), false, nil},
		{"loopback without clients", "grpc_addr: '[::1]:0'\nhttp_addr: localhost:0\n", false, nil},
		{"allow entry naming no profile", sdProfile + "clients:\n  billing: {api_key_sha256: " + sha256Hex(billingKey) + ", allow: [acme-typo]}\n", false, []string{"clients.billing.allow[0]", "acme-typo"}},
		{"allow entry naming no vendor", sdProfile + "clients:\n  billing: {api_key_sha256: " + sha256Hex(billingKey) + ", allow: [\"vendor:nope\"]}\n", false, []string{"clients.billing.allow[0]"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			yaml := tc.yaml
			for _, key := range []string{"grpc_addr", "http_addr"} {
				if !strings.Contains(yaml, key+":") {
					yaml = key + ": 127.0.0.1:0\n" + yaml
				}
			}
			cfg, err := config.Parse([]byte(yaml), func(string) (string, bool) { return "", false })
			if err != nil {
				t.Fatal(err)
			}
			if tc.name == "loopback without clients" {
				if ln, err := net.Listen("tcp", "[::1]:0"); err != nil {
					t.Skip("no IPv6 loopback here")
				} else {
					ln.Close()
				}
			}
			ctx, cancel := context.WithCancel(context.Background())
			a, err := app.New(ctx, app.Options{Config: cfg, Logger: slog.New(slog.DiscardHandler), InsecureAllowUnauthenticated: tc.insecure})
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("app.New: %v", err)
				}
				cancel()
				_ = a.Run(ctx) // serves, then shuts down at once: frees the ports
				return
			}
			cancel()
			if err == nil {
				t.Fatal("app.New succeeded, want a refusal")
			}
			for _, want := range tc.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
		})
	}
}

// TestAnyClientCertificateWithoutClients covers mTLS with no clients
// configured: every certificate the client CA signed may call; nothing
// else may.
func TestAnyClientCertificateWithoutClients(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	serverCA, clientCA := newTestCA(t, "server CA"), newTestCA(t, "client CA")
	certFile, keyFile := writeKeyPair(t, dir, serverCA.issue(t, pkix.Name{CommonName: "127.0.0.1"}, time.Now().Add(time.Hour), true))
	sim := brokertest.StartSim(t)
	cfg := brokertest.SimConfig(t, sim, sdProfile+fmt.Sprintf("tls: {cert_file: %s, key_file: %s, client_ca_file: %s}\n", certFile, keyFile, clientCA.writeCA(t, dir)))
	a, logs := startAppWithLogs(t, cfg, false)
	anyone := clientCA.issue(t, pkix.Name{CommonName: "anyone"}, time.Now().Add(time.Hour), false)
	if _, err := grpcClient(t, a, clientTLS(serverCA, &anyone)).GetToken(ctxT(t), &tokenbrokerv1.GetTokenRequest{Profile: "acme-sd"}); err != nil {
		t.Fatalf("a certificate from the client CA: %v", err)
	}
	if _, err := grpcClient(t, a, clientTLS(serverCA, nil)).GetToken(ctxT(t), &tokenbrokerv1.GetTokenRequest{Profile: "acme-sd"}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("no certificate: %v, want Unauthenticated", err)
	}
	if !strings.Contains(logs.String(), `"principal":"CN=anyone"`) {
		t.Errorf("audit does not name the certificate subject:\n%s", logs.String())
	}
}
