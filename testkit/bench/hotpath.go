package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/tokenbroker/tokenbroker/app"
	"github.com/tokenbroker/tokenbroker/config"
	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
	"github.com/tokenbroker/tokenbroker/server"
	"github.com/tokenbroker/tokenbroker/vendorsim"
)

// echoService answers GetToken with a fixed response of the broker's size:
// the cheapest possible server behind the same API.
type echoService struct {
	tokenbrokerv1.UnimplementedTokenServiceServer
	resp *tokenbrokerv1.GetTokenResponse
}

func (e *echoService) GetToken(context.Context, *tokenbrokerv1.GetTokenRequest) (*tokenbrokerv1.GetTokenResponse, error) {
	return e.resp, nil
}

// Env is what the scenarios share: the vendor simulator and a broker.
type Env struct {
	Sim    *vendorsim.Sim
	Broker *app.App
	stop   []func()
	log    *slog.Logger
}

// brokerConfig is a broker on free loopback ports whose vendors point at
// sim; extra YAML is appended.
func brokerConfig(sim *vendorsim.Sim, extra string) (*config.Config, error) {
	return parseConfig(brokerYAML(sim, extra))
}

// brokerYAML is brokerConfig's YAML.
func brokerYAML(sim *vendorsim.Sim, extra string) string {
	return strings.ReplaceAll(`
grpc_addr: 127.0.0.1:0
http_addr: 127.0.0.1:0
vendors:
  smartdocumentor:
    token_url: {sim}/smartdocumentor/connect/token
profiles:
  bench:
    vendor: smartdocumentor
    credentials: {client_id: demo-client, client_secret: demo-secret}
  fleet:
    vendor: smartdocumentor
    credentials: {client_id: demo-client, client_secret: demo-secret}
  soak:  # a setting of its own gives it its own cache key
    vendor: smartdocumentor
    credentials: {client_id: demo-client, client_secret: demo-secret}
    settings: {timeout: 9s}
`+extra, "{sim}", sim.URL())
}

// NewEnv starts the simulator and an in-memory broker. The broker logs to
// /dev/null through the JSON handler and batched writer cmd/server uses,
// so log formatting and the write are part of what is measured.
func NewEnv(ctx context.Context, extraConfig string) (*Env, error) {
	sim, err := vendorsim.Start("127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	for v, c := range vendorsim.DemoAccounts() {
		sim.AddAccount(v, c)
	}
	env := &Env{Sim: sim, stop: []func(){func() { _ = sim.Close() }}}
	log, closeLog, err := benchLogger()
	if err != nil {
		env.Close()
		return nil, err
	}
	env.stop = append(env.stop, closeLog)
	env.log = log
	cfg, err := brokerConfig(sim, extraConfig)
	if err != nil {
		env.Close()
		return nil, err
	}
	b, err := startApp(ctx, cfg, env.log)
	if err != nil {
		env.Close()
		return nil, err
	}
	env.Broker = b.app
	env.stop = append(env.stop, b.stop)
	return env, nil
}

type runningApp struct {
	app  *app.App
	stop func()
}

func startApp(ctx context.Context, cfg *config.Config, log *slog.Logger) (*runningApp, error) {
	ctx, cancel := context.WithCancel(ctx)
	if cfg.ShutdownDelay == config.DefaultShutdownDelay {
		cfg.ShutdownDelay = 0 // no load balancer to wait for, unless the test set a delay
	}
	var a *app.App
	var err error
	asSide(sideBroker, func() { a, err = app.New(ctx, app.Options{Config: cfg, Logger: log}) })
	if err != nil {
		cancel()
		return nil, err
	}
	done := make(chan struct{})
	goAsSide(sideBroker, func() { _ = a.Run(ctx); close(done) })
	return &runningApp{app: a, stop: func() { cancel(); <-done }}, nil
}

// Close stops everything NewEnv started.
func (e *Env) Close() {
	for i := len(e.stop) - 1; i >= 0; i-- {
		e.stop[i]()
	}
}

// HotPathRequest is the request every hot-path scenario sends.
func HotPathRequest() *tokenbrokerv1.GetTokenRequest {
	return &tokenbrokerv1.GetTokenRequest{Profile: "bench", MinTtl: durationpb.New(0)}
}

