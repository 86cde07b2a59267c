package bench

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"

	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
	"github.com/tokenbroker/tokenbroker/store"
	"github.com/tokenbroker/tokenbroker/store/redisstore"
)

// brokerClient starts a broker from extra YAML on the env's simulator and
// returns a gRPC client for it.
func (e *Env) brokerClient(ctx context.Context, extra string) (tokenbrokerv1.TokenServiceClient, func(), error) {
	cfg, err := brokerConfig(e.Sim, extra)
	if err != nil {
		return nil, nil, err
	}
	b, err := startApp(ctx, cfg, e.log)
	if err != nil {
		return nil, nil, err
	}
	conn, err := dial(b.app.Server.GRPCAddr().String())
	if err != nil {
		b.stop()
		return nil, nil, err
	}
	return tokenbrokerv1.NewTokenServiceClient(conn), func() { conn.Close(); b.stop() }, nil
}

// compareWithEcho measures GetToken on client against a bare echo of its
// own cached answer.
func compareWithEcho(ctx context.Context, name, goal string, client tokenbrokerv1.TokenServiceClient, concurrency, rounds int, roundTime time.Duration) (Comparison, error) {
	resp, err := warmResponse(ctx, client)
	if err != nil {
		return Comparison{}, err
	}
	echo, stopEcho, err := startBareEcho(resp)
	if err != nil {
		return Comparison{}, err
	}
	defer stopEcho()
	c := Compare(ctx, name, concurrency, rounds, roundTime, getToken(client), getToken(echo))
	c.Goal = goal
	return c, nil
}

// getToken is the load operation of the gRPC comparisons: the hot-path
// request, and an answer that must carry a token.
func getToken(c tokenbrokerv1.TokenServiceClient) func(context.Context) error {
	req := HotPathRequest()
	return func(ctx context.Context) error {
		r, err := c.GetToken(ctx, req)
		if err == nil && r.AccessToken == "" {
			return fmt.Errorf("empty token")
		}
		return err
	}
}

// EchoVsEcho compares two identical bare echo servers: the comparison
// method's own bias and noise on this machine (ideally 1.00x).
func (e *Env) EchoVsEcho(ctx context.Context, concurrency, rounds int, roundTime time.Duration) (Comparison, error) {
	resp, err := e.cachedResponse(ctx)
	if err != nil {
		return Comparison{}, err
	}
	var clients [2]tokenbrokerv1.TokenServiceClient
	for i := range clients {
		c, stop, err := startBareEcho(resp)
		if err != nil {
			return Comparison{}, err
		}
		defer stop()
		clients[i] = c
	}
	c := Compare(ctx, "A/A: bare echo vs bare echo", concurrency, rounds, roundTime, getToken(clients[0]), getToken(clients[1]))
	c.Goal = "(the method's bias: 1.00x)"
	return c, nil
}

// RedisOnlyPath compares a broker whose L1 is disabled (every GetToken reads
// and opens the sealed value in Redis) with the bare echo, and then with
// the floor of any such path: the bare echo doing one GET of a value of
// the same size from the same Redis, through a client with the broker's
// settings.
func (e *Env) RedisOnlyPath(ctx context.Context, redisAddr string, concurrency, rounds int, roundTime time.Duration) ([]Comparison, error) {
	client, stop, err := e.brokerClient(ctx, redisCacheYAML(redisAddr, cacheKeyB64(), false))
	if err != nil {
		return nil, err
	}
	defer stop()
	vsEcho, err := compareWithEcho(ctx, "gRPC GetToken, Redis only (no L1) vs echo", "QPS >= 0.8x", client, concurrency, rounds, roundTime)
	if err != nil {
		return nil, err
	}
	resp, err := warmResponse(ctx, client)
	if err != nil {
		return nil, err
	}
	floorAddr, stopFloor, err := startEchoWithGet(ctx, redisAddr, resp)
	if err != nil {
		return nil, err
	}
	defer stopFloor()
	fconn, err := dial(floorAddr)
	if err != nil {
		return nil, err
	}
	defer fconn.Close()
	floor := tokenbrokerv1.NewTokenServiceClient(fconn)
	vsFloor := Compare(ctx, "gRPC GetToken, Redis only (no L1) vs echo + 1 GET", concurrency, rounds, roundTime, getToken(client), getToken(floor))
	vsFloor.Goal = "(the floor of any Redis-only path)"
	return []Comparison{vsEcho, vsFloor}, nil
}

