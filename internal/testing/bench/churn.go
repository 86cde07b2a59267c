package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"

	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
	"github.com/tokenbroker/tokenbroker/store"
	"github.com/tokenbroker/tokenbroker/vendorsim"
)

// Churn is the fleet under churn: three broker processes on one Redis, a
// vendor that takes ChurnVendorLatency to answer (docs/design.md section
// 10). Counts and latencies, no goals asserted here: the table shows them
// beside their goals.
type Churn struct {
	Replicas      int    `json:"replicas"`
	VendorLatency string `json:"vendor_latency"`
	// WaiterLag is how long after the lease holder's caller the callers
	// waiting on other replicas got the token, over WaiterRounds cold keys.
	WaiterRounds   int     `json:"waiter_rounds"`
	WaiterLagP50Ms float64 `json:"waiter_lag_p50_ms"`
	WaiterLagP99Ms float64 `json:"waiter_lag_p99_ms"`
	// Wake-up: the shape. Replica 0's caller takes the lease
	// (vendor latency 300 ms); WakeDelay later WakeWaiters callers on
	// replicas 1 and 2 wait; each one's completion after the holder's
	// caller was answered, per transport.
	Wake []WakeRow `json:"wake,omitempty"`
	// Crash: the holder's process is SIGKILLed mid-fetch; the last caller
	// on the other replicas is answered CrashAnsweredMs after the kill.
	CrashLeaseTTL   string  `json:"crash_lease_ttl"`
	CrashAnsweredMs float64 `json:"crash_last_answer_after_kill_ms"`
	CrashUpstream   int     `json:"crash_upstream_requests"`
	// Wrong password: calls spread over the replicas, vendor requests.
	WrongPasswordCalls    int `json:"wrong_password_calls"`
	WrongPasswordUpstream int `json:"wrong_password_upstream_requests"`
	// Budget: distinct credential sets cold at once; the vendor's busiest
	// second against its budget.
	BudgetSets      int `json:"budget_sets"`
	BudgetPerSecond int `json:"budget_per_second"`
	BudgetPeak      int `json:"budget_busiest_second"`
}

// WakeRow is the wake-up path over one transport.
type WakeRow struct {
	Transport string  `json:"transport"`
	Rounds    int     `json:"rounds"`
	Waiters   int     `json:"waiters"`
	DelayMs   float64 `json:"delay_ms"`
	LagP50Ms  float64 `json:"lag_p50_ms"`
	LagP99Ms  float64 `json:"lag_p99_ms"`
	LagMaxMs  float64 `json:"lag_max_ms"`
	// WaitingCPUPerAnswerUs is the CPU time replicas 1 and 2 spent from
	// 150 ms into the wait until their last caller was answered, less
	// their idle rate (IdleUsPerSec, both together) over that time, per
	// caller answered: the wake-up and fan-out's cost, which the
	// machine's load moves far less than the lag.
	WaitingCPUPerAnswerUs float64 `json:"waiting_cpu_per_answer_us"`
	IdleUsPerSec          float64 `json:"waiting_replicas_idle_cpu_us_per_s"`
	// The trace: one extra round with Redis MONITOR on,
	// each command with its time relative to the holder's answer (ms).
	Trace []string `json:"trace,omitempty"`
}

// ChurnVendorLatency is how long the simulated vendor takes to answer.
const ChurnVendorLatency = 300 * time.Millisecond

const (
	churnRounds       = 20
	churnWaiters      = 20
	churnWrongCalls   = 300
	churnBudgetSets   = 500
	churnBudgetPerSec = 100
	wakeRounds        = 5
	wakeWaiters       = 100
	wakeDelay         = 50 * time.Millisecond
	// wakeSettle is when, after the waiters started, their replicas' CPU
	// is read: their calls wait on the lease by then, and the holder's
	// vendor answer (ChurnVendorLatency - wakeDelay away) has not come.
	wakeSettle = 150 * time.Millisecond
)

