package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
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

// FleetOfTen runs ten broker processes on the Redis at redisAddr.
func FleetOfTen(ctx context.Context, redisAddr string) (FleetTen, error) {
	f := FleetTen{Replicas: fleetTenReplicas, VendorLatency: fleetTenLatency.String(), ColdCallers: fleetTenCold,
		Sets: fleetTenSets, SoloFetches: fleetTenSolo, Invalidations: fleetTenInvalidates, WaiterRounds: fleetTenLagRounds}
	sim, err := vendorsim.Start("127.0.0.1:0", vendorsim.WithLatency(fleetTenLatency))
	if err != nil {
		return f, err
	}
	defer sim.Close()
	const vendor = "smartdocumentor"
	account := func(id string) map[string]string { return map[string]string{"client_id": id, "client_secret": "s"} }
	sim.AddAccount(vendor, account("cold"))
	for i := range fleetTenSets {
		sim.AddAccount(vendor, account(fmt.Sprintf("set-%d", i)))
	}
	for i := range 2 * fleetTenSolo {
		sim.AddAccount(vendor, account(fmt.Sprintf("solo-%d", i)))
	}
	for i := range fleetTenInvalidates {
		sim.AddAccount(vendor, account(fmt.Sprintf("inval-%d", i)))
	}
	for i := range fleetTenLagRounds {
		sim.AddAccount(vendor, account(fmt.Sprintf("lag10-%d", i)))
	}
	req := func(id string) *tokenbrokerv1.GetTokenRequest {
		return &tokenbrokerv1.GetTokenRequest{Vendor: vendor, Credentials: account(id)}
	}
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
		return f, err
	}
	defer stop()
	rc := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rc.Close()
	stats := &redisStats{rc: rc}

	// 1,000 cold callers for one token.
	if err := stats.reset(ctx); err != nil {
		return f, err
	}
	before := sim.Requests(vendor)
	f.ColdErrors = callAtOnce(ctx, fleetTenCold, func(ctx context.Context, i int) error {
		_, err := clients[i%len(clients)].GetToken(ctx, req("cold"))
		return err
	})
	f.ColdUpstream = sim.Requests(vendor) - before
	if f.ColdRedisCommands, err = stats.commands(ctx); err != nil {
		return f, err
	}
	f.ColdCommandsPerRep = float64(total(f.ColdRedisCommands)) / float64(fleetTenReplicas)
	f.RedisTrouble = append(f.RedisTrouble, fleetTrouble(ctx, "cold callers", httpAddrs))

	// 200 cold credential sets at once.
	if err := stats.reset(ctx); err != nil {
		return f, err
	}
	before = sim.Requests(vendor)
	f.SetsErrors = callAtOnce(ctx, fleetTenSets, func(ctx context.Context, i int) error {
		_, err := clients[i%len(clients)].GetToken(ctx, req(fmt.Sprintf("set-%d", i)))
		return err
	})
	f.SetsUpstream = sim.Requests(vendor) - before
	if f.SetsRedisCommands, err = stats.commands(ctx); err != nil {
		return f, err
	}
	f.RedisTrouble = append(f.RedisTrouble, fleetTrouble(ctx, "cold sets", httpAddrs))

	// One cold fetch alone, then with a waiter on each other replica; the
	// first of each traced with MONITOR.
	if f.SoloCommandsPerFetch, f.SoloTrace, err = perFetch(ctx, stats, redisAddr, fleetTenSolo, func(ctx context.Context, i int) error {
		_, err := clients[0].GetToken(ctx, req(fmt.Sprintf("solo-%d", i)))
		return err
	}); err != nil {
		return f, fmt.Errorf("solo fetches: %w", err)
	}
	if f.WaitedCommandsPerFetch, f.WaitedTrace, err = perFetch(ctx, stats, redisAddr, fleetTenSolo, func(ctx context.Context, i int) error {
		_, _, err := holderAndWaitersN(ctx, sim, vendor, clients[0], clients[1:], req(fmt.Sprintf("solo-%d", fleetTenSolo+i)), len(clients)-1)
		return err
	}); err != nil {
		return f, fmt.Errorf("waited fetches: %w", err)
	}
	f.RedisTrouble = append(f.RedisTrouble, fleetTrouble(ctx, "single fetches", httpAddrs))

	// Cached calls: every replica has the cold token in L1.
	if err := stats.reset(ctx); err != nil {
		return f, err
	}
	var next atomic.Int64
	start := time.Now()
	st := Load(ctx, 16, time.Minute, fleetTenCached, func(ctx context.Context) error {
		_, err := clients[int(next.Add(1))%len(clients)].GetToken(ctx, req("cold"))
		return err
	})
	f.CachedSeconds = time.Since(start).Seconds()
	f.CachedCalls = st.Requests
	if st.Errors > 0 {
		return f, fmt.Errorf("cached calls: %d errors (%s)", st.Errors, st.FirstError)
	}
	if f.CachedRedisCommands, err = stats.commands(ctx); err != nil {
		return f, err
	}
	f.RedisTrouble = append(f.RedisTrouble, fleetTrouble(ctx, "cached calls", httpAddrs))

	// Invalidations: a token cached on every replica, invalidated on one.
	if f.InvalidationSubscribers, err = subscribers(ctx, rc, store.InvalidationChannel); err != nil {
		return f, err
	}
	var outBytes int64
	invalCommands := map[string]int64{}
	var key string
	for i := range fleetTenInvalidates {
		r := req(fmt.Sprintf("inval-%d", i))
		var token string
		for _, c := range clients {
			resp, err := c.GetToken(ctx, r)
			if err != nil {
				return f, fmt.Errorf("invalidation: %w", err)
			}
			token = resp.AccessToken
		}
		if key == "" {
			if keys, err := rc.Keys(ctx, store.TokenKeyPattern).Result(); err == nil && len(keys) > 0 {
				key = keys[0]
			}
		}
		if err := stats.reset(ctx); err != nil {
			return f, err
		}
		resp, err := clients[0].InvalidateToken(ctx, &tokenbrokerv1.InvalidateTokenRequest{Vendor: vendor, Credentials: r.Credentials, AccessToken: token})
		if err != nil || !resp.Invalidated {
			return f, fmt.Errorf("invalidation: %v (invalidated %v)", err, resp.GetInvalidated())
		}
		// Let the messages reach the subscribers before reading the bytes.
		time.Sleep(20 * time.Millisecond)
		cmds, out, err := stats.commandsAndOutput(ctx)
		if err != nil {
			return f, err
		}
		outBytes += out
		for k, v := range cmds {
			invalCommands[k] += v
		}
	}
	f.InvalidationCommands = divide(invalCommands, fleetTenInvalidates)
	f.InvalidationOutBytes = float64(outBytes) / fleetTenInvalidates
	f.InvalidationMessageBytes = messageBytes(store.InvalidationChannel, "0123456789abcdef "+key)
	f.RedisTrouble = append(f.RedisTrouble, fleetTrouble(ctx, "invalidations", httpAddrs))

	// Waiter lag with ten replicas.
	var lags []time.Duration
	for round := range fleetTenLagRounds {
		holder, waiters, err := holderAndWaitersN(ctx, sim, vendor, clients[0], clients[1:], req(fmt.Sprintf("lag10-%d", round)), 90)
		if err != nil {
			return f, fmt.Errorf("waiter lag: %w", err)
		}
		for _, w := range waiters {
			lags = append(lags, w.Sub(holder))
		}
	}
	slices.Sort(lags)
	f.WaiterLagP50Ms, f.WaiterLagP99Ms, f.WaiterLagMaxMs = ms(percentile(lags, 0.5)), ms(percentile(lags, 0.99)), ms(lags[len(lags)-1])
	f.RedisTrouble = append(f.RedisTrouble, fleetTrouble(ctx, "waiter lag", httpAddrs))
	info, err := rc.Info(ctx, "clients").Result()
	if err != nil {
		return f, err
	}
	f.RedisClients = infoInt(info, "connected_clients") - 1 // not this one
	return f, nil
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

