package bench

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"

	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
)

// benchEnv starts an Env (closed with the benchmark) with the hot-path
// token cached, and returns the broker's answer for it.
func benchEnv(b *testing.B) (*Env, *tokenbrokerv1.GetTokenResponse) {
	b.Helper()
	ctx := context.Background()
	env, err := NewEnv(ctx, "")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(env.Close)
	resp, err := env.cachedResponse(ctx)
	if err != nil {
		b.Fatal(err)
	}
	return env, resp
}

// BenchmarkRoundTrip is one gRPC GetToken of a cached token, broker and
// bare echo side by side, client and server in this process: the
// allocations per call are the whole round trip's, so the difference
// between the two is what the broker adds.
//
//	go test -run '^$' -bench RoundTrip -benchmem ./testkit/bench/
func BenchmarkRoundTrip(b *testing.B) {
	ctx := context.Background()
	env, resp := benchEnv(b)
	conn, err := dial(env.Broker.Server.GRPCAddr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	broker := tokenbrokerv1.NewTokenServiceClient(conn)
	echo, stopEcho, err := startBareEcho(resp)
	if err != nil {
		b.Fatal(err)
	}
	defer stopEcho()
	req := HotPathRequest()
	for _, c := range []struct {
		name   string
		client tokenbrokerv1.TokenServiceClient
	}{{"broker", broker}, {"echo", echo}} {
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

// BenchmarkRESTRoundTrip is BenchmarkRoundTrip over REST: POST /v1/token
// to the broker and to an echo behind the same server package, one call
// in flight.
//
//	go test -run '^$' -bench RESTRoundTrip -benchmem ./testkit/bench/
func BenchmarkRESTRoundTrip(b *testing.B) {
	ctx := context.Background()
	env, resp := benchEnv(b)
	echoBase, stopEcho, err := startGatewayEcho(ctx, resp, env.log)
	if err != nil {
		b.Fatal(err)
	}
	defer stopEcho()
	client := &http.Client{}
	defer client.CloseIdleConnections()
	body := []byte(`{"profile":"bench","min_ttl":"0s"}`)
	for _, c := range []struct{ name, base string }{
		{"broker", "http://" + env.Broker.Server.HTTPAddr().String()},
		{"echo", echoBase},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				r, err := client.Post(c.base+"/v1/token", "application/json", bytes.NewReader(body))
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, r.Body)
				r.Body.Close()
				if r.StatusCode != http.StatusOK {
					b.Fatalf("status %d", r.StatusCode)
				}
			}
		})
	}
}

// BenchmarkRedisRoundTrip is BenchmarkRoundTrip on the Redis-only path,
// one call in flight: the broker with its in-process cache disabled
// (every call one GET and one open of the sealed value) and the echo
// doing the same GET, so the difference in allocations is what the
// broker's read of the shared level adds. Needs redis-server.
//
//	go test -run '^$' -bench RedisRoundTrip -benchmem ./testkit/bench/
func BenchmarkRedisRoundTrip(b *testing.B) {
	ctx := context.Background()
	env, _ := benchEnv(b)
	redis, err := StartRedis()
	if err != nil {
		b.Fatal(err)
	}
	defer redis.Stop()
	broker, stopBroker, err := env.brokerClient(ctx, redisCacheYAML(redis.Addr, cacheKeyB64(), false))
	if err != nil {
		b.Fatal(err)
	}
	defer stopBroker()
	resp, err := warmResponse(ctx, broker)
	if err != nil {
		b.Fatal(err)
	}
	floorAddr, stopFloor, err := startEchoWithGet(ctx, redis.Addr, resp)
	if err != nil {
		b.Fatal(err)
	}
	defer stopFloor()
	conn, err := dial(floorAddr)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	req := HotPathRequest()
	for _, c := range []struct {
		name   string
		client tokenbrokerv1.TokenServiceClient
	}{{"broker", broker}, {"echo+GET", tokenbrokerv1.NewTokenServiceClient(conn)}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.client.GetToken(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
