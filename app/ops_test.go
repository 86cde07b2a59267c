package app

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace/noop"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/tokenbroker/tokenbroker/config"
	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
	"github.com/tokenbroker/tokenbroker/testkit/redistest"
	"github.com/tokenbroker/tokenbroker/vendorsim"
)

func opsSim(t *testing.T) *vendorsim.Sim {
	t.Helper()
	sim, err := vendorsim.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	for vendor, creds := range vendorsim.DemoAccounts() {
		sim.AddAccount(vendor, creds)
	}
	t.Cleanup(func() { _ = sim.Close() })
	return sim
}

// opsConfig points smartdocumentor at sim, with the profile acme-sd and
// the extra YAML (a cache section) appended.
func opsConfig(t *testing.T, sim *vendorsim.Sim, extra string) *config.Config {
	t.Helper()
	yaml := `
grpc_addr: 127.0.0.1:0
http_addr: 127.0.0.1:0
shutdown_delay: 0s
vendors:
  smartdocumentor:
    token_url: ` + sim.URL() + `/smartdocumentor/connect/token
profiles:
  acme-sd:
    vendor: smartdocumentor
    credentials: {client_id: demo-client, client_secret: demo-secret}
` + extra
	cfg, err := config.Parse([]byte(yaml), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// opsBroker is a running App for one test.
type opsBroker struct {
	app    *App
	http   string
	client tokenbrokerv1.TokenServiceClient
	health healthpb.HealthClient
	stop   func() // cancels Run and waits for it
}

// newOpsApp builds an App without running it.
func newOpsApp(t *testing.T, cfg *config.Config) *App {
	t.Helper()
	if cfg.ShutdownDelay == config.DefaultShutdownDelay {
		cfg.ShutdownDelay = 0 // no load balancer to wait for, unless the test set a delay
	}
	a, err := New(context.Background(), Options{Config: cfg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// runOps serves a until the test ends (or stop).
func runOps(t *testing.T, a *App) *opsBroker {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	conn, err := grpc.NewClient(a.Server.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			conn.Close()
			cancel()
			<-done
		})
	}
	t.Cleanup(stop)
	return &opsBroker{
		app:    a,
		http:   "http://" + a.Server.HTTPAddr().String(),
		client: tokenbrokerv1.NewTokenServiceClient(conn),
		health: healthpb.NewHealthClient(conn),
		stop:   stop,
	}
}

func getText(t *testing.T, url string) (int, string, time.Duration) {
	t.Helper()
	start := time.Now()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), time.Since(start)
}

func (b *opsBroker) grpcHealth(t *testing.T) healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := b.health.Check(ctx, &healthpb.HealthCheckRequest{Service: tokenbrokerv1.TokenService_ServiceDesc.ServiceName})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetStatus()
}

func inProcessHealth(a *App) healthpb.HealthCheckResponse_ServingStatus {
	resp, _ := a.Server.Health().Check(context.Background(), &healthpb.HealthCheckRequest{})
	return resp.GetStatus()
}

func TestHealthTransitions(t *testing.T) {
	t.Parallel()
	a := newOpsApp(t, opsConfig(t, opsSim(t), ""))
	if st := inProcessHealth(a); st != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("health once configured, before Run = %v, want NOT_SERVING", st)
	}
	b := runOps(t, a)
	if st := b.grpcHealth(t); st != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health while running = %v, want SERVING", st)
	}
	for path, want := range map[string]string{"/healthz": "ok\n", "/readyz": "ready\n"} {
		if code, body, took := getText(t, b.http+path); code != http.StatusOK || body != want || took > time.Second {
			t.Errorf("%s = %d %q in %v, want 200 %q within 1s", path, code, body, took, want)
		}
	}
	b.stop()
	if st := inProcessHealth(a); st != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("health after shutdown = %v, want NOT_SERVING", st)
	}
}

// redisCache is the cache section for a Redis at addr.
func redisCache(addr string) string {
	key := base64.StdEncoding.EncodeToString(make([]byte, 32))
	return "cache:\n  redis: {addrs: [" + addr + "]}\n  encryption_keys: [" + key + "]\n"
}

// scrapeValue returns the value of the first /metrics line starting with
// series, or -1.
func scrapeValue(t *testing.T, b *opsBroker, series string) float64 {
	t.Helper()
	_, text, _ := getText(t, b.http+"/metrics")
	for _, line := range strings.Split(text, "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(rest, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return v
		}
	}
	return -1
}