// holderAndWaitersN is holderAndWaiters with waiters callers.
func holderAndWaitersN(ctx context.Context, sim *vendorsim.Sim, vendor string, holder tokenbrokerv1.TokenServiceClient, others []tokenbrokerv1.TokenServiceClient, req *tokenbrokerv1.GetTokenRequest, waiters int) (time.Time, []time.Time, error) {
	return waitOnHolder(ctx, sim, vendor, grpcCallers(holder, others), req, holderRound{waiters: waiters})
}

// redisStats reads Redis's own counters. The commands this reader sends
// (CONFIG, INFO) are left out of what it reports.
type redisStats struct{ rc *redis.Client }

func (s *redisStats) reset(ctx context.Context) error {
	return s.rc.ConfigResetStat(ctx).Err()
}

// commands is INFO commandstats since the last reset: calls per command,
// without this reader's own.
func (s *redisStats) commands(ctx context.Context) (map[string]int64, error) {
	c, _, err := s.commandsAndOutput(ctx)
	return c, err
}

// commandsAndOutput is commands and total_net_output_bytes since the last
// reset, less the bytes of the replies to this reader.
func (s *redisStats) commandsAndOutput(ctx context.Context) (map[string]int64, int64, error) {
	stats, err := s.rc.Info(ctx, "stats").Result()
	if err != nil {
		return nil, 0, err
	}
	cs, err := s.rc.Info(ctx, "commandstats").Result()
	if err != nil {
		return nil, 0, err
	}
	out := map[string]int64{}
	for _, line := range strings.Split(cs, "\r\n") {
		name, rest, ok := strings.Cut(strings.TrimPrefix(line, "cmdstat_"), ":")
		if !ok || !strings.HasPrefix(line, "cmdstat_") {
			continue
		}
		switch name {
		case "config", "info":
			continue
		}
		for _, kv := range strings.Split(rest, ",") {
			if v, ok := strings.CutPrefix(kv, "calls="); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				out[name] = n
			}
		}
	}
	// The reply to CONFIG RESETSTAT ("+OK\r\n") is counted after the reset.
	return out, infoInt(stats, "total_net_output_bytes") - 5, nil
}