// FleetChurn measures the fleet under churn with Redis at redisAddr.
func FleetChurn(ctx context.Context, redisAddr string) (Churn, error) {
	c := Churn{Replicas: 3, VendorLatency: ChurnVendorLatency.String(), CrashLeaseTTL: "2s",
		WaiterRounds: churnRounds, WrongPasswordCalls: churnWrongCalls, BudgetSets: churnBudgetSets, BudgetPerSecond: churnBudgetPerSec}
	sim, err := vendorsim.Start("127.0.0.1:0", vendorsim.WithLatency(ChurnVendorLatency))
	if err != nil {
		return c, err
	}
	defer sim.Close()
	for v, creds := range vendorsim.DemoAccounts() {
		sim.AddAccount(v, creds)
	}
	for i := range churnRounds + 1 {
		sim.AddAccount("smartdocumentor", map[string]string{"client_id": fmt.Sprintf("lag-%d", i), "client_secret": "s"})
	}
	for i := range 4 * (wakeRounds + 1) {
		sim.AddAccount("smartdocumentor", map[string]string{"client_id": fmt.Sprintf("wake-%d", i), "client_secret": "s"})
	}
	for i := range churnBudgetSets {
		sim.AddAccount("oauth2", map[string]string{"client_id": fmt.Sprintf("warm-%d", i), "client_secret": "s"})
	}
	yaml := fmt.Sprintf(`
grpc_addr: 127.0.0.1:0
http_addr: 127.0.0.1:0
%s
vendors:
  smartdocumentor:
    token_url: %[2]s/smartdocumentor/connect/token
  abbyy_vantage:
    token_url: %[2]s/abbyy_vantage/{region}/auth2/connect/token
  oauth2:
    token_url: %[2]s/oauth2/token
    grant_type: client_credentials
    max_requests_per_second: %d
    max_concurrent_requests: 16
`, redisCacheYAML(redisAddr, cacheKeyB64(), true), sim.URL(), churnBudgetPerSec)
	var children []*childProcess
	var clients []tokenbrokerv1.TokenServiceClient
	defer func() {
		for _, ch := range children {
			ch.stop()
		}
	}()
	for range c.Replicas {
		ch, err := startMemoryChild(ctx, yaml)
		if err != nil {
			return c, err
		}
		children = append(children, ch)
		conn, err := dial(ch.grpcAddr)
		if err != nil {
			return c, err
		}
		defer conn.Close()
		clients = append(clients, tokenbrokerv1.NewTokenServiceClient(conn))
	}
	inline := func(vendor, clientID string) *tokenbrokerv1.GetTokenRequest {
		return &tokenbrokerv1.GetTokenRequest{Vendor: vendor, Credentials: map[string]string{"client_id": clientID, "client_secret": "s"}}
	}

	// Waiter lag: the holder's caller on replica 0, waiters on 1 and 2.
	var lags []time.Duration
	for round := range churnRounds {
		req := inline("smartdocumentor", fmt.Sprintf("lag-%d", round))
		holder, waiters, err := holderAndWaiters(ctx, sim, "smartdocumentor", clients[0], clients[1:], req, nil)
		if err != nil {
			return c, fmt.Errorf("waiter lag: %w", err)
		}
		for _, w := range waiters {
			lags = append(lags, w.Sub(holder))
		}
	}
	slices.Sort(lags)
	c.WaiterLagP50Ms = ms(percentile(lags, 0.50))
	c.WaiterLagP99Ms = ms(percentile(lags, 0.99))

	// Wake-up, the shape, over gRPC and REST.
	httpClient := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: wakeWaiters, MaxConnsPerHost: wakeWaiters}}
	defer httpClient.CloseIdleConnections()
	var restFleet fleetCallers
	for i, ch := range children {
		c := restCaller(httpClient, "http://"+ch.httpAddr)
		if i == 0 {
			restFleet.holder = c
		} else {
			restFleet.others = append(restFleet.others, c)
		}
	}
	// The waiting replicas' idle CPU rate, to subtract from the fan-out's.
	var idle float64
	for _, ch := range children[1:] {
		rate, err := idleCPU(ctx, ch)
		if err != nil {
			return c, err
		}
		idle += rate
	}
	waitingCPU := func() (time.Duration, time.Time, error) {
		var sum time.Duration
		for _, ch := range children[1:] {
			d, err := ch.cpu()
			if err != nil {
				return 0, time.Time{}, err
			}
			sum += d
		}
		return sum, time.Now(), nil
	}
	account := 0
	for _, t := range []struct {
		name    string
		fc      fleetCallers
		waiters int
	}{
		// The shape, and a fifth of it: how the lag grows with the
		// callers each replica must answer is the fan-out's cost.
		{"gRPC", grpcCallers(clients[0], clients[1:]), wakeWaiters}, {"REST", restFleet, wakeWaiters},
		{"gRPC", grpcCallers(clients[0], clients[1:]), wakeWaiters / 5}, {"REST", restFleet, wakeWaiters / 5},
	} {
		row := WakeRow{Transport: t.name, Rounds: wakeRounds, Waiters: t.waiters, DelayMs: ms(wakeDelay), IdleUsPerSec: idle}
		var lags []time.Duration
		var fanoutCPU float64 // µs, idle subtracted
		var answers int
		for round := range wakeRounds + 1 {
			req := inline("smartdocumentor", fmt.Sprintf("wake-%d", account))
			account++
			var mon *monitor
			if round == wakeRounds {
				// One more round, traced: MONITOR slows Redis a little.
				if mon, err = startMonitor(redisAddr); err != nil {
					return c, err
				}
			}
			var cpu0 time.Duration
			var t0 time.Time
			var cpuErr error
			settled := func() {
				time.Sleep(wakeSettle)
				cpu0, t0, cpuErr = waitingCPU()
			}
			holder, waiters, err := waitOnHolder(ctx, sim, "smartdocumentor", t.fc, req, holderRound{waiters: t.waiters, delay: wakeDelay, settled: settled})
			if err == nil && cpuErr == nil && mon == nil {
				cpu1, t1, err := waitingCPU()
				if err != nil {
					return c, err
				}
				fanoutCPU += float64((cpu1 - cpu0).Microseconds()) - idle*t1.Sub(t0).Seconds()
				answers += len(waiters)
			}
			if cpuErr != nil {
				return c, cpuErr
			}
			if mon != nil {
				lines := mon.stop()
				if err == nil {
					row.Trace = wakeTrace(lines, holder, waiters)
				}
			}
			if err != nil {
				return c, fmt.Errorf("wake-up over %s: %w", t.name, err)
			}
			if mon != nil {
				break
			}
			for _, w := range waiters {
				lags = append(lags, w.Sub(holder))
			}
		}
		slices.Sort(lags)
		row.LagP50Ms, row.LagP99Ms, row.LagMaxMs = ms(percentile(lags, 0.5)), ms(percentile(lags, 0.99)), ms(lags[len(lags)-1])
		if answers > 0 {
			row.WaitingCPUPerAnswerUs = fanoutCPU / float64(answers)
		}
		c.Wake = append(c.Wake, row)
	}

	// Wrong password, spread over the replicas.
	before := sim.Requests("abbyy_vantage")
	var wg sync.WaitGroup
	for i := range churnWrongCalls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			acct := vendorsim.DemoAccounts()["abbyy_vantage"]
			acct["password"] = "wrong"
			delete(acct, "region")
			_, _ = clients[i%len(clients)].GetToken(ctx, &tokenbrokerv1.GetTokenRequest{Vendor: "abbyy_vantage",
				Credentials: acct, Params: map[string]string{"region": "eu"}})
		}()
	}
	wg.Wait()
	c.WrongPasswordUpstream = sim.Requests("abbyy_vantage") - before

	// The budget: distinct credential sets, cold, at once.
	var failed error
	var mu sync.Mutex
	for i := range churnBudgetSets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			if _, err := clients[i%len(clients)].GetToken(cctx, inline("oauth2", fmt.Sprintf("warm-%d", i))); err != nil {
				mu.Lock()
				failed = err
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if failed != nil {
		return c, fmt.Errorf("budget: %w", failed)
	}
	c.BudgetPeak = sim.MaxRequestsWithin("oauth2", time.Second)

	// The holder crashes: its process is killed once its vendor request
	// has left.
	before = sim.Requests("smartdocumentor")
	var killed time.Time
	_, waiters, err := holderAndWaiters(ctx, sim, "smartdocumentor", clients[0], clients[1:], inline("smartdocumentor", fmt.Sprintf("lag-%d", churnRounds)), func() {
		_ = children[0].cmd.Process.Kill()
		killed = time.Now()
	})
	if err != nil {
		return c, fmt.Errorf("crash: %w", err)
	}
	c.CrashAnsweredMs = ms(slices.MaxFunc(waiters, time.Time.Compare).Sub(killed))
	c.CrashUpstream = sim.Requests("smartdocumentor") - before
	return c, nil
}

