package test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"

	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
	"github.com/tokenbroker/tokenbroker/testkit/brokertest"
)

// proc is one server process that can be stopped and started again on the
// same addresses with the same configuration file (a rolling restart).
type proc struct {
	*brokertest.Server
}

// newProc writes yaml ({grpc} and {http} replaced by two free ports) to a
// config file; start runs it. The process is killed when the test ends.
func newProc(t *testing.T, bin, yaml string) *proc {
	t.Helper()
	return &proc{brokertest.NewServer(t, brokertest.ServerOptions{Bin: bin, YAML: yaml, LogLevel: "info", KillAtEnd: true})}
}

// start runs the process and waits until its /readyz says 200.
func (p *proc) start() error {
	return p.Start(30*time.Second, brokertest.Holds(func() bool {
		code, _ := p.get("/readyz")
		return code == http.StatusOK
	}))
}

// get fetches path from the HTTP listener.
func (p *proc) get(path string) (int, string) {
	resp, err := probeClient.Get("http://" + p.HTTPAddr + path)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b)
}

// callerStats counts a group of callers' calls.
type callerStats struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	errs       []string
}

func (s *callerStats) record(err error) {
	if err == nil {
		s.ok.Add(1)
		return
	}
	s.failed.Add(1)
	s.mu.Lock()
	if len(s.errs) < 10 {
		s.errs = append(s.errs, time.Now().Format("15:04:05.000")+" "+err.Error())
	}
	s.mu.Unlock()
}

func (s *callerStats) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprintf("%d ok, %d failed %v", s.ok.Load(), s.failed.Load(), s.errs)
}

// callerGroup runs paced callers until stop; stop is idempotent and runs
// at the test's cleanup too.
type callerGroup struct {
	done chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

func startCallers(t testing.TB) *callerGroup {
	c := &callerGroup{done: make(chan struct{})}
	t.Cleanup(c.stop)
	return c
}

// run starts n callers of call, each pausing pace between calls (a steady
// load the two cores can carry beside three servers) and recording every
// outcome in stats.
func (c *callerGroup) run(n int, pace time.Duration, stats *callerStats, call func(i int) error) {
	for i := range n {
		c.wg.Go(func() {
			tick := time.NewTicker(pace)
			defer tick.Stop()
			for {
				select {
				case <-c.done:
					return
				case <-tick.C:
				}
				stats.record(call(i))
			}
		})
	}
}

// stop ends every caller and waits for them.
func (c *callerGroup) stop() {
	c.once.Do(func() {
		close(c.done)
		c.wg.Wait()
	})
}

// restCall is a GetToken over REST with a keep-alive client.
func restCall(ctx context.Context, client *http.Client, url, body string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("reading the answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"access_token"`) {
		return fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	return nil
}

// roundRobinConn is a gRPC client that knows every address and spreads
// calls over the ready ones (what a Go client dialing a headless Service
// with dns:/// and round_robin does).
func roundRobinConn(t *testing.T, addrs []string) *grpc.ClientConn {
	t.Helper()
	r := manual.NewBuilderWithScheme("fleet")
	state := resolver.State{}
	for _, a := range addrs {
		state.Addresses = append(state.Addresses, resolver.Address{Addr: a})
	}
	r.InitialState(state)
	conn, err := grpc.NewClient("fleet:///tokenbroker",
		grpc.WithResolvers(r),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// TestRollingRestartLosesNoCall restarts each of three replicas in turn
// under load: REST callers with keep-alive connections through an L4
// balancer that polls /readyz once a second, and gRPC callers with
// round_robin over the three addresses. Not one call may fail.
func TestRollingRestartLosesNoCall(t *testing.T) {
	bin := brokertest.ServerBinary(t)
	sim := brokertest.StartSim(t)
	const delay = 3 * time.Second // the balancer polls every second
	yaml := `grpc_addr: 127.0.0.1:{grpc}
http_addr: 127.0.0.1:{http}
shutdown_delay: ` + delay.String() + `
vendors:
  smartdocumentor:
    token_url: ` + sim.URL() + `/smartdocumentor/connect/token
` + sdProfile
	procs := make([]*proc, fleetReplicas)
	var grpcAddrs, httpAddrs, readyURLs []string
	for i := range procs {
		procs[i] = newProc(t, bin, yaml)
		grpcAddrs = append(grpcAddrs, procs[i].GRPCAddr)
		httpAddrs = append(httpAddrs, procs[i].HTTPAddr)
		readyURLs = append(readyURLs, "http://"+procs[i].HTTPAddr+"/readyz")
	}
	var wg sync.WaitGroup
	errs := make([]error, len(procs))
	for i, p := range procs {
		wg.Go(func() { errs[i] = p.start() })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	lb := startBalancer(t, httpAddrs, readyURLs)

	const restCallers, grpcCallers = 8, 8
	pace := 10 * time.Millisecond
	restClient := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: restCallers, IdleConnTimeout: time.Minute}}
	t.Cleanup(restClient.CloseIdleConnections)
	url, body := "http://"+lb.addr()+"/v1/token", `{"profile":"acme-sd"}`
	clients := make([]tokenbrokerv1.TokenServiceClient, grpcCallers)
	for i := range clients {
		clients[i] = tokenbrokerv1.NewTokenServiceClient(roundRobinConn(t, grpcAddrs))
	}
	ctx := context.Background()
	callers := startCallers(t)
	var rest, rpc callerStats
	callers.run(restCallers, pace, &rest, func(int) error { return restCall(ctx, restClient, url, body) })
	callers.run(grpcCallers, pace, &rpc, func(i int) error {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_, err := clients[i].GetToken(cctx, &tokenbrokerv1.GetTokenRequest{Profile: "acme-sd"})
		return err
	})

	if brokertest.Poll(30*time.Second, brokertest.Holds(func() bool { return rest.ok.Load() >= 100 && rpc.ok.Load() >= 100 })) != nil {
		t.Fatalf("callers do not get going: REST %s; gRPC %s", &rest, &rpc)
	}
	for i, p := range procs {
		took, err := p.Terminate(delay + 20*time.Second)
		if err != nil {
			t.Fatalf("replica %d: %v", i, err)
		}
		if took < delay {
			t.Errorf("replica %d exited %v after SIGTERM, before shutdown_delay %v", i, took, delay)
		}
		if err := p.start(); err != nil {
			t.Fatalf("replica %d restart: %v", i, err)
		}
		if brokertest.Poll(10*time.Second, brokertest.Holds(func() bool { return lb.isReady(i) })) != nil {
			t.Fatalf("the balancer does not see replica %d ready again", i)
		}
		t.Logf("replica %d restarted (exit %v after SIGTERM): REST %d ok, %d failed; gRPC %d ok, %d failed",
			i, took.Round(time.Millisecond), rest.ok.Load(), rest.failed.Load(), rpc.ok.Load(), rpc.failed.Load())
	}
	// Calls keep succeeding after the last restart.
	okBefore := rest.ok.Load() + rpc.ok.Load()
	if brokertest.Poll(10*time.Second, brokertest.Holds(func() bool { return rest.ok.Load()+rpc.ok.Load() >= okBefore+100 })) != nil {
		t.Fatal("calls stalled after the last restart")
	}
	callers.stop()
	t.Logf("rolling restart of %d replicas: REST %s; gRPC %s; balancer refused %d connections", len(procs), &rest, &rpc, lb.refused.Load())
	if rest.failed.Load() != 0 || rpc.failed.Load() != 0 {
		t.Fatalf("failed calls: REST %s; gRPC %s", &rest, &rpc)
	}
}
