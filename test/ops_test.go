package test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/tokenbroker/tokenbroker/app"
	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
	"github.com/tokenbroker/tokenbroker/testkit/brokertest"
)

// scrape reads the broker's /metrics.
func scrape(t *testing.T, b *brokertest.Broker) string {
	t.Helper()
	resp, err := http.Get(b.HTTP + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics status %d", resp.StatusCode)
	}
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

// metricValue finds the sample of name whose labels include want, in the
// Prometheus text format; 0 when there is none.
func metricValue(t *testing.T, text, name string, want map[string]string) float64 {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		labels, value, _ := strings.Cut(line[len(name):], " ")
		matched := true
		for k, v := range want {
			if !strings.Contains(labels, k+`="`+v+`"`) {
				matched = false
			}
		}
		if matched {
			f, err := strconv.ParseFloat(value, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	return 0
}

func TestMetricsMoveWithHitsAndVendorErrors(t *testing.T) {
	t.Parallel()
	sim := brokertest.StartSim(t)
	b := brokertest.StartBroker(t, sim, brokertest.SimConfig(t, sim, sdProfile))
	ctx := ctxT(t)
	sd := map[string]string{"vendor": "smartdocumentor"}
	hit := map[string]string{"vendor": "smartdocumentor", "result": "hit"}
	miss := map[string]string{"vendor": "smartdocumentor", "result": "miss"}
	unavailable := map[string]string{"vendor": "smartdocumentor", "outcome": "unavailable"}

	if _, err := b.Client.GetToken(ctx, &tokenbrokerv1.GetTokenRequest{Profile: "acme-sd"}); err != nil {
		t.Fatal(err)
	}
	before := scrape(t, b)
	if _, err := b.Client.GetToken(ctx, &tokenbrokerv1.GetTokenRequest{Profile: "acme-sd"}); err != nil {
		t.Fatal(err)
	}
	afterHit := scrape(t, b)
	if d := metricValue(t, afterHit, "tokenbroker_cache_requests_total", hit) - metricValue(t, before, "tokenbroker_cache_requests_total", hit); d != 1 {
		t.Errorf("a cache hit moved the hit counter by %v, want 1", d)
	}
	if d := metricValue(t, afterHit, "tokenbroker_cache_requests_total", miss) - metricValue(t, before, "tokenbroker_cache_requests_total", miss); d != 0 {
		t.Errorf("a cache hit moved the miss counter by %v", d)
	}
	ok := map[string]string{"method": "tokenbroker.v1.TokenService/GetToken", "code": "OK"}
	if v := metricValue(t, afterHit, "tokenbroker_grpc_requests_total", ok); v != 2 {
		t.Errorf("GetToken OK requests = %v, want 2", v)
	}
	if v := metricValue(t, afterHit, "tokenbroker_upstream_request_duration_seconds_count", sd); v != 1 {
		t.Errorf("upstream latency observations = %v, want 1", v)
	}

	// The vendor fails every attempt: one upstream request counted as
	// unavailable (its retries are inside it).
	sim.FailNext("smartdocumentor", 10, http.StatusServiceUnavailable, 0)
	_, err := b.Client.GetToken(ctx, &tokenbrokerv1.GetTokenRequest{Vendor: "smartdocumentor",
		Credentials: map[string]string{"client_id": "other-client", "client_secret": "other-secret"}})
	sim.FailNext("smartdocumentor", 0, 0, 0)
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("GetToken with the vendor down: %v, want Unavailable", err)
	}
	afterErr := scrape(t, b)
	if d := metricValue(t, afterErr, "tokenbroker_upstream_requests_total", unavailable) - metricValue(t, afterHit, "tokenbroker_upstream_requests_total", unavailable); d != 1 {
		t.Errorf("a vendor outage moved the unavailable counter by %v, want 1", d)
	}
	if v := metricValue(t, afterErr, "tokenbroker_grpc_requests_total", map[string]string{"method": "tokenbroker.v1.TokenService/GetToken", "code": "Unavailable"}); v != 1 {
		t.Errorf("GetToken Unavailable requests = %v, want 1", v)
	}
	for _, name := range []string{"go_goroutines", "process_start_time_seconds"} {
		if !strings.Contains(afterErr, name) {
			t.Errorf("/metrics lacks the runtime collector's %s", name)
		}
	}
}

// logBuffer collects a broker's JSON log lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// lines returns the log records whose msg is msg.
func (l *logBuffer) lines(t *testing.T, msg string) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.buf.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		if rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// startLoggingBroker is startBroker with a JSON log kept for the test.
func startLoggingBroker(t *testing.T, cfgYAML string) (*brokertest.Broker, *logBuffer) {
	t.Helper()
	sim := brokertest.StartSim(t)
	logs := &logBuffer{}
	return brokertest.StartBrokerWith(t, sim, app.Options{Config: brokertest.SimConfig(t, sim, cfgYAML), Logger: slog.New(slog.NewJSONHandler(logs, nil))}), logs
}

func TestRequestIDIsPropagatedReturnedAndLogged(t *testing.T) {
	t.Parallel()
	b, logs := startLoggingBroker(t, sdProfile)
	ctx := ctxT(t)

	var hdr metadata.MD
	resp, err := b.Client.GetToken(metadata.AppendToOutgoingContext(ctx, "x-request-id", "req-grpc-1"),
		&tokenbrokerv1.GetTokenRequest{Profile: "acme-sd"}, grpc.Header(&hdr))
	if err != nil {
		t.Fatal(err)
	}
	if got := hdr.Get("x-request-id"); len(got) != 1 || got[0] != "req-grpc-1" {
		t.Errorf("gRPC response x-request-id = %q, want the caller's", got)
	}

	// No id, or one unfit for a log line: the broker makes one.
	for _, sent := range []string{"", "two words", strings.Repeat("x", 200)} {
		ctx := ctx
		if sent != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "x-request-id", sent)
		}
		var hdr metadata.MD
		_, err := b.Client.GetToken(ctx, &tokenbrokerv1.GetTokenRequest{Profile: "no-such-profile"}, grpc.Header(&hdr))
		if status.Code(err) != codes.NotFound {
			t.Fatalf("unknown profile: %v", err)
		}
		if got := hdr.Get("x-request-id"); len(got) != 1 || got[0] == sent || len(got[0]) < 15 {
			t.Errorf("sent %q: response x-request-id = %q, want a generated id (errors included)", sent, got)
		}
	}

	req, _ := http.NewRequest(http.MethodPost, b.HTTP+"/v1/token", strings.NewReader(`{"profile":"acme-sd"}`))
	req.Header.Set("X-Request-Id", "req-rest-1")
	httpResp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	httpResp.Body.Close()
	if got := httpResp.Header.Get("X-Request-Id"); got != "req-rest-1" {
		t.Errorf("REST X-Request-Id = %q, want the caller's", got)
	}
	_, hdrs, _ := postJSON(t, b.HTTP+"/v1/token", `{"profile":"acme-sd"}`)
	generated := hdrs.Get("X-Request-Id")
	if len(generated) < 15 { // 13 random characters, "-", a counter
		t.Errorf("REST X-Request-Id without one sent = %q, want a generated id", generated)
	}
	// An unusable id is replaced, and the log line carries the replacement.
	req, _ = http.NewRequest(http.MethodPost, b.HTTP+"/v1/token", strings.NewReader(`{"profile":"acme-sd"}`))
	req.Header.Set("X-Request-Id", "two words")
	httpResp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	httpResp.Body.Close()
	replaced := httpResp.Header.Get("X-Request-Id")
	if replaced == "two words" || len(replaced) < 15 {
		t.Errorf("REST X-Request-Id for an unusable one = %q, want a generated id", replaced)
	}

	byID := map[string]map[string]any{}
	for _, rec := range logs.lines(t, "request") {
		byID[rec["request_id"].(string)] = rec
	}
	tests := []struct {
		id, transport, cache, code string
	}{
		{"req-grpc-1", "grpc", "miss", "OK"},
		{"req-rest-1", "rest", "hit", "OK"},
		{generated, "rest", "hit", "OK"},
		{replaced, "rest", "hit", "OK"},
	}
	for _, tc := range tests {
		rec, ok := byID[tc.id]
		if !ok {
			t.Errorf("no access log line for %s in\n%s", tc.id, logs)
			continue
		}
		want := map[string]any{
			"method": "/tokenbroker.v1.TokenService/GetToken", "transport": tc.transport,
			"vendor": "smartdocumentor", "profile": "acme-sd", "cache": tc.cache, "code": tc.code, "principal": "",
		}
		for k, v := range want {
			if rec[k] != v {
				t.Errorf("%s: %s = %v, want %v", tc.id, k, rec[k], v)
			}
		}
		if _, ok := rec["duration_ms"].(float64); !ok {
			t.Errorf("%s: duration_ms = %v", tc.id, rec["duration_ms"])
		}
	}
	if n := len(logs.lines(t, "request")); n != 7 {
		t.Errorf("access log lines = %d, want one per request (7)", n)
	}
	for _, secret := range []string{resp.AccessToken, "demo-secret"} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the log contains a token or secret: %q", secret)
		}
	}
}

