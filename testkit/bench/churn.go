package bench

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"

	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
	"github.com/tokenbroker/tokenbroker/store"
	"github.com/tokenbroker/tokenbroker/vendorsim"
)

// Churn is the fleet under churn: three broker processes on one Redis, a
// vendor that takes ChurnVendorLatency to answer (docs/design.md, The
// lease and generation protocol). Counts and latencies, no goals asserted
// here: the table shows them beside their goals.
type Churn struct {
	Replicas      int    `json:"replicas"`
	VendorLatency string `json:"vendor_latency"`
	// WaiterLag is how long after the lease holder's caller the callers
	// waiting on other replicas got the token, over WaiterRounds cold keys.
	WaiterRounds   int     `json:"waiter_rounds"`
	WaiterLagP50Ms float64 `json:"waiter_lag_p50_ms"`
	WaiterLagP99Ms float64 `json:"waiter_lag_p99_ms"`
	// Wake-up: replica 0's caller takes the lease (vendor latency 300 ms);
	// wakeDelay later wakeWaiters callers on replicas 1 and 2 wait; each
	// one's completion after the holder's caller was answered, per
	// transport.
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

// FleetChurn measures the fleet under churn with Redis at redisAddr: one
// fleet, then each scenario on it in turn (the crash last, as it kills
// replica 0).
func FleetChurn(ctx context.Context, redisAddr string) (Churn, error) {
	c := Churn{Replicas: 3, VendorLatency: ChurnVendorLatency.String(), CrashLeaseTTL: "2s",
		WaiterRounds: churnRounds, WrongPasswordCalls: churnWrongCalls, BudgetSets: churnBudgetSets, BudgetPerSecond: churnBudgetPerSec}
	f, err := startChurnFleet(ctx, redisAddr, c.Replicas)
	if err != nil {
		return c, err
	}
	defer f.close()
	if c.WaiterLagP50Ms, c.WaiterLagP99Ms, err = f.waiterLag(ctx); err != nil {
		return c, fmt.Errorf("waiter lag: %w", err)
	}
	if c.Wake, err = f.wakeUp(ctx); err != nil {
		return c, err
	}
	c.WrongPasswordUpstream = f.wrongPassword(ctx)
	if c.BudgetPeak, err = f.budget(ctx); err != nil {
		return c, fmt.Errorf("budget: %w", err)
	}
	if c.CrashAnsweredMs, c.CrashUpstream, err = f.crash(ctx); err != nil {
		return c, fmt.Errorf("crash: %w", err)
	}
	return c, nil
}

// churnFleet is what FleetChurn's scenarios run on: the simulator with
// the accounts of every scenario, and the broker processes on one Redis
// with a gRPC client each.
type churnFleet struct {
	redisAddr string
	sim       *vendorsim.Sim
	children  []*childProcess
	conns     []*grpc.ClientConn
	clients   []tokenbrokerv1.TokenServiceClient
}

// startChurnFleet starts the simulator and the replicas; close stops them,
// also after an error.
func startChurnFleet(ctx context.Context, redisAddr string, replicas int) (*churnFleet, error) {
	sim, err := vendorsim.Start("127.0.0.1:0", vendorsim.WithLatency(ChurnVendorLatency))
	if err != nil {
		return nil, err
	}
	f := &churnFleet{redisAddr: redisAddr, sim: sim}
	addChurnAccounts(sim)
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
	for range replicas {
		ch, err := startMemoryChild(ctx, yaml)
		if err != nil {
			f.close()
			return nil, err
		}
		f.children = append(f.children, ch)
		conn, err := dial(ch.grpcAddr)
		if err != nil {
			f.close()
			return nil, err
		}
		f.conns = append(f.conns, conn)
		f.clients = append(f.clients, tokenbrokerv1.NewTokenServiceClient(conn))
	}
	return f, nil
}

// addChurnAccounts gives each scenario cold keys of its own: lag-N for
// the waiter lag and the crash, wake-N for the wake-up rounds, warm-N
// for the budget.
func addChurnAccounts(sim *vendorsim.Sim) {
	for v, creds := range vendorsim.DemoAccounts() {
		sim.AddAccount(v, creds)
	}
	for i := range churnRounds + 1 {
		sim.AddAccount("smartdocumentor", account(fmt.Sprintf("lag-%d", i)))
	}
	for i := range 4 * (wakeRounds + 1) {
		sim.AddAccount("smartdocumentor", account(fmt.Sprintf("wake-%d", i)))
	}
	for i := range churnBudgetSets {
		sim.AddAccount("oauth2", account(fmt.Sprintf("warm-%d", i)))
	}
}

func (f *churnFleet) close() {
	for _, conn := range f.conns {
		_ = conn.Close()
	}
	for _, ch := range f.children {
		ch.stop()
	}
	f.sim.Close()
}

// account is the credentials of a simulator account of the bench's own.
func account(clientID string) map[string]string {
	return map[string]string{"client_id": clientID, "client_secret": "s"}
}

// inline is a GetToken request with the account's credentials inline.
func inline(vendor, clientID string) *tokenbrokerv1.GetTokenRequest {
	return &tokenbrokerv1.GetTokenRequest{Vendor: vendor, Credentials: account(clientID)}
}

// waiterLag is the waiter lag over churnRounds cold keys: the holder's
// caller on replica 0, waiters on 1 and 2.
func (f *churnFleet) waiterLag(ctx context.Context) (p50Ms, p99Ms float64, err error) {
	var lags []time.Duration
	for round := range churnRounds {
		req := inline("smartdocumentor", fmt.Sprintf("lag-%d", round))
		holder, waiters, err := holderAndWaiters(ctx, f.sim, "smartdocumentor", f.clients[0], f.clients[1:], req, nil)
		if err != nil {
			return 0, 0, err
		}
		for _, w := range waiters {
			lags = append(lags, w.Sub(holder))
		}
	}
	slices.Sort(lags)
	return ms(percentile(lags, 0.50)), ms(percentile(lags, 0.99)), nil
}

// wakeShape is one wake-up row's transport and number of waiters.
type wakeShape struct {
	name    string
	fc      fleetCallers
	waiters int
}

// wakeUp is the wake-up scenario over gRPC and REST: wakeWaiters callers,
// the shape the row's goal is for, and a fifth of them: how the lag
// grows with the callers each replica must answer is the fan-out's cost.
func (f *churnFleet) wakeUp(ctx context.Context) ([]WakeRow, error) {
	httpClient := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: wakeWaiters, MaxConnsPerHost: wakeWaiters}}
	defer httpClient.CloseIdleConnections()
	var restFleet fleetCallers
	for i, ch := range f.children {
		c := restCaller(httpClient, "http://"+ch.httpAddr)
		if i == 0 {
			restFleet.holder = c
		} else {
			restFleet.others = append(restFleet.others, c)
		}
	}
	// The waiting replicas' idle CPU rate, to subtract from the fan-out's.
	var idle float64
	for _, ch := range f.children[1:] {
		rate, err := idleCPU(ctx, ch)
		if err != nil {
			return nil, err
		}
		idle += rate
	}
	grpcFleet := grpcCallers(f.clients[0], f.clients[1:])
	var rows []WakeRow
	for i, shape := range []wakeShape{
		{"gRPC", grpcFleet, wakeWaiters}, {"REST", restFleet, wakeWaiters},
		{"gRPC", grpcFleet, wakeWaiters / 5}, {"REST", restFleet, wakeWaiters / 5},
	} {
		row, err := f.wakeRow(ctx, shape, idle, i*(wakeRounds+1))
		if err != nil {
			return rows, err
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// wakeRow measures one shape over wakeRounds rounds, each on a cold key
// (the accounts wake-firstAccount on), then traces one more round.
func (f *churnFleet) wakeRow(ctx context.Context, shape wakeShape, idle float64, firstAccount int) (WakeRow, error) {
	row := WakeRow{Transport: shape.name, Rounds: wakeRounds, Waiters: shape.waiters, DelayMs: ms(wakeDelay), IdleUsPerSec: idle}
	var lags []time.Duration
	var fanoutCPU float64 // µs, idle subtracted
	var answers int
	for round := range wakeRounds + 1 {
		// The last round is traced: MONITOR slows Redis a little, so it
		// counts for nothing else.
		traced := round == wakeRounds
		r, err := f.wakeRound(ctx, shape, inline("smartdocumentor", fmt.Sprintf("wake-%d", firstAccount+round)), idle, traced)
		if err != nil {
			return row, err
		}
		if traced {
			row.Trace = r.trace
			break
		}
		fanoutCPU += r.fanoutCPU
		answers += len(r.waiters)
		for _, w := range r.waiters {
			lags = append(lags, w.Sub(r.holder))
		}
	}
	slices.Sort(lags)
	row.LagP50Ms, row.LagP99Ms, row.LagMaxMs = ms(percentile(lags, 0.5)), ms(percentile(lags, 0.99)), ms(lags[len(lags)-1])
	if answers > 0 {
		row.WaitingCPUPerAnswerUs = fanoutCPU / float64(answers)
	}
	return row, nil
}

// wakeResult is one wake-up round: when the holder's caller and each
// waiter were answered, and either the waiting replicas' CPU from
// wakeSettle into the wait to the last answer (µs, idle subtracted) or,
// traced, the Redis commands meanwhile.
type wakeResult struct {
	holder    time.Time
	waiters   []time.Time
	fanoutCPU float64
	trace     []string
}

// wakeRound runs one round of shape on req's cold key.
func (f *churnFleet) wakeRound(ctx context.Context, shape wakeShape, req *tokenbrokerv1.GetTokenRequest, idle float64, traced bool) (wakeResult, error) {
	var mon *monitor
	if traced {
		var err error
		if mon, err = startMonitor(f.redisAddr); err != nil {
			return wakeResult{}, err
		}
	}
	var cpu0 time.Duration
	var t0 time.Time
	var cpuErr error
	settled := func() {
		time.Sleep(wakeSettle)
		cpu0, t0, cpuErr = f.waitingCPU()
	}
	holder, waiters, err := waitOnHolder(ctx, f.sim, "smartdocumentor", shape.fc, req, holderRound{waiters: shape.waiters, delay: wakeDelay, settled: settled})
	var lines []string
	if mon != nil {
		lines = mon.stop()
	}
	if cpuErr != nil {
		return wakeResult{}, cpuErr
	}
	if err != nil {
		return wakeResult{}, fmt.Errorf("wake-up over %s: %w", shape.name, err)
	}
	r := wakeResult{holder: holder, waiters: waiters}
	if traced {
		r.trace = wakeTrace(lines, holder, waiters)
		return r, nil
	}
	cpu1, t1, err := f.waitingCPU()
	if err != nil {
		return wakeResult{}, err
	}
	r.fanoutCPU = float64((cpu1 - cpu0).Microseconds()) - idle*t1.Sub(t0).Seconds()
	return r, nil
}

// waitingCPU is the CPU time the waiting replicas (all but replica 0)
// have used, and when it was read.
func (f *churnFleet) waitingCPU() (time.Duration, time.Time, error) {
	var sum time.Duration
	for _, ch := range f.children[1:] {
		d, err := ch.cpu()
		if err != nil {
			return 0, time.Time{}, err
		}
		sum += d
	}
	return sum, time.Now(), nil
}

// wrongPassword sends churnWrongCalls calls with a wrong password, spread
// over the replicas, and returns the vendor requests they caused.
func (f *churnFleet) wrongPassword(ctx context.Context) int {
	before := f.sim.Requests("abbyy_vantage")
	var wg sync.WaitGroup
	for i := range churnWrongCalls {
		wg.Go(func() {
			acct := vendorsim.DemoAccounts()["abbyy_vantage"]
			acct["password"] = "wrong"
			delete(acct, "region")
			_, _ = f.clients[i%len(f.clients)].GetToken(ctx, &tokenbrokerv1.GetTokenRequest{Vendor: "abbyy_vantage",
				Credentials: acct, Params: map[string]string{"region": "eu"}})
		})
	}
	wg.Wait()
	return f.sim.Requests("abbyy_vantage") - before
}

// budget asks for churnBudgetSets distinct credential sets, cold, at once,
// and returns the vendor's busiest second.
func (f *churnFleet) budget(ctx context.Context) (int, error) {
	var failed error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range churnBudgetSets {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			if _, err := f.clients[i%len(f.clients)].GetToken(cctx, inline("oauth2", fmt.Sprintf("warm-%d", i))); err != nil {
				mu.Lock()
				failed = err
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if failed != nil {
		return 0, failed
	}
	return f.sim.MaxRequestsWithin("oauth2", time.Second), nil
}

// crash kills the holder's process once its vendor request has left, and
// returns when the last waiter was answered after the kill and the vendor
// requests the key cost.
func (f *churnFleet) crash(ctx context.Context) (answeredMs float64, upstream int, err error) {
	before := f.sim.Requests("smartdocumentor")
	var killed time.Time
	_, waiters, err := holderAndWaiters(ctx, f.sim, "smartdocumentor", f.clients[0], f.clients[1:], inline("smartdocumentor", fmt.Sprintf("lag-%d", churnRounds)), func() {
		_ = f.children[0].cmd.Process.Kill()
		killed = time.Now()
	})
	if err != nil {
		return 0, 0, err
	}
	return ms(slices.MaxFunc(waiters, time.Time.Compare).Sub(killed)), f.sim.Requests("smartdocumentor") - before, nil
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