// holderAndWaiters sends req to holder, and once its vendor request has
// reached the simulator, to churnWaiters callers spread over others; then
// runs crash (if any). It returns when each was answered.
func holderAndWaiters(ctx context.Context, sim *vendorsim.Sim, vendor string, holder tokenbrokerv1.TokenServiceClient, others []tokenbrokerv1.TokenServiceClient, req *tokenbrokerv1.GetTokenRequest, crash func()) (time.Time, []time.Time, error) {
	return waitOnHolder(ctx, sim, vendor, grpcCallers(holder, others), req, holderRound{waiters: churnWaiters, crash: crash})
}

// caller makes one GetToken call, over gRPC or REST.
type caller func(ctx context.Context, req *tokenbrokerv1.GetTokenRequest) error

// fleetCallers are the lease holder's caller and the waiters' replicas.
type fleetCallers struct {
	holder caller
	others []caller
}

func grpcCaller(c tokenbrokerv1.TokenServiceClient) caller {
	return func(ctx context.Context, req *tokenbrokerv1.GetTokenRequest) error {
		_, err := c.GetToken(ctx, req, grpc.WaitForReady(true))
		return err
	}
}

func grpcCallers(holder tokenbrokerv1.TokenServiceClient, others []tokenbrokerv1.TokenServiceClient) fleetCallers {
	fc := fleetCallers{holder: grpcCaller(holder)}
	for _, o := range others {
		fc.others = append(fc.others, grpcCaller(o))
	}
	return fc
}