func TestReflectionListsServices(t *testing.T) {
	t.Parallel()
	sim := brokertest.StartSim(t)
	b := brokertest.StartBroker(t, sim, brokertest.SimConfig(t, sim, ""))
	conn, err := grpc.NewClient(b.App.Server.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{},
	}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	_ = stream.CloseSend()
	got := map[string]bool{}
	for _, s := range resp.GetListServicesResponse().GetService() {
		got[s.GetName()] = true
	}
	for _, want := range []string{"tokenbroker.v1.TokenService", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"} {
		if !got[want] {
			t.Errorf("reflection lists %v, missing %s", got, want)
		}
	}
}

func TestHealthEndpointsOfAServingBroker(t *testing.T) {
	t.Parallel()
	sim := brokertest.StartSim(t)
	b := brokertest.StartBroker(t, sim, brokertest.SimConfig(t, sim, ""))
	for _, tc := range []struct{ path, body string }{
		{"/healthz", "ok\n"},
		{"/readyz", "ready\n"},
	} {
		start := time.Now()
		resp, err := http.Get(b.HTTP + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != tc.body {
			t.Errorf("%s = %d %q, want 200 %q", tc.path, resp.StatusCode, body, tc.body)
		}
		if took := time.Since(start); took > time.Second {
			t.Errorf("%s took %v, want under 1s", tc.path, took)
		}
	}
	conn, err := grpc.NewClient(b.App.Server.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	for _, svc := range []string{"", "tokenbroker.v1.TokenService"} {
		// Run marks the broker SERVING just after it starts serving.
		brokertest.Eventually(t, fmt.Sprintf("health of %q SERVING", svc), 5*time.Second, func() error {
			resp, err := hc.Check(ctxT(t), &healthpb.HealthCheckRequest{Service: svc})
			if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
				return nil
			}
			return fmt.Errorf("health of %q = %v, %v; want SERVING", svc, resp, err)
		})
	}
}
