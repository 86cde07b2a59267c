package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
	"github.com/tokenbroker/tokenbroker/store"
	"github.com/tokenbroker/tokenbroker/vendorsim"
)

// FleetTen is how the fleet's cost grows with replicas: ten broker
// processes on one Redis, counted from the vendor simulator and from
// Redis's own INFO (commandstats, stats, clients). Counts move little with
// the machine's load; the latencies here (waiter lag) are for a quiet
// machine.
type FleetTen struct {
	Replicas      int    `json:"replicas"`
	VendorLatency string `json:"vendor_latency"`
	// Cold callers for one token, spread over the replicas, all at once.
	ColdCallers        int              `json:"cold_callers"`
	ColdUpstream       int              `json:"cold_upstream_requests"`
	ColdRedisCommands  map[string]int64 `json:"cold_redis_commands"`
	ColdErrors         int64            `json:"cold_errors"`
	ColdCommandsPerRep float64          `json:"cold_commands_per_replica"`
	// Distinct cold credential sets, spread over the replicas, at once.
	Sets              int              `json:"sets"`
	SetsUpstream      int              `json:"sets_upstream_requests"`
	SetsRedisCommands map[string]int64 `json:"sets_redis_commands"`
	SetsErrors        int64            `json:"sets_errors"`
	// One cold fetch alone (one caller, one replica), per fetch, over
	// SoloFetches keys; and the same with one waiter on each other replica.
	SoloFetches              int              `json:"solo_fetches"`
	SoloCommandsPerFetch     map[string]int64 `json:"solo_commands"`
	WaitedCommandsPerFetch   map[string]int64 `json:"waited_commands"`
	SoloTrace                []string         `json:"solo_trace"`
	WaitedTrace              []string         `json:"waited_trace"`
	CachedCalls              int64            `json:"cached_calls"`
	CachedSeconds            float64          `json:"cached_seconds"`
	CachedRedisCommands      map[string]int64 `json:"cached_redis_commands"`
	Invalidations            int              `json:"invalidations"`
	InvalidationSubscribers  int64            `json:"invalidation_subscribers"`
	InvalidationCommands     map[string]int64 `json:"invalidation_commands"`
	InvalidationOutBytes     float64          `json:"invalidation_out_bytes"`
	InvalidationMessageBytes int              `json:"invalidation_message_bytes"`
	// Redis connections the ten replicas hold after the run (pools fill
	// on demand, up to redisstore.PoolSize each).
	RedisClients int64 `json:"redis_clients"`
	// Waiter lag with ten replicas: holder on replica 0, waiters on the
	// other nine (a latency: for a quiet machine).
	WaiterLagP50Ms float64 `json:"waiter_lag_p50_ms"`
	WaiterLagP99Ms float64 `json:"waiter_lag_p99_ms"`
	WaiterLagMaxMs float64 `json:"waiter_lag_max_ms"`
	WaiterRounds   int     `json:"waiter_rounds"`
	// Summed over the ten from /metrics after each step: failed Redis
	// commands, commands the open breaker refused, breaker openings. Counts
	// taken with these above zero were partly served without Redis.
	RedisTrouble []StepTrouble `json:"redis_trouble"`
}

// StepTrouble is the fleet's Redis failures after one step.
type StepTrouble struct {
	Step         string  `json:"step"`
	Errors       float64 `json:"redis_errors"`
	Skipped      float64 `json:"redis_skipped"`
	BreakerOpens float64 `json:"breaker_opens"`
}

const (
	fleetTenReplicas    = 10
	fleetTenCold        = 1000
	fleetTenSets        = 200
	fleetTenSolo        = 20
	fleetTenCached      = 20_000
	fleetTenInvalidates = 20
	fleetTenLagRounds   = 10
	fleetTenLatency     = 100 * time.Millisecond
)

// tenVendor is the vendor of every FleetOfTen token.
const tenVendor = "smartdocumentor"