// startEchoWithGet serves echo on a bare grpc-go server whose every call
// first GETs a copy of the broker's sealed value from Redis.
func startEchoWithGet(ctx context.Context, redisAddr string, resp *tokenbrokerv1.GetTokenResponse) (addr string, stop func(), err error) {
	rc, err := redisstore.NewClient(redisstore.ClientConfig{Addrs: []string{redisAddr}})
	if err != nil {
		return "", nil, err
	}
	keys, err := rc.Keys(ctx, store.TokenKeyPattern).Result()
	if err != nil || len(keys) == 0 {
		rc.Close()
		return "", nil, fmt.Errorf("floor: no token in Redis to copy (%v)", err)
	}
	value, err := rc.Get(ctx, keys[0]).Bytes()
	if err != nil {
		rc.Close()
		return "", nil, err
	}
	const floorKey = "bench:floor"
	if err := rc.Set(ctx, floorKey, value, 0).Err(); err != nil {
		rc.Close()
		return "", nil, err
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		rc.Close()
		return "", nil, err
	}
	s := grpc.NewServer()
	tokenbrokerv1.RegisterTokenServiceServer(s, &echoGetService{rc: rc, key: floorKey, resp: resp})
	goAsSide(sideFloor, func() { _ = s.Serve(lis) })
	return lis.Addr().String(), func() { s.Stop(); rc.Close() }, nil
}

// echoGetService is echoService plus one Redis GET per call, with the
// broker's per-command timeout.
type echoGetService struct {
	tokenbrokerv1.UnimplementedTokenServiceServer
	rc   redis.UniversalClient
	key  string
	resp *tokenbrokerv1.GetTokenResponse
}

func (e *echoGetService) GetToken(ctx context.Context, _ *tokenbrokerv1.GetTokenRequest) (*tokenbrokerv1.GetTokenResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, redisstore.DefaultOpTimeout)
	defer cancel()
	if _, err := e.rc.Get(ctx, e.key).Bytes(); err != nil {
		return nil, err
	}
	return e.resp, nil
}

// Fleet is the economy of several replicas: upstream token requests.
type Fleet struct {
	Replicas        int     `json:"replicas"`
	ColdCallers     int     `json:"cold_callers"`
	ColdUpstream    int     `json:"cold_upstream_requests"`
	SoakSeconds     float64 `json:"soak_seconds"`
	TokenLifetime   string  `json:"token_lifetime"`
	SharedUpstream  int     `json:"shared_soak_upstream_requests"`
	SharedCalls     int64   `json:"shared_soak_calls"`
	SharedExpired   int64   `json:"shared_soak_expired_served"`
	SharedErrors    int64   `json:"shared_soak_errors"`
	AloneUpstream   int     `json:"alone_soak_upstream_requests"`
	AloneCalls      int64   `json:"alone_soak_calls"`
	AloneExpired    int64   `json:"alone_soak_expired_served"`
	AloneErrors     int64   `json:"alone_soak_errors"`
	SharedFirstErr  string  `json:"shared_first_error,omitempty"`
	AloneFirstError string  `json:"alone_first_error,omitempty"`
}

// soakResult counts one soak.
type soakResult struct {
	upstream int
	calls    int64
	expired  int64
	errors   int64
	firstErr string
}

// FleetEconomy runs replicas brokers on one Redis: cold callers, then a
// soak with short tokens; then the same soak with each replica caching
// alone (what services do without a shared broker).
func (e *Env) FleetEconomy(ctx context.Context, redisAddr string, replicas, coldCallers, concurrency int, soak, lifetime time.Duration) (Fleet, error) {
	f := Fleet{Replicas: replicas, ColdCallers: coldCallers, SoakSeconds: soak.Seconds(), TokenLifetime: lifetime.String()}
	key := cacheKeyB64()
	shared := redisCacheYAML(redisAddr, key, true)
	clients, stop, err := e.replicas(ctx, replicas, shared)
	if err != nil {
		return f, err
	}
	// Cold: coldCallers at once, spread over the replicas, for a profile
	// nobody fetched yet.
	e.Sim.SetTokenTTL("smartdocumentor", time.Hour)
	e.Sim.Reset()
	var wg sync.WaitGroup
	start := make(chan struct{})
	var coldErrs atomic.Int64
	for i := range coldCallers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if _, err := clients[i%replicas].GetToken(ctx, &tokenbrokerv1.GetTokenRequest{Profile: "fleet"}); err != nil {
				coldErrs.Add(1)
			}
		}()
	}
	close(start)
	wg.Wait()
	f.ColdUpstream = e.Sim.Requests("smartdocumentor")
	if coldErrs.Load() > 0 {
		stop()
		return f, fmt.Errorf("cold callers: %d errors", coldErrs.Load())
	}
	r := e.soak(ctx, clients, concurrency, soak, lifetime)
	stop()
	f.SharedUpstream, f.SharedCalls, f.SharedExpired, f.SharedErrors, f.SharedFirstErr = r.upstream, r.calls, r.expired, r.errors, r.firstErr

	alone, stopAlone, err := e.replicas(ctx, replicas, "")
	if err != nil {
		return f, err
	}
	r = e.soak(ctx, alone, concurrency, soak, lifetime)
	stopAlone()
	f.AloneUpstream, f.AloneCalls, f.AloneExpired, f.AloneErrors, f.AloneFirstError = r.upstream, r.calls, r.expired, r.errors, r.firstErr
	return f, nil
}

