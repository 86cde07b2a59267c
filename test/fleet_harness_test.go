package test

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
	"github.com/tokenbroker/tokenbroker/testkit/brokertest"
	"github.com/tokenbroker/tokenbroker/vendorsim"
)

// Fleet tests run the real server binary, several replicas sharing one
// Redis, behind a client that spreads calls over them as a load balancer
// would.

// replica is one server process and a client of it.
type replica struct {
	*brokertest.Server
	client tokenbrokerv1.TokenServiceClient
}

// fleet is n replicas of the broker and the simulator they call.
type fleet struct {
	sim      *vendorsim.Sim
	replicas []*replica
}

// client returns the client of replica i mod n: callers spread over them.
func (f *fleet) client(i int) tokenbrokerv1.TokenServiceClient {
	return f.replicas[i%len(f.replicas)].client
}

// fleetYAML is each replica's config; {grpc} and {http} are its ports.
func fleetYAML(sim *vendorsim.Sim, cache, extra string) string {
	return `grpc_addr: 127.0.0.1:{grpc}
http_addr: 127.0.0.1:{http}
shutdown_delay: 0s
` + cache + `vendors:
  smartdocumentor:
    token_url: ` + sim.URL() + `/smartdocumentor/connect/token
` + sdProfile + extra
}

// startFleet starts n replicas of bin with config yaml, waits until each
// answers, and stops them in t.Cleanup.
func startFleet(t *testing.T, bin string, sim *vendorsim.Sim, n int, yaml string) *fleet {
	t.Helper()
	yamls := make([]string, n)
	for i := range yamls {
		yamls[i] = yaml
	}
	return startMixedFleet(t, bin, sim, yamls)
}

// startMixedFleet starts one replica per configuration.
func startMixedFleet(t *testing.T, bin string, sim *vendorsim.Sim, yamls []string) *fleet {
	t.Helper()
	n := len(yamls)
	f := &fleet{sim: sim}
	var wg sync.WaitGroup
	f.replicas = make([]*replica, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A port found free may be taken before the server binds it.
			for range 3 {
				var r *replica
				if r, errs[i] = startReplica(t, bin, i, yamls[i]); errs[i] == nil {
					f.replicas[i] = r
					return
				}
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("replica %d: %v", i, err)
		}
	}
	return f
}

func startReplica(t *testing.T, bin string, i int, yaml string) (*replica, error) {
	r := &replica{Server: brokertest.NewServer(t, brokertest.ServerOptions{Name: fmt.Sprintf("replica %d", i), Bin: bin, YAML: yaml})}
	conn, err := grpc.NewClient(r.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { conn.Close() })
	r.client = tokenbrokerv1.NewTokenServiceClient(conn)
	if err := r.Start(20*time.Second, brokertest.AnswersGRPC(r.client)); err != nil {
		return nil, err
	}
	return r, nil
}

// percentile returns the p-th percentile (0..100) of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p / 100)
	return s[i]
}