// FleetOfTen runs ten broker processes on the Redis at redisAddr: one
// fleet, then each step on it in turn, with the fleet's Redis trouble read
// after each.
func FleetOfTen(ctx context.Context, redisAddr string) (FleetTen, error) {
	f := FleetTen{Replicas: fleetTenReplicas, VendorLatency: fleetTenLatency.String(), ColdCallers: fleetTenCold,
		Sets: fleetTenSets, SoloFetches: fleetTenSolo, Invalidations: fleetTenInvalidates, WaiterRounds: fleetTenLagRounds}
	t, err := startTenFleet(ctx, redisAddr)
	if err != nil {
		return f, err
	}
	defer t.close()
	for _, step := range []struct {
		name string
		run  func(context.Context, *FleetTen) error
	}{
		{"cold callers", t.coldCallers},
		{"cold sets", t.coldSets},
		{"single fetches", t.singleFetches},
		{"cached calls", t.cachedCalls},
		{"invalidations", t.invalidations},
		{"waiter lag", t.waiterLag},
	} {
		if err := step.run(ctx, &f); err != nil {
			return f, err
		}
		f.RedisTrouble = append(f.RedisTrouble, fleetTrouble(ctx, step.name, t.httpAddrs))
	}
	info, err := t.rc.Info(ctx, "clients").Result()
	if err != nil {
		return f, err
	}
	f.RedisClients = infoInt(info, "connected_clients") - 1 // not this one
	return f, nil
}

// tenFleet is what FleetOfTen's steps run on: the simulator with every
// step's accounts, the ten replicas (a gRPC client and the HTTP address
// of each) and a Redis client for Redis's counters.
type tenFleet struct {
	redisAddr string
	sim       *vendorsim.Sim
	clients   []tokenbrokerv1.TokenServiceClient
	httpAddrs []string
	stop      func()
	rc        *redis.Client
	stats     *redisStats
}

// startTenFleet starts the simulator and the replicas; close stops them.
func startTenFleet(ctx context.Context, redisAddr string) (*tenFleet, error) {
	sim, err := vendorsim.Start("127.0.0.1:0", vendorsim.WithLatency(fleetTenLatency))
	if err != nil {
		return nil, err
	}
	addTenAccounts(sim)
	yaml := fmt.Sprintf(`
grpc_addr: 127.0.0.1:0
http_addr: 127.0.0.1:0
%s
vendors:
  smartdocumentor:
    token_url: %s/smartdocumentor/connect/token
`, redisCacheYAML(redisAddr, cacheKeyB64(), true), sim.URL())
	clients, httpAddrs, stop, err := startChildren(ctx, fleetTenReplicas, yaml)
	if err != nil {
		sim.Close()
		return nil, err
	}
	rc := redis.NewClient(&redis.Options{Addr: redisAddr})
	return &tenFleet{redisAddr: redisAddr, sim: sim, clients: clients, httpAddrs: httpAddrs, stop: stop, rc: rc, stats: &redisStats{rc: rc}}, nil
}

// addTenAccounts gives each step keys of its own: cold (the cold callers,
// then the cached calls), set-N, solo-N (alone, then waited), inval-N and
// lag10-N.
func addTenAccounts(sim *vendorsim.Sim) {
	sim.AddAccount(tenVendor, account("cold"))
	for i := range fleetTenSets {
		sim.AddAccount(tenVendor, account(fmt.Sprintf("set-%d", i)))
	}
	for i := range 2 * fleetTenSolo {
		sim.AddAccount(tenVendor, account(fmt.Sprintf("solo-%d", i)))
	}
	for i := range fleetTenInvalidates {
		sim.AddAccount(tenVendor, account(fmt.Sprintf("inval-%d", i)))
	}
	for i := range fleetTenLagRounds {
		sim.AddAccount(tenVendor, account(fmt.Sprintf("lag10-%d", i)))
	}
}

func (t *tenFleet) close() {
	_ = t.rc.Close()
	t.stop()
	t.sim.Close()
}

// call is one GetToken of the account id on replica i (modulo the fleet).
func (t *tenFleet) call(ctx context.Context, i int, id string) error {
	_, err := t.clients[i%len(t.clients)].GetToken(ctx, inline(tenVendor, id))
	return err
}

// coldCallers: fleetTenCold callers for one token, spread over the
// replicas, all at once.
func (t *tenFleet) coldCallers(ctx context.Context, f *FleetTen) error {
	if err := t.stats.reset(ctx); err != nil {
		return err
	}
	before := t.sim.Requests(tenVendor)
	f.ColdErrors = callAtOnce(ctx, fleetTenCold, func(ctx context.Context, i int) error {
		return t.call(ctx, i, "cold")
	})
	f.ColdUpstream = t.sim.Requests(tenVendor) - before
	var err error
	if f.ColdRedisCommands, err = t.stats.commands(ctx); err != nil {
		return err
	}
	f.ColdCommandsPerRep = float64(total(f.ColdRedisCommands)) / float64(fleetTenReplicas)
	return nil
}

// coldSets: fleetTenSets cold credential sets at once.
func (t *tenFleet) coldSets(ctx context.Context, f *FleetTen) error {
	if err := t.stats.reset(ctx); err != nil {
		return err
	}
	before := t.sim.Requests(tenVendor)
	f.SetsErrors = callAtOnce(ctx, fleetTenSets, func(ctx context.Context, i int) error {
		return t.call(ctx, i, fmt.Sprintf("set-%d", i))
	})
	f.SetsUpstream = t.sim.Requests(tenVendor) - before
	var err error
	f.SetsRedisCommands, err = t.stats.commands(ctx)
	return err
}