// replicas starts n brokers with the same extra config.
func (e *Env) replicas(ctx context.Context, n int, extra string) ([]tokenbrokerv1.TokenServiceClient, func(), error) {
	var clients []tokenbrokerv1.TokenServiceClient
	var stops []func()
	stopAll := func() {
		for _, s := range stops {
			s()
		}
	}
	for range n {
		c, stop, err := e.brokerClient(ctx, extra)
		if err != nil {
			stopAll()
			return nil, nil, err
		}
		clients = append(clients, c)
		stops = append(stops, stop)
	}
	return clients, stopAll, nil
}

// soak loads the replicas for d with tokens of the given lifetime and
// checks every token, as it arrives, against the simulator. Callers ask
// for min_ttl 1s, the slack a real caller needs to use a token; with
// min_ttl 0 a token with a millisecond left is a correct answer that can
// expire in transit.
func (e *Env) soak(ctx context.Context, clients []tokenbrokerv1.TokenServiceClient, concurrency int, d, lifetime time.Duration) soakResult {
	e.Sim.SetTokenTTL("smartdocumentor", lifetime)
	e.Sim.Reset()
	var expired, next atomic.Int64
	req := &tokenbrokerv1.GetTokenRequest{Profile: "soak", MinTtl: durationpb.New(time.Second)}
	st := Load(ctx, concurrency, d, 1<<40, func(ctx context.Context) error {
		c := clients[int(next.Add(1))%len(clients)]
		resp, err := c.GetToken(ctx, req)
		if err != nil {
			return err
		}
		if !e.Sim.ValidToken("smartdocumentor", resp.AccessToken) {
			expired.Add(1)
		}
		return nil
	})
	return soakResult{upstream: e.Sim.Requests("smartdocumentor"), calls: st.Requests, expired: expired.Load(), errors: st.Errors, firstErr: st.FirstError}
}

// Outage is the hot path's latency with Redis up, then frozen.
type Outage struct {
	Up        Stats         `json:"redis_up"`
	Frozen    Stats         `json:"redis_frozen"`
	AddedP99  time.Duration `json:"added_p99_ns"`
	Goal      string        `json:"goal"`
	Durations string        `json:"durations"`
}

// RedisDown measures the hot path (L1 on) with Redis answering, then with
// Redis frozen by SIGSTOP.
func (e *Env) RedisDown(ctx context.Context, concurrency int, d time.Duration) (Outage, error) {
	r, err := StartRedis()
	if err != nil {
		return Outage{}, err
	}
	defer r.Stop()
	client, stop, err := e.brokerClient(ctx, redisCacheYAML(r.Addr, cacheKeyB64(), true))
	if err != nil {
		return Outage{}, err
	}
	defer stop()
	if _, err := warmResponse(ctx, client); err != nil {
		return Outage{}, err
	}
	req := HotPathRequest()
	op := func(ctx context.Context) error { _, err := client.GetToken(ctx, req); return err }
	o := Outage{Goal: "< 5ms added p99", Durations: d.String() + " each"}
	o.Up = Load(ctx, concurrency, d, 1<<40, op)
	r.Freeze()
	o.Frozen = Load(ctx, concurrency, d, 1<<40, op)
	r.Thaw()
	o.AddedP99 = o.Frozen.P99 - o.Up.P99
	return o, nil
}