func TestReadinessWithRedisDownIsDegradedNotFailing(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	b := runOps(t, newOpsApp(t, opsConfig(t, opsSim(t), redisCache(srv.Addr))))
	ctx := context.Background()
	for range 2 {
		if _, err := b.client.GetToken(ctx, &tokenbrokerv1.GetTokenRequest{Profile: "acme-sd"}); err != nil {
			t.Fatal(err)
		}
	}
	if code, body, _ := getText(t, b.http+"/readyz"); code != http.StatusOK || body != "ready\n" {
		t.Fatalf("/readyz with Redis up = %d %q, want 200 ready", code, body)
	}
	if v := scrapeValue(t, b, `tokenbroker_cache_level_lookups_total{level="l1",result="hit"}`); v < 1 {
		t.Errorf("L1 hits = %v, want >= 1 after a repeated GetToken", v)
	}
	if v := scrapeValue(t, b, "tokenbroker_redis_breaker_open"); v != 0 {
		t.Errorf("breaker open = %v with Redis up, want 0", v)
	}

	srv.Kill()
	// Requests that reach Redis (new cache keys) fail fast until the
	// breaker opens; readiness then says degraded, and never fails.
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; ; i++ {
		_, _ = b.client.GetToken(ctx, &tokenbrokerv1.GetTokenRequest{Vendor: "smartdocumentor",
			Credentials: map[string]string{"client_id": "probe", "client_secret": strconv.Itoa(i)}})
		code, body, took := getText(t, b.http+"/readyz")
		if code != http.StatusOK || took > time.Second {
			t.Fatalf("/readyz with Redis down = %d %q in %v, want 200 within 1s", code, body, took)
		}
		if strings.Contains(body, "degraded") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still %q with Redis down", body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st := b.grpcHealth(t); st != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("gRPC health with Redis down = %v, want SERVING (the broker degrades)", st)
	}
	if _, err := b.client.GetToken(ctx, &tokenbrokerv1.GetTokenRequest{Profile: "acme-sd"}); err != nil {
		t.Errorf("GetToken with Redis down: %v, want the in-process token", err)
	}
	if v := scrapeValue(t, b, "tokenbroker_redis_breaker_open"); v != 1 {
		t.Errorf("breaker open = %v with Redis down, want 1", v)
	}
	if v := scrapeValue(t, b, "tokenbroker_redis_errors_total"); v < 1 {
		t.Errorf("redis errors = %v, want >= 1", v)
	}

	srv.Restart()
	deadline = time.Now().Add(10 * time.Second)
	for {
		_, body, _ := getText(t, b.http+"/readyz")
		if body == "ready\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still %q after Redis returned", body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// otlpCollector is an OTLP/gRPC trace collector that keeps span names.
type otlpCollector struct {
	coltracepb.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans map[string]int
}

func (c *otlpCollector) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				c.spans[s.GetName()]++
			}
		}
	}
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

// Not parallel: it sets the environment and the process's tracer provider.
func TestTracingExportsRPCAndVendorSpans(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	col := &otlpCollector{spans: map[string]int{}}
	gs := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(gs, col)
	go func() { _ = gs.Serve(lis) }()
	defer gs.Stop()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+lis.Addr().String())
	t.Setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
	t.Cleanup(func() { otel.SetTracerProvider(noop.NewTracerProvider()) })

	sim := opsSim(t)
	ctx, cancel := context.WithCancel(context.Background())
	var logs syncBuffer
	a, err := New(ctx, Options{Config: opsConfig(t, sim, ""), Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	conn, err := grpc.NewClient(a.Server.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	_, err = tokenbrokerv1.NewTokenServiceClient(conn).GetToken(ctx, &tokenbrokerv1.GetTokenRequest{Profile: "acme-sd"})
	conn.Close()
	if err != nil {
		t.Fatal(err)
	}
	// A REST call is traced as the same RPC: the gateway calls the
	// service in process, through the server's stats handlers.
	resp, err := http.Post("http://"+a.Server.HTTPAddr().String()+"/v1/token", "application/json", strings.NewReader(`{"profile":"acme-sd"}`))
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("REST GetToken: %s", resp.Status)
	}
	cancel()
	<-done // shutdown flushes the spans

	col.mu.Lock()
	defer col.mu.Unlock()
	for _, name := range []string{"tokenbroker.v1.TokenService/GetToken", "vendor.FetchToken"} {
		if col.spans[name] == 0 {
			t.Errorf("no %q span exported; got %v", name, col.spans)
		}
	}
	if n := col.spans["tokenbroker.v1.TokenService/GetToken"]; n != 2 {
		t.Errorf("%d GetToken spans exported, want 2 (one gRPC, one REST call)", n)
	}
	for name := range col.spans {
		if strings.Contains(name, "grpc.health") {
			t.Errorf("health checks are traced: %q", name)
		}
	}
	// With tracing on, both calls' access lines name their trace.
	logs.mu.Lock()
	defer logs.mu.Unlock()
	traced := 0
	for _, line := range strings.Split(strings.TrimSpace(logs.buf.String()), "\n") {
		var rec struct {
			Msg     string
			TraceID string `json:"trace_id"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "request" && len(rec.TraceID) == 32 {
			traced++
		}
	}
	if traced != 2 {
		t.Errorf("%d access lines with a trace_id, want 2 (one gRPC, one REST call)", traced)
	}
}