// singleFetches: one cold fetch alone, then with a waiter on each other
// replica; the first of each traced with MONITOR.
func (t *tenFleet) singleFetches(ctx context.Context, f *FleetTen) error {
	var err error
	if f.SoloCommandsPerFetch, f.SoloTrace, err = perFetch(ctx, t.stats, t.redisAddr, fleetTenSolo, func(ctx context.Context, i int) error {
		return t.call(ctx, 0, fmt.Sprintf("solo-%d", i))
	}); err != nil {
		return fmt.Errorf("solo fetches: %w", err)
	}
	if f.WaitedCommandsPerFetch, f.WaitedTrace, err = perFetch(ctx, t.stats, t.redisAddr, fleetTenSolo, func(ctx context.Context, i int) error {
		_, _, err := holderAndWaitersN(ctx, t.sim, tenVendor, t.clients[0], t.clients[1:], inline(tenVendor, fmt.Sprintf("solo-%d", fleetTenSolo+i)), len(t.clients)-1)
		return err
	}); err != nil {
		return fmt.Errorf("waited fetches: %w", err)
	}
	return nil
}

// cachedCalls: fleetTenCached calls of the cold token, which every replica
// has in L1.
func (t *tenFleet) cachedCalls(ctx context.Context, f *FleetTen) error {
	if err := t.stats.reset(ctx); err != nil {
		return err
	}
	var next atomic.Int64
	start := time.Now()
	st := Load(ctx, 16, time.Minute, fleetTenCached, func(ctx context.Context) error {
		return t.call(ctx, int(next.Add(1)), "cold")
	})
	f.CachedSeconds = time.Since(start).Seconds()
	f.CachedCalls = st.Requests
	if st.Errors > 0 {
		return fmt.Errorf("cached calls: %d errors (%s)", st.Errors, st.FirstError)
	}
	var err error
	f.CachedRedisCommands, err = t.stats.commands(ctx)
	return err
}

// invalidations: fleetTenInvalidates tokens, each cached on every replica
// and invalidated on one; Redis's commands and output bytes per
// invalidation.
func (t *tenFleet) invalidations(ctx context.Context, f *FleetTen) error {
	var err error
	if f.InvalidationSubscribers, err = subscribers(ctx, t.rc, store.InvalidationChannel); err != nil {
		return err
	}
	var outBytes int64
	invalCommands := map[string]int64{}
	var key string
	for i := range fleetTenInvalidates {
		cmds, out, err := t.invalidateOne(ctx, fmt.Sprintf("inval-%d", i), &key)
		if err != nil {
			return err
		}
		outBytes += out
		for k, v := range cmds {
			invalCommands[k] += v
		}
	}
	f.InvalidationCommands = divide(invalCommands, fleetTenInvalidates)
	f.InvalidationOutBytes = float64(outBytes) / fleetTenInvalidates
	f.InvalidationMessageBytes = messageBytes(store.InvalidationChannel, "0123456789abcdef "+key)
	return nil
}

// invalidateOne caches the account id's token on every replica, then
// invalidates it on replica 0 and returns the Redis commands and output
// bytes that cost. key, while empty, is set to a token key of Redis's.
func (t *tenFleet) invalidateOne(ctx context.Context, id string, key *string) (map[string]int64, int64, error) {
	r := inline(tenVendor, id)
	var token string
	for _, c := range t.clients {
		resp, err := c.GetToken(ctx, r)
		if err != nil {
			return nil, 0, fmt.Errorf("invalidation: %w", err)
		}
		token = resp.AccessToken
	}
	if *key == "" {
		if keys, err := t.rc.Keys(ctx, store.TokenKeyPattern).Result(); err == nil && len(keys) > 0 {
			*key = keys[0]
		}
	}
	if err := t.stats.reset(ctx); err != nil {
		return nil, 0, err
	}
	resp, err := t.clients[0].InvalidateToken(ctx, &tokenbrokerv1.InvalidateTokenRequest{Vendor: tenVendor, Credentials: r.Credentials, AccessToken: token})
	if err != nil || !resp.Invalidated {
		return nil, 0, fmt.Errorf("invalidation: %v (invalidated %v)", err, resp.GetInvalidated())
	}
	// Let the messages reach the subscribers before reading the bytes.
	time.Sleep(20 * time.Millisecond)
	return t.stats.commandsAndOutput(ctx)
}