// warmResponse fetches the cached token once and returns the response the
// echo servers will send (same size as the broker's).
func warmResponse(ctx context.Context, client tokenbrokerv1.TokenServiceClient) (*tokenbrokerv1.GetTokenResponse, error) {
	if _, err := client.GetToken(ctx, HotPathRequest()); err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	resp, err := client.GetToken(ctx, HotPathRequest())
	if err != nil {
		return nil, err
	}
	if !resp.CacheHit {
		return nil, fmt.Errorf("warm-up: second call was not a cache hit")
	}
	return resp, nil
}

// dial connects a gRPC client the same way for subject and baseline.
func dial(addr string) (*grpc.ClientConn, error) {
	return grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

// startBareEcho serves echo on a bare grpc-go server and returns a client
// of it (dialled like the broker's); stop closes both.
func startBareEcho(resp *tokenbrokerv1.GetTokenResponse) (client tokenbrokerv1.TokenServiceClient, stop func(), err error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	s := grpc.NewServer()
	tokenbrokerv1.RegisterTokenServiceServer(s, &echoService{resp: resp})
	goAsSide(sideEcho, func() { _ = s.Serve(lis) })
	conn, err := dial(lis.Addr().String())
	if err != nil {
		s.Stop()
		return nil, nil, err
	}
	return tokenbrokerv1.NewTokenServiceClient(conn), func() { conn.Close(); s.Stop() }, nil
}

// startGatewayEcho serves echo through the broker's own server package:
// the same gateway, listeners and limits, no service work.
func startGatewayEcho(ctx context.Context, resp *tokenbrokerv1.GetTokenResponse, log *slog.Logger) (httpBase string, stop func(), err error) {
	httpBase, stop, _, err = startGatewayEchoAddrs(ctx, resp, log)
	return httpBase, stop, err
}

// startGatewayEchoAddrs is startGatewayEcho that also returns the gRPC
// listener's address.
func startGatewayEchoAddrs(ctx context.Context, resp *tokenbrokerv1.GetTokenResponse, log *slog.Logger) (httpBase string, stop func(), grpcAddr string, err error) {
	srv, err := server.New(server.Options{GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Service: &echoService{resp: resp}, Logger: log})
	if err != nil {
		return "", nil, "", err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	goAsSide(sideEcho, func() { _ = srv.Serve(ctx); close(done) })
	return "http://" + srv.HTTPAddr().String(), func() { cancel(); <-done }, srv.GRPCAddr().String(), nil
}

// GRPCHotPath compares GetToken of a cached token with the bare echo.
func (e *Env) GRPCHotPath(ctx context.Context, concurrency, rounds int, roundTime time.Duration) (Comparison, error) {
	conn, err := dial(e.Broker.Server.GRPCAddr().String())
	if err != nil {
		return Comparison{}, err
	}
	defer conn.Close()
	return compareWithEcho(ctx, "gRPC GetToken (cached) vs bare grpc-go echo", "QPS >= 0.9x, p99 <= 1.2x",
		tokenbrokerv1.NewTokenServiceClient(conn), concurrency, rounds, roundTime)
}

// cachedResponse caches the hot-path token in the env's broker and returns
// its answer, what the echo servers send back.
func (e *Env) cachedResponse(ctx context.Context) (*tokenbrokerv1.GetTokenResponse, error) {
	conn, err := dial(e.Broker.Server.GRPCAddr().String())
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return warmResponse(ctx, tokenbrokerv1.NewTokenServiceClient(conn))
}

// RESTHotPath compares POST /v1/token of a cached token with an echo
// method behind the same gateway setup.
func (e *Env) RESTHotPath(ctx context.Context, concurrency, rounds int, roundTime time.Duration) (Comparison, error) {
	resp, err := e.cachedResponse(ctx)
	if err != nil {
		return Comparison{}, err
	}
	echoBase, stopEcho, err := startGatewayEcho(ctx, proto.Clone(resp).(*tokenbrokerv1.GetTokenResponse), e.log)
	if err != nil {
		return Comparison{}, err
	}
	defer stopEcho()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: concurrency + 1, MaxConnsPerHost: concurrency + 1}}
	defer client.CloseIdleConnections()
	c := Compare(ctx, "REST POST /v1/token (cached) vs gateway echo", concurrency, rounds, roundTime,
		postToken(client, "http://"+e.Broker.Server.HTTPAddr().String()), postToken(client, echoBase))
	c.Goal = "QPS >= 0.9x"
	return c, nil
}

func parseConfig(y string) (*config.Config, error) {
	return config.Parse([]byte(y), func(string) (string, bool) { return "", false })
}

func discardLogger() *slog.Logger { return slog.New(slog.NewJSONHandler(io.Discard, nil)) }

func readFile(path string) ([]byte, error) { return os.ReadFile(path) }