// Memory is the broker's footprint with many distinct cached tokens.
type Memory struct {
	Tokens        int     `json:"tokens"`
	HeapBeforeMB  float64 `json:"heap_before_mb"`
	HeapAfterMB   float64 `json:"heap_after_mb"`
	HeapPerToken  float64 `json:"heap_bytes_per_token"`
	RSSBeforeMB   float64 `json:"rss_before_mb"`
	RSSAfterMB    float64 `json:"rss_after_mb"`
	FillSeconds   float64 `json:"fill_seconds"`
	Goal          string  `json:"goal"`
	FillErrors    int64   `json:"fill_errors"`
	FillFirstErr  string  `json:"fill_first_error,omitempty"`
	GoMemLimitSet bool    `json:"go_mem_limit_set"`
}

// MemoryFootprint caches n distinct tokens (n inline credential sets of the
// generic vendor against a minimal token endpoint) in an in-memory broker
// running in a process of its own (this binary, re-executed), and measures
// that process's live heap and RSS before and after.
func MemoryFootprint(ctx context.Context, n int) (Memory, error) {
	m := Memory{Tokens: n, Goal: "<= 150 MB"}
	endpoint, stopEndpoint, err := startTokenEndpoint()
	if err != nil {
		return m, err
	}
	defer stopEndpoint()
	cfgYAML := fmt.Sprintf(`
grpc_addr: 127.0.0.1:0
http_addr: 127.0.0.1:0
cache:
  l1_max_entries: %d
vendors:
  oauth2:
    token_url: http://%s/token
`, n+1000, endpoint)

	child, err := startMemoryChild(ctx, cfgYAML)
	if err != nil {
		return m, err
	}
	defer child.stop()
	before, err := child.measure()
	if err != nil {
		return m, err
	}
	m.HeapBeforeMB, m.RSSBeforeMB, m.GoMemLimitSet = before.HeapMB, before.RSSMB, before.MemLimitSet
	conn, err := dial(child.grpcAddr)
	if err != nil {
		return m, err
	}
	defer conn.Close()
	start := time.Now()
	st := fillDistinct(ctx, tokenbrokerv1.NewTokenServiceClient(conn), n)
	m.FillSeconds = time.Since(start).Seconds()
	m.FillErrors, m.FillFirstErr = st.Errors, st.FirstError
	after, err := child.measure()
	if err != nil {
		return m, err
	}
	m.HeapAfterMB, m.RSSAfterMB = after.HeapMB, after.RSSMB
	if cached := st.Requests - st.Errors; cached > 0 {
		m.HeapPerToken = (m.HeapAfterMB - m.HeapBeforeMB) * (1 << 20) / float64(cached)
	}
	return m, nil
}

// startTokenEndpoint serves a minimal token endpoint on loopback that
// issues a new token of an hour to every request, and returns its address.
func startTokenEndpoint() (addr string, stop func(), err error) {
	var issued atomic.Int64
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	endpoint := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		i := issued.Add(1)
		w.Header().Set("Content-Type", "application/json")
		// A realistic opaque token: 43 characters, like 32 random bytes.
		fmt.Fprintf(w, `{"access_token":"tok-%038d","token_type":"bearer","expires_in":3600}`, i)
	})}
	go func() { _ = endpoint.Serve(lis) }()
	return lis.Addr().String(), func() { _ = endpoint.Close() }, nil
}

// fillDistinct asks client for n tokens of n distinct inline credential
// sets of the generic vendor, 32 at a time.
func fillDistinct(ctx context.Context, client tokenbrokerv1.TokenServiceClient, n int) Stats {
	var next atomic.Int64
	return Load(ctx, 32, 10*time.Minute, int64(n), func(ctx context.Context) error {
		i := next.Add(1)
		_, err := client.GetToken(ctx, &tokenbrokerv1.GetTokenRequest{Vendor: "oauth2", Credentials: map[string]string{
			"client_id":     "client-" + strconv.FormatInt(i, 10),
			"client_secret": "secret-0123456789abcdef0123456789abcdef-" + strconv.FormatInt(i, 10),
		}})
		return err
	})
}

func liveHeapMB() float64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return float64(ms.HeapAlloc) / (1 << 20)
}

func debugMemLimitSet() bool { return debug.SetMemoryLimit(-1) != 1<<63-1 }

// rssMB reads VmRSS from /proc/self/status (Linux); 0 elsewhere.
func rssMB() float64 {
	b, err := readFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			fields := strings.Fields(rest)
			if len(fields) > 0 {
				kb, _ := strconv.ParseFloat(fields[0], 64)
				return kb / 1024
			}
		}
	}
	return 0
}