func infoInt(info, field string) int64 {
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}

func subscribers(ctx context.Context, rc *redis.Client, channel string) (int64, error) {
	m, err := rc.PubSubNumSub(ctx, channel).Result()
	return m[channel], err
}

// messageBytes is the size of one pub/sub message as Redis sends it to
// each subscriber (RESP2: ["message", channel, payload]).
func messageBytes(channel, payload string) int {
	bulk := func(s string) int { return len("$"+strconv.Itoa(len(s))+"\r\n") + len(s) + 2 }
	return len("*3\r\n") + bulk("message") + bulk(channel) + bulk(payload)
}

func total(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

func divide(m map[string]int64, n int) map[string]int64 {
	out := make(map[string]int64, len(m))
	for k, v := range m {
		out[k] = (v + int64(n)/2) / int64(n)
	}
	return out
}

// monitor is a MONITOR connection to Redis, read until stop.
type monitor struct {
	conn  net.Conn
	lines chan []string
}

// monitorLimit bounds the lines a trace keeps.
const monitorLimit = 200

func startMonitor(addr string) (*monitor, error) {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return nil, err
	}
	_ = conn.SetDeadline(time.Now().Add(time.Minute))
	if _, err := conn.Write([]byte("MONITOR\r\n")); err != nil {
		conn.Close()
		return nil, err
	}
	r := bufio.NewReader(conn)
	if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "+OK") {
		conn.Close()
		return nil, errors.Join(fmt.Errorf("MONITOR: %q", line), err)
	}
	m := &monitor{conn: conn, lines: make(chan []string, 1)}
	go func() {
		var lines []string
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				break
			}
			if len(lines) < monitorLimit {
				lines = append(lines, summarizeMonitorLine(line))
			}
		}
		m.lines <- lines
	}()
	return m, nil
}

func (m *monitor) stop() []string {
	m.conn.Close()
	return <-m.lines
}

// summarizeMonitorLine keeps of a MONITOR line its time, the client (or
// "lua" inside a script), the command and the key's suffix; values (sealed
// tokens, owners) are left out.
func summarizeMonitorLine(line string) string {
	line = strings.TrimSpace(strings.TrimPrefix(line, "+"))
	ts, rest, _ := strings.Cut(line, " ")
	client := ""
	if i := strings.Index(rest, "]"); i > 0 {
		client = strings.TrimPrefix(rest[:i], "[0 ")
		rest = strings.TrimSpace(rest[i+1:])
	}
	var fields []string
	for _, f := range strings.Split(rest, "\" \"") {
		fields = append(fields, strings.Trim(f, "\""))
	}
	if len(fields) == 0 {
		return line
	}
	cmd := strings.ToLower(fields[0])
	out := []string{ts, client, cmd}
	for _, f := range fields[1:] {
		switch {
		case strings.HasPrefix(f, store.KeyPrefix):
			out = append(out, monitorKey(f))
		case cmd == "evalsha" && len(f) == 40:
			out = append(out, f[:8])
		}
	}
	return strings.Join(out, " ")
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
