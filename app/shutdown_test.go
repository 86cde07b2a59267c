package app

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
)

// TestShutdownKeepsServingForTheDelay: once shutdown starts the server is
// at once not ready (/readyz and gRPC health) but keeps serving REST and
// gRPC calls for shutdown_delay, asking keep-alive clients to close their
// connections; only then does Run return.
func TestShutdownKeepsServingForTheDelay(t *testing.T) {
	t.Parallel()
	sim := opsSim(t)
	cfg := opsConfig(t, sim, "")
	const delay = 2 * time.Second
	cfg.ShutdownDelay = delay
	a := newOpsApp(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	conn, err := grpc.NewClient(a.Server.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client, health := tokenbrokerv1.NewTokenServiceClient(conn), healthpb.NewHealthClient(conn)
	base := "http://" + a.Server.HTTPAddr().String()
	keepAlive := &http.Client{Transport: &http.Transport{}}
	defer keepAlive.CloseIdleConnections()
	post := func() (*http.Response, error) {
		resp, err := keepAlive.Post(base+"/v1/token", "application/json", strings.NewReader(`{"profile":"acme-sd"}`))
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		return resp, err
	}
	readyz := func() int {
		resp, err := keepAlive.Get(base + "/readyz")
		if err != nil {
			return 0
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	deadline := time.Now().Add(10 * time.Second)
	for readyz() != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("never ready")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if resp, err := post(); err != nil || resp.StatusCode != http.StatusOK || resp.Close {
		t.Fatalf("before shutdown: %v %v (close=%v)", err, resp, resp != nil && resp.Close)
	}

	cancel()
	began := time.Now()
	deadline = began.Add(time.Second)
	for readyz() != http.StatusServiceUnavailable {
		if time.Now().After(deadline) {
			t.Fatal("/readyz still not 503 a second after shutdown began")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if h, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil || h.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("gRPC health during the delay: %v %v", h, err)
	}
	resp, err := post()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("REST during the delay: %v %v", resp, err)
	}
	if !resp.Close {
		t.Error("a REST answer during the delay does not say Connection: close")
	}
	if _, err := client.GetToken(context.Background(), &tokenbrokerv1.GetTokenRequest{Profile: "acme-sd"}); err != nil {
		t.Fatalf("gRPC during the delay: %v", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
		if took := time.Since(began); took < delay {
			t.Fatalf("Run returned %v after shutdown began, before shutdown_delay %v", took, delay)
		}
	case <-time.After(delay + 20*time.Second):
		t.Fatal("Run did not return")
	}
}
