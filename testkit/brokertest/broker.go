package brokertest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tokenbroker/tokenbroker/app"
	"github.com/tokenbroker/tokenbroker/config"
	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
	"github.com/tokenbroker/tokenbroker/vendorsim"
)

// brokerStopTimeout bounds how long an in-process broker may take to stop.
const brokerStopTimeout = 20 * time.Second

// StartSim starts the vendor simulator on loopback with its demo
// accounts (vendorsim.DemoAccounts); it closes when the test ends.
func StartSim(t testing.TB, opts ...vendorsim.Option) *vendorsim.Sim {
	t.Helper()
	sim, err := NewSim(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	return sim
}

// NewSim is StartSim for a caller without a test (a TestMain), which
// closes it.
func NewSim(opts ...vendorsim.Option) (*vendorsim.Sim, error) {
	sim, err := vendorsim.Start("127.0.0.1:0", opts...)
	if err != nil {
		return nil, fmt.Errorf("brokertest: vendorsim: %w", err)
	}
	for vendor, creds := range vendorsim.DemoAccounts() {
		sim.AddAccount(vendor, creds)
	}
	return sim, nil
}

// SimConfig is a configuration on loopback ports chosen by the system
// whose smartdocumentor and oauth2 vendors point at sim, with extra (YAML:
// profiles, clients, cache...) appended.
func SimConfig(t testing.TB, sim *vendorsim.Sim, extra string) *config.Config {
	t.Helper()
	cfg, err := ParseSimConfig(sim, extra)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// ParseSimConfig is SimConfig returning its error.
func ParseSimConfig(sim *vendorsim.Sim, extra string) (*config.Config, error) {
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
		return nil, fmt.Errorf("brokertest: config: %w", err)
	}
	return cfg, nil
}

// Broker is a broker running in this process, wired by app as
// cmd/server wires it, with a gRPC client connected to it.
type Broker struct {
	App *app.App
	// Sim is the simulator it was started with (may be nil).
	Sim *vendorsim.Sim
	// GRPCAddr is the gRPC listener's address, HTTP the base URL of the
	// REST gateway ("http://127.0.0.1:<port>").
	GRPCAddr string
	HTTP     string
	// Conn and Client talk to GRPCAddr without TLS or credentials.
	Conn   *grpc.ClientConn
	Client tokenbrokerv1.TokenServiceClient

	stop func() error
}

// StartBroker starts a broker from cfg, logging nowhere; it stops when the
// test ends.
func StartBroker(t testing.TB, sim *vendorsim.Sim, cfg *config.Config) *Broker {
	t.Helper()
	return StartBrokerWith(t, sim, app.Options{Config: cfg})
}

// StartBrokerWith starts a broker with opts; it stops when the test ends,
// and one that does not stop within 20 s fails the test.
func StartBrokerWith(t testing.TB, sim *vendorsim.Sim, opts app.Options) *Broker {
	t.Helper()
	b, err := Launch(sim, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Stop(); err != nil {
			t.Error(err)
		}
	})
	return b
}

// Launch is StartBrokerWith for a caller without a test (a TestMain),
// which calls Stop. A nil Logger logs nowhere; a default shutdown_delay is
// 0s (there is no load balancer to wait for).
func Launch(sim *vendorsim.Sim, opts app.Options) (*Broker, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Config.ShutdownDelay == config.DefaultShutdownDelay {
		opts.Config.ShutdownDelay = 0 // unless the test set a delay
	}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, opts)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("brokertest: app.New: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	grpcAddr := a.Server.GRPCAddr().String()
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		cancel()
		<-done
		return nil, fmt.Errorf("brokertest: grpc.NewClient: %w", err)
	}
	b := &Broker{
		App:      a,
		Sim:      sim,
		GRPCAddr: grpcAddr,
		HTTP:     "http://" + a.Server.HTTPAddr().String(),
		Conn:     conn,
		Client:   tokenbrokerv1.NewTokenServiceClient(conn),
	}
	b.stop = sync.OnceValue(func() error {
		conn.Close()
		cancel()
		timer := time.NewTimer(brokerStopTimeout)
		defer timer.Stop()
		select {
		case <-done:
			return nil
		case <-timer.C:
			return errors.New("brokertest: the broker did not stop within 20s")
		}
	})
	return b, nil
}

// Stop stops the broker and waits for it, 20 s at most; later calls
// return the first one's result. It is for Launch's callers;
// StartBroker's brokers stop with the test.
func (b *Broker) Stop() error { return b.stop() }