// restCaller POSTs the request to base's /v1/token.
func restCaller(client *http.Client, base string) caller {
	url := base + "/v1/token"
	return func(ctx context.Context, req *tokenbrokerv1.GetTokenRequest) error {
		body, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(req)
		if err != nil {
			return err
		}
		hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return err
		}
		hreq.Header.Set("Content-Type", "application/json")
		r, err := client.Do(hreq)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, r.Body)
		r.Body.Close()
		if r.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", r.StatusCode)
		}
		return nil
	}
}

// holderRound shapes one waitOnHolder round.
type holderRound struct {
	// waiters callers start delay after the holder's vendor request
	// reached the simulator.
	waiters int
	delay   time.Duration
	// crash, if set, runs once the waiters have started (it kills the
	// holder: no holder's answer time is returned).
	crash func()
	// settled, if set, runs once the waiters have started, while they
	// wait (it may block, not past the holder's answer).
	settled func()
}

// waitOnHolder sends req to fc.holder, and round.delay after its vendor
// request has reached the simulator, to round.waiters callers spread over
// fc.others; then runs round.crash or round.settled. It returns when each
// was answered (the holder's time is zero after a crash).
func waitOnHolder(ctx context.Context, sim *vendorsim.Sim, vendor string, fc fleetCallers, req *tokenbrokerv1.GetTokenRequest, round holderRound) (time.Time, []time.Time, error) {
	waiters, delay, crash := round.waiters, round.delay, round.crash
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	before := sim.Requests(vendor)
	holderDone := make(chan time.Time, 1)
	go func() {
		_ = fc.holder(ctx, req)
		holderDone <- time.Now()
	}()
	for sim.Requests(vendor) == before {
		if ctx.Err() != nil {
			return time.Time{}, nil, errors.New("the holder's vendor request never came")
		}
		time.Sleep(time.Millisecond)
	}
	if delay > 0 {
		time.Sleep(delay)
	}
	answered := make([]time.Time, waiters)
	errs := make([]error, waiters)
	var wg sync.WaitGroup
	for i := range waiters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = fc.others[i%len(fc.others)](ctx, req)
			answered[i] = time.Now()
		}()
	}
	if crash != nil {
		crash()
	}
	if round.settled != nil {
		round.settled()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return time.Time{}, nil, err
	}
	var holderAt time.Time
	if crash == nil {
		holderAt = <-holderDone
	}
	return holderAt, answered, nil
}

// wakeTrace is a MONITOR trace of one wake-up round from the holder's
// token write on: each command's time relative to the holder's answer,
// then the waiters' answers.
func wakeTrace(lines []string, holder time.Time, waiters []time.Time) []string {
	var out []string
	// The holder's write: the last script call whose script SETs the
	// token key.
	from, call := 0, 0
	for i, l := range lines {
		if strings.Contains(l, " evalsha ") {
			call = i
		}
		if strings.HasSuffix(l, "lua set "+monitorKey(store.TokenKey("k"))) {
			from = call
		}
	}
	for _, l := range lines[from:] {
		ts, rest, _ := strings.Cut(l, " ")
		sec, err := strconv.ParseFloat(ts, 64)
		if err != nil {
			continue
		}
		at := time.Unix(0, int64(sec*1e9))
		out = append(out, fmt.Sprintf("%+.2f ms %s", ms(at.Sub(holder)), rest))
	}
	slices.SortFunc(waiters, time.Time.Compare)
	out = append(out, fmt.Sprintf("%+.2f ms holder's caller answered", 0.0),
		fmt.Sprintf("%+.2f ms first waiter answered", ms(waiters[0].Sub(holder))),
		fmt.Sprintf("%+.2f ms last waiter answered", ms(waiters[len(waiters)-1].Sub(holder))))
	return out
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