// waiterLag: the holder's caller on replica 0, 90 waiters on the nine
// others, over fleetTenLagRounds cold keys.
func (t *tenFleet) waiterLag(ctx context.Context, f *FleetTen) error {
	var lags []time.Duration
	for round := range fleetTenLagRounds {
		holder, waiters, err := holderAndWaitersN(ctx, t.sim, tenVendor, t.clients[0], t.clients[1:], inline(tenVendor, fmt.Sprintf("lag10-%d", round)), 90)
		if err != nil {
			return fmt.Errorf("waiter lag: %w", err)
		}
		for _, w := range waiters {
			lags = append(lags, w.Sub(holder))
		}
	}
	slices.Sort(lags)
	f.WaiterLagP50Ms, f.WaiterLagP99Ms, f.WaiterLagMaxMs = ms(percentile(lags, 0.5)), ms(percentile(lags, 0.99)), ms(lags[len(lags)-1])
	return nil
}

// startChildren starts n broker processes from yaml and returns a gRPC
// client of each; stop stops them all.
func startChildren(ctx context.Context, n int, yaml string) ([]tokenbrokerv1.TokenServiceClient, []string, func(), error) {
	var stops []func()
	stop := func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	clients := make([]tokenbrokerv1.TokenServiceClient, 0, n)
	var httpAddrs []string
	for range n {
		ch, err := startMemoryChild(ctx, yaml)
		if err != nil {
			stop()
			return nil, nil, nil, err
		}
		stops = append(stops, ch.stop)
		conn, err := dial(ch.grpcAddr)
		if err != nil {
			stop()
			return nil, nil, nil, err
		}
		stops = append(stops, func() { conn.Close() })
		clients = append(clients, tokenbrokerv1.NewTokenServiceClient(conn))
		httpAddrs = append(httpAddrs, ch.httpAddr)
	}
	return clients, httpAddrs, stop, nil
}

// callAtOnce runs n calls of op at once (each in its own goroutine, all
// released together, each bounded to a minute) and counts the failures.
func callAtOnce(ctx context.Context, n int, op func(ctx context.Context, i int) error) int64 {
	var failed atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			cctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			if op(cctx, i) != nil {
				failed.Add(1)
			}
		}()
	}
	close(start)
	wg.Wait()
	return failed.Load()
}

// perFetch runs op(i) for n keys one after the other and returns the
// Redis commands per call of op; the first call is traced with MONITOR.
func perFetch(ctx context.Context, stats *redisStats, redisAddr string, n int, op func(ctx context.Context, i int) error) (map[string]int64, []string, error) {
	if err := stats.reset(ctx); err != nil {
		return nil, nil, err
	}
	mon, err := startMonitor(redisAddr)
	if err != nil {
		return nil, nil, err
	}
	err = op(ctx, 0)
	time.Sleep(50 * time.Millisecond) // the last commands of the release
	trace := mon.stop()
	if err != nil {
		return nil, nil, err
	}
	for i := 1; i < n; i++ {
		if err := op(ctx, i); err != nil {
			return nil, nil, err
		}
	}
	time.Sleep(50 * time.Millisecond)
	cmds, err := stats.commands(ctx)
	if err != nil {
		return nil, nil, err
	}
	delete(cmds, "monitor")
	return divide(cmds, n), trace, nil
}

// fleetTrouble sums the replicas' Redis failure counters (cumulative).
func fleetTrouble(ctx context.Context, step string, httpAddrs []string) StepTrouble {
	t := StepTrouble{Step: step}
	for _, addr := range httpAddrs {
		m := scrape(ctx, "http://"+addr+"/metrics")
		t.Errors += m["tokenbroker_redis_errors_total"]
		t.Skipped += m["tokenbroker_redis_skipped_total"]
		t.BreakerOpens += m["tokenbroker_redis_breaker_opens_total"]
	}
	return t
}

// scrape reads the unlabelled samples of a Prometheus text page (at most
// 4 MiB, within 5 s); nothing on failure.
func scrape(ctx context.Context, url string) map[string]float64 {
	out := map[string]float64{}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return out
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 4<<20))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") || strings.Contains(name, "{") {
			continue
		}
		if v, err := strconv.ParseFloat(value, 64); err == nil {
			out[name] = v
		}
	}
	return out
}

// monitorKey is how a trace line names a key: its hash tag, which differs
// per token, as {key}; the rest (":token", ":lock", ...) kept.
func monitorKey(key string) string {
	if i := strings.LastIndex(key, "}"); i >= 0 {
		return "{key}" + key[i+1:]
	}
	return key
}
