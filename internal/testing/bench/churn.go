package bench

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"

	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
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

// ChurnVendorLatency is how long the simulated vendor takes to answer.
const ChurnVendorLatency = 300 * time.Millisecond

const (
	churnRounds       = 20
	churnWaiters      = 20
	churnWrongCalls   = 300
	churnBudgetSets   = 500
	churnBudgetPerSec = 100
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
	var children []*memoryChild
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
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	before := sim.Requests(vendor)
	holderDone := make(chan time.Time, 1)
	go func() {
		_, _ = holder.GetToken(ctx, req, grpc.WaitForReady(true))
		holderDone <- time.Now()
	}()
	for sim.Requests(vendor) == before {
		if ctx.Err() != nil {
			return time.Time{}, nil, errors.New("the holder's vendor request never came")
		}
		time.Sleep(time.Millisecond)
	}
	answered := make([]time.Time, churnWaiters)
	errs := make([]error, churnWaiters)
	var wg sync.WaitGroup
	for i := range churnWaiters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = others[i%len(others)].GetToken(ctx, req)
			answered[i] = time.Now()
		}()
	}
	if crash != nil {
		crash()
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

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
