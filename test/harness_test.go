package test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tokenbroker/tokenbroker/config"
	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
	"github.com/tokenbroker/tokenbroker/internal/app"
	"github.com/tokenbroker/tokenbroker/vendorsim"
)

// broker is a running server for one test.
type broker struct {
	app    *app.App
	client tokenbrokerv1.TokenServiceClient
	http   string // base URL of the REST facade
	sim    *vendorsim.Sim
}

// startSim starts a simulator with its demo accounts on loopback.
func startSim(t *testing.T, opts ...vendorsim.Option) *vendorsim.Sim {
	t.Helper()
	sim, err := vendorsim.Start("127.0.0.1:0", opts...)
	if err != nil {
		t.Fatal(err)
	}
	for vendor, creds := range vendorsim.DemoAccounts() {
		sim.AddAccount(vendor, creds)
	}
	t.Cleanup(func() { _ = sim.Close() })
	return sim
}

// simConfig is a config whose vendors point at sim, with the YAML extra
// merged in (profiles, service tuning...).
func simConfig(t *testing.T, sim *vendorsim.Sim, extra string) *config.Config {
	t.Helper()
	yaml := strings.ReplaceAll(`
grpc_addr: 127.0.0.1:0
http_addr: 127.0.0.1:0
vendors:
  smartdocumentor:
    token_url: {sim}/smartdocumentor/connect/token
  oauth2:
    token_url: {sim}/oauth2/token
`+extra, "{sim}", sim.URL())
	cfg, err := config.Parse([]byte(yaml), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// startBroker starts a broker from cfg and connects a gRPC client.
func startBroker(t *testing.T, sim *vendorsim.Sim, cfg *config.Config) *broker {
	t.Helper()
	return startBrokerWithLogger(t, sim, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// startBrokerWithLogger is startBroker logging to logger; it stops the
// broker when the test ends.
func startBrokerWithLogger(t *testing.T, sim *vendorsim.Sim, cfg *config.Config, logger *slog.Logger) *broker {
	t.Helper()
	return startBrokerWith(t, sim, app.Options{Config: cfg, Logger: logger})
}

// startBrokerWith starts a broker with opts; it stops the broker when the
// test ends.
func startBrokerWith(t *testing.T, sim *vendorsim.Sim, opts app.Options) *broker {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	if opts.Config.ShutdownDelay == config.DefaultShutdownDelay {
		opts.Config.ShutdownDelay = 0 // no load balancer to wait for, unless the test set a delay
	}
	a, err := app.New(ctx, opts)
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
	t.Cleanup(func() {
		conn.Close()
		cancel()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Error("server did not stop")
		}
	})
	return &broker{
		app:    a,
		client: tokenbrokerv1.NewTokenServiceClient(conn),
		http:   "http://" + a.Server.HTTPAddr().String(),
		sim:    sim,
	}
}

// postJSON sends a REST call and returns status, headers and body.
func postJSON(t *testing.T, url, body string) (int, http.Header, string) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// sameTokenAtOnce has callers call GetToken(req) at the same moment,
// caller i through client(i). Any error, or two callers getting different
// tokens, fails the test; it returns the one token.
func sameTokenAtOnce(t *testing.T, callers int, client func(i int) tokenbrokerv1.TokenServiceClient, req *tokenbrokerv1.GetTokenRequest) string {
	t.Helper()
	ctx := ctxT(t)
	tokens := make([]string, callers)
	errs := make([]error, callers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			<-start
			resp, err := client(i).GetToken(ctx, req)
			errs[i] = err
			if err == nil {
				tokens[i] = resp.AccessToken
			}
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("caller %d: %v", i, err)
		}
		if tokens[i] != tokens[0] {
			t.Fatalf("caller %d got another token than caller 0", i)
		}
	}
	return tokens[0]
}
