package bench

import (
	"context"
	"testing"

	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
)

// BenchmarkRoundTrip is one gRPC GetToken of a cached token, broker and
// bare echo side by side, client and server in this process: the
// allocations per call are the whole round trip's, so the difference
// between the two is what the broker adds.
//
//	go test -run '^$' -bench RoundTrip -benchmem ./internal/bench/
func BenchmarkRoundTrip(b *testing.B) {
	ctx := context.Background()
	env, err := NewEnv(ctx, "")
	if err != nil {
		b.Fatal(err)
	}
	defer env.Close()
	conn, err := dial(env.Broker.Server.GRPCAddr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	broker := tokenbrokerv1.NewTokenServiceClient(conn)
	resp, err := warmResponse(ctx, broker)
	if err != nil {
		b.Fatal(err)
	}
	echoAddr, stopEcho, err := startBareEcho(resp)
	if err != nil {
		b.Fatal(err)
	}
	defer stopEcho()
	econn, err := dial(echoAddr)
	if err != nil {
		b.Fatal(err)
	}
	defer econn.Close()
	req := HotPathRequest()
	for _, c := range []struct {
		name   string
		client tokenbrokerv1.TokenServiceClient
	}{{"broker", broker}, {"echo", tokenbrokerv1.NewTokenServiceClient(econn)}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(32) // 64 in flight on 2 CPUs, as in make bench
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := c.client.GetToken(ctx, req); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
