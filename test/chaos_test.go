package test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
	"github.com/tokenbroker/tokenbroker/testkit/brokertest"
	"github.com/tokenbroker/tokenbroker/testkit/chaos"
	"github.com/tokenbroker/tokenbroker/testkit/redistest"
	"github.com/tokenbroker/tokenbroker/vendorsim"
)

// TestChaos is the seeded chaos run of docs/design.md, The chaos run: three
// broker processes on a Redis master, its replica and a Sentinel (the
// brokers reach Redis through a fault-injecting proxy), the vendor
// simulator with tokens of 3-5 s and rotating refresh tokens, callers over
// gRPC and REST, and a nemesis carrying out the schedule the seed plans.
// The checker then proves the invariants over the history.
//
// It runs only when CHAOS_DURATION is set (make chaos): CHAOS_SEED (else
// a random seed, printed), CHAOS_REPORT (a file for the JSON report; the
// text goes to the log and beside it), CHAOS_RACE=0 to build the brokers
// without the race detector.
func TestChaos(t *testing.T) {
	length, err := time.ParseDuration(os.Getenv("CHAOS_DURATION"))
	if err != nil || length <= 0 {
		t.Skip("the chaos run needs CHAOS_DURATION (make chaos DURATION=2m SEED=...)")
	}
	seed := time.Now().UnixNano() % 1_000_000_000
	if s := os.Getenv("CHAOS_SEED"); s != "" {
		if seed, err = strconv.ParseInt(s, 10, 64); err != nil {
			t.Fatalf("CHAOS_SEED=%q: %v", s, err)
		}
	}
	t.Logf("chaos run: seed %d, %v (replay: make chaos SEED=%d DURATION=%v)", seed, length, seed, length)
	bin := brokertest.ServerBinary(t)
	if os.Getenv("CHAOS_RACE") == "0" {
		bin = brokertest.BuildServer(t, false)
	}
	r := newChaosRig(t, bin)
	h := r.run(seed, length)

	replay := fmt.Sprintf("make chaos SEED=%d DURATION=%v", seed, length)
	report := chaos.NewReport(h, chaos.DefaultBounds(), replay)
	text := report.Text(h.Began)
	t.Log("\n" + text)
	js, err := report.JSON()
	if err != nil {
		t.Fatal(err)
	}
	if path := os.Getenv("CHAOS_REPORT"); path != "" {
		if err := os.WriteFile(path, js, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(strings.TrimSuffix(path, ".json")+".txt", []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if path := os.Getenv("CHAOS_REPORT"); path != "" && len(report.Violations) > 0 {
		// The whole history, for a look beyond the calls the report shows.
		full, err := json.Marshal(struct {
			Calls   []chaos.Call      `json:"calls"`
			Faults  []chaos.Fault     `json:"faults"`
			Journal []vendorsim.Event `json:"journal"`
		}{h.Calls, h.Faults, h.Journal})
		if err == nil {
			err = os.WriteFile(strings.TrimSuffix(path, ".json")+"-history.json", full, 0o644)
		}
		if err != nil {
			t.Error(err)
		}
	}
	if len(report.Violations) > 0 {
		t.Errorf("seed %d: %d violations (replay: %s)", seed, len(report.Violations), replay)
	}
	if report.Counts.Calls < 100 || report.Counts.ByCode["OK"] < report.Counts.Calls/2 {
		t.Errorf("seed %d: the callers hardly ran: %+v", seed, report.Counts)
	}
}

// The run's shape.
const (
	chaosReplicas = 3
	chaosCallers  = 8
	// chaosLeaseTTL is the brokers' cache.lease_ttl; replica pauses last
	// longer.
	chaosLeaseTTL = time.Second
	// chaosCallTimeout is each attempt's deadline; chaosAttempts the
	// attempts of one request (retried on another replica on UNAVAILABLE
	// or DEADLINE_EXCEEDED, as real clients do).
	chaosCallTimeout = 3 * time.Second
	chaosAttempts    = 3
)

// chaosSelector is one token the callers ask for.
type chaosSelector struct {
	name    string // "profile:saasu", "inline:smartdocumentor"
	vendor  string
	profile string
	creds   map[string]string
}

var chaosSelectors = []chaosSelector{
	{name: "profile:saasu", vendor: "saasu", profile: "saasu"},
	{name: "inline:saasu", vendor: "saasu", creds: map[string]string{"username": "chaos-user", "password": "chaos-password"}},
	{name: "profile:sd", vendor: "smartdocumentor", profile: "sd"},
	{name: "inline:smartdocumentor", vendor: "smartdocumentor", creds: map[string]string{"client_id": "chaos-client", "client_secret": "chaos-secret"}},
}

// chaosLifetimes are the simulator's token lifetimes.
var chaosLifetimes = map[string]time.Duration{"saasu": 3 * time.Second, "smartdocumentor": 5 * time.Second}

// chaosRig is the system under test.
type chaosRig struct {
	t        *testing.T
	sim      *vendorsim.Sim
	servers  []*redistest.Server // master first, then the replica
	proxies  []*chaos.Proxy      // one per Redis server, same order
	sentinel *redistest.Server
	replicas []*chaosReplica
}

// chaosReplica is one broker process that the nemesis kills and restarts
// on the same ports.
type chaosReplica struct {
	*brokertest.Server
	client tokenbrokerv1.TokenServiceClient
}

func newChaosRig(t *testing.T, bin string) *chaosRig {
	r := &chaosRig{t: t}
	r.sim = brokertest.StartSim(t, vendorsim.WithJournal())
	for v, d := range chaosLifetimes {
		r.sim.SetTokenTTL(v, d)
	}
	r.sim.AddAccount("saasu", map[string]string{"username": "chaos-user", "password": "chaos-password"})
	r.sim.AddAccount("smartdocumentor", map[string]string{"client_id": "chaos-client", "client_secret": "chaos-secret"})

	// Redis: the brokers and the Sentinel reach each server through its
	// proxy; each server announces its proxy's port, so the Sentinel
	// names proxies, before and after a failover.
	for range 2 {
		p, err := chaos.NewProxy("127.0.0.1:0", "")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = p.Close() })
		r.proxies = append(r.proxies, p)
	}
	announce := func(i int) []string {
		_, port, _ := strings.Cut(r.proxies[i].Addr(), ":")
		return []string{"--replica-announce-ip", "127.0.0.1", "--replica-announce-port", port}
	}
	master := redistest.Start(t, announce(0)...)
	replica := redistest.Start(t, append(announce(1), "--replicaof", "127.0.0.1", strconv.Itoa(master.Port))...)
	r.servers = []*redistest.Server{master, replica}
	for i, s := range r.servers {
		r.proxies[i].SetUpstream(s.Addr)
	}
	brokertest.Eventually(t, "the Redis replica linked to the master", 20*time.Second, brokertest.Holds(func() bool {
		info, err := redistest.Do(replica.Addr, "INFO", "replication")
		return err == nil && strings.Contains(info, "master_link_status:up")
	}))
	_, masterProxyPort, _ := strings.Cut(r.proxies[0].Addr(), ":")
	port, _ := strconv.Atoi(masterProxyPort)
	r.sentinel = redistest.StartSentinelWith(t, &redistest.Server{Port: port, Addr: r.proxies[0].Addr()},
		redistest.SentinelOptions{DownAfter: 4 * time.Second})

	key := cacheKey()
	for i := range chaosReplicas {
		r.replicas = append(r.replicas, r.newReplica(bin, i, key))
	}
	return r
}

// newReplica writes replica i's configuration on two free ports and starts
// it.
func (r *chaosRig) newReplica(bin string, i int, key string) *chaosReplica {
	t := r.t
	yaml := fmt.Sprintf(`grpc_addr: 127.0.0.1:%s
http_addr: 127.0.0.1:%s
shutdown_delay: 0s
cache:
  redis: {addrs: [%s], master_name: %s}
  encryption_keys: [%s]
  lease_ttl: %v
service:
  default_min_ttl: 0s
vendors:
  saasu:
    token_url: %[7]s/saasu/authorisation/token
    refresh_url: %[7]s/saasu/authorisation/refresh
    negative_ttl: 2s
    timeout: 3s
  smartdocumentor:
    token_url: %[7]s/smartdocumentor/connect/token
    negative_ttl: 2s
    timeout: 3s
profiles:
  saasu:
    vendor: saasu
    credentials: {username: %q, password: %q}
  sd:
    vendor: smartdocumentor
    credentials: {client_id: %q, client_secret: %q}
`, "{grpc}", "{http}", r.sentinel.Addr, redistest.SentinelMaster, key, chaosLeaseTTL, r.sim.URL(),
		vendorsim.DemoAccounts()["saasu"]["username"], vendorsim.DemoAccounts()["saasu"]["password"],
		sdCreds()["client_id"], sdCreds()["client_secret"])
	rep := &chaosReplica{Server: brokertest.NewServer(t, brokertest.ServerOptions{Name: fmt.Sprintf("replica %d", i), Bin: bin, YAML: yaml, SlowStopOK: true})}
	// Reconnect quickly after a restart: a real client's backoff, capped
	// at 1 s.
	conn, err := grpc.NewClient(rep.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second}, MinConnectTimeout: time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	rep.client = tokenbrokerv1.NewTokenServiceClient(conn)
	if err := rep.start(); err != nil {
		t.Fatalf("replica %d: %v", i, err)
	}
	return rep
}

// start runs the process and waits until it answers.
func (c *chaosReplica) start() error {
	return c.Start(30*time.Second, brokertest.AnswersGRPC(c.client))
}

// run carries out seed's schedule for length under the callers' load and
// returns the history.
func (r *chaosRig) run(seed int64, length time.Duration) *chaos.History {
	vendors := []string{"saasu", "smartdocumentor"}
	plan := chaos.Plan(seed, length, chaos.PlanOptions{Replicas: chaosReplicas, Vendors: vendors, LeaseTTL: chaosLeaseTTL})
	h := &chaos.History{Seed: seed, Length: length, Replicas: chaosReplicas,
		Keys: map[string]int{}, Lifetimes: chaosLifetimes}
	for _, s := range chaosSelectors {
		h.Keys[s.vendor]++
	}
	r.sim.Reset()
	h.Began = time.Now()
	ctx, cancel := context.WithDeadline(context.Background(), h.Began.Add(length))
	defer cancel()
	var watcher sync.WaitGroup
	watcher.Go(func() { chaos.WatchStalls(ctx, h) })
	defer func() {
		cancel()
		watcher.Wait()
	}()

	var callers sync.WaitGroup
	for i := range chaosCallers {
		callers.Add(1)
		go func() {
			defer callers.Done()
			r.caller(ctx, h, seed, i)
		}()
	}
	var nemesis sync.WaitGroup
	for _, f := range plan {
		nemesis.Add(1)
		go func() {
			defer nemesis.Done()
			select {
			case <-time.After(time.Until(h.Began.Add(f.At))):
			case <-ctx.Done():
				return
			}
			r.inject(h, f)
		}()
	}
	nemesis.Wait()
	callers.Wait()
	h.Journal = r.sim.Journal()
	h.VendorRequests = map[string][]time.Time{}
	for _, v := range vendors {
		h.VendorRequests[v] = r.sim.RequestTimes(v)
	}
	return h
}

// master returns the index of the server the Sentinel names master.
func (r *chaosRig) master() int {
	addr, err := redistest.Do(r.sentinel.Addr, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", redistest.SentinelMaster)
	if err == nil {
		for i, p := range r.proxies {
			if strings.ReplaceAll(addr, " ", ":") == p.Addr() {
				return i
			}
		}
	}
	r.t.Logf("chaos: the Sentinel names no known master (%q, %v); taking server 0", addr, err)
	return 0
}

// inject carries out f and records it.
func (r *chaosRig) inject(h *chaos.History, f chaos.Fault) {
	switch f.Kind {
	case chaos.ReplicaKill:
		rep := r.replicas[atoi(f.Target)]
		i := h.Begin(f)
		rep.Kill()
		time.Sleep(f.For)
		if err := rep.start(); err != nil {
			r.t.Errorf("chaos: restarting replica %s: %v", f.Target, err)
		}
		h.Finish(i)
	case chaos.ReplicaPause:
		rep := r.replicas[atoi(f.Target)]
		i := h.Begin(f)
		if err := rep.Freeze(); err != nil {
			h.Annotate(i, err.Error())
		}
		time.Sleep(f.For)
		if err := rep.Thaw(); err != nil {
			h.Annotate(i, err.Error())
		}
		h.Finish(i)
	case chaos.RedisPause:
		s := r.servers[r.master()]
		i := h.Begin(f)
		s.Freeze()
		time.Sleep(f.For)
		s.Thaw()
		h.Finish(i)
	case chaos.Failover:
		before := r.master()
		i := h.Begin(f)
		if _, err := redistest.Do(r.sentinel.Addr, "SENTINEL", "FAILOVER", redistest.SentinelMaster); err != nil {
			h.Annotate(i, "refused: "+err.Error())
			h.Finish(i)
			return
		}
		if brokertest.Poll(15*time.Second, brokertest.Holds(func() bool { return r.master() != before })) != nil {
			h.Annotate(i, "no new master within 15s")
		}
		h.Finish(i)
	case chaos.RedisRestart:
		m := r.master()
		s := r.servers[m]
		i := h.Begin(f)
		s.Restart() // no persistence: it comes back empty
		if m == 1 {
			// Born a replica (--replicaof): it stays the master, empty.
			if _, err := redistest.Do(s.Addr, "REPLICAOF", "NO", "ONE"); err != nil {
				h.Annotate(i, "REPLICAOF NO ONE: "+err.Error())
			}
		}
		h.Finish(i)
	case chaos.NetLatency:
		i := h.Begin(f)
		r.eachProxy(func(p *chaos.Proxy) { p.SetLatency(f.Latency) })
		time.Sleep(f.For)
		r.eachProxy(func(p *chaos.Proxy) { p.SetLatency(0) })
		h.Finish(i)
	case chaos.NetReset:
		i := h.Begin(f)
		r.eachProxy(func(p *chaos.Proxy) { p.Reset(true) })
		time.Sleep(f.For)
		r.eachProxy(func(p *chaos.Proxy) { p.Reset(false) })
		h.Finish(i)
	case chaos.NetBlackhole:
		i := h.Begin(f)
		r.eachProxy(func(p *chaos.Proxy) { p.Blackhole(true) })
		time.Sleep(f.For)
		r.eachProxy(func(p *chaos.Proxy) { p.Blackhole(false) })
		h.Finish(i)
	case chaos.Vendor5xx, chaos.VendorReject:
		code := http.StatusServiceUnavailable
		if f.Kind == chaos.VendorReject {
			code = http.StatusUnauthorized
		}
		i := h.Begin(f)
		r.sim.FailNext(f.Target, 1<<30, code, 0)
		time.Sleep(f.For)
		r.sim.FailNext(f.Target, 0, 0, 0)
		h.Finish(i)
	case chaos.VendorSlow:
		i := h.Begin(f)
		r.sim.SetLatency(f.Latency)
		time.Sleep(f.For)
		r.sim.SetLatency(0)
		h.Finish(i)
	}
}

func (r *chaosRig) eachProxy(do func(*chaos.Proxy)) {
	for _, p := range r.proxies {
		do(p)
	}
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// caller is one client: it asks for tokens until ctx ends, each request
// retried on the next replica on UNAVAILABLE or DEADLINE_EXCEEDED (at most
// chaosAttempts), and reports some served tokens as rejected.
func (r *chaosRig) caller(ctx context.Context, h *chaos.History, seed int64, id int) {
	rng := rand.New(rand.NewPCG(uint64(seed), uint64(id)))
	minTTLs := []time.Duration{0, 500 * time.Millisecond, time.Second}
	for n := 0; ctx.Err() == nil && n < 1_000_000; n++ {
		sel := chaosSelectors[rng.IntN(len(chaosSelectors))]
		call := chaos.Call{Caller: id, Method: chaos.MethodGetToken, Selector: sel.name, Vendor: sel.vendor,
			MinTTL: minTTLs[rng.IntN(len(minTTLs))], Force: rng.IntN(20) == 0}
		transport := "grpc"
		if rng.IntN(2) == 0 {
			transport = "rest"
		}
		first := rng.IntN(chaosReplicas)
		var served chaos.Call
		var clearToken string
		for attempt := range chaosAttempts {
			call.Attempt, call.Replica, call.Transport = attempt, (first+attempt)%chaosReplicas, transport
			done, token := r.getToken(call, sel)
			h.Record(done)
			if done.OK() {
				served, clearToken = done, token
				break
			}
			if done.Code != codes.Unavailable.String() && done.Code != codes.DeadlineExceeded.String() {
				break
			}
		}
		if served.OK() && rng.IntN(500) == 0 {
			inv := chaos.Call{Caller: id, Method: chaos.MethodInvalidate, Selector: sel.name, Vendor: sel.vendor,
				Replica: served.Replica, Transport: transport}
			h.Record(r.invalidate(inv, sel, clearToken))
		}
		time.Sleep(time.Duration(2+rng.IntN(10)) * time.Millisecond)
	}
}

// getToken makes one attempt and returns it with the token served.
func (r *chaosRig) getToken(call chaos.Call, sel chaosSelector) (chaos.Call, string) {
	rep := r.replicas[call.Replica]
	ctx, cancel := context.WithTimeout(context.Background(), chaosCallTimeout)
	defer cancel()
	var token string
	call.Start = time.Now()
	if call.Transport == "grpc" {
		resp, err := rep.client.GetToken(ctx, &tokenbrokerv1.GetTokenRequest{Vendor: vendorIfInline(sel), Profile: sel.profile,
			Credentials: sel.creds, MinTtl: durationpb.New(call.MinTTL), ForceRefresh: call.Force})
		call.End = time.Now()
		st := status.Convert(err)
		call.Code, call.Message = st.Code().String(), st.Message()
		if err == nil {
			token, call.ExpiresAt, call.CacheHit = resp.AccessToken, resp.ExpiresAt.AsTime(), resp.CacheHit
		}
	} else {
		body := map[string]any{"min_ttl": fmt.Sprintf("%.3fs", call.MinTTL.Seconds()), "force_refresh": call.Force}
		addSelector(body, sel)
		var resp struct {
			AccessToken string    `json:"access_token"`
			ExpiresAt   time.Time `json:"expires_at"`
			CacheHit    bool      `json:"cache_hit"`
		}
		call.Code, call.Message = restStatusCall(ctx, "http://"+rep.HTTPAddr+"/v1/token", body, &resp)
		call.End = time.Now()
		if call.Code == codes.OK.String() {
			token, call.ExpiresAt, call.CacheHit = resp.AccessToken, resp.ExpiresAt, resp.CacheHit
		}
	}
	call.Token = vendorsim.Digest(token)
	return call, token
}

// invalidate reports token as rejected (InvalidateToken) on call's
// replica, the one that served it.
func (r *chaosRig) invalidate(call chaos.Call, sel chaosSelector, token string) chaos.Call {
	rep := r.replicas[call.Replica]
	ctx, cancel := context.WithTimeout(context.Background(), chaosCallTimeout)
	defer cancel()
	call.Token = vendorsim.Digest(token)
	call.Start = time.Now()
	if call.Transport == "grpc" {
		resp, err := rep.client.InvalidateToken(ctx, &tokenbrokerv1.InvalidateTokenRequest{Vendor: vendorIfInline(sel), Profile: sel.profile,
			Credentials: sel.creds, AccessToken: token})
		call.End = time.Now()
		st := status.Convert(err)
		call.Code, call.Message = st.Code().String(), st.Message()
		call.Invalidated = err == nil && resp.Invalidated
	} else {
		body := map[string]any{"access_token": token}
		addSelector(body, sel)
		var resp struct {
			Invalidated bool `json:"invalidated"`
		}
		call.Code, call.Message = restStatusCall(ctx, "http://"+rep.HTTPAddr+"/v1/token:invalidate", body, &resp)
		call.End = time.Now()
		call.Invalidated = call.Code == codes.OK.String() && resp.Invalidated
	}
	return call
}

// vendorIfInline is the request's vendor field: set for inline
// credentials only.
func vendorIfInline(sel chaosSelector) string {
	if sel.profile != "" {
		return ""
	}
	return sel.vendor
}

// addSelector puts sel's fields in a REST body.
func addSelector(body map[string]any, sel chaosSelector) {
	if sel.profile != "" {
		body["profile"] = sel.profile
		return
	}
	body["vendor"], body["credentials"] = sel.vendor, sel.creds
}

// chaosHTTP is the REST callers' client; each attempt's context bounds it.
var chaosHTTP = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16, IdleConnTimeout: 5 * time.Second}}

// restStatusCall POSTs body as JSON and decodes a 200 answer into out; it
// returns the gRPC code's name the answer stands for and the error
// message, as a REST caller would read them.
func restStatusCall(ctx context.Context, url string, body any, out any) (code, message string) {
	raw, err := json.Marshal(body)
	if err != nil {
		return codes.Internal.String(), err.Error()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(raw))
	if err != nil {
		return codes.Internal.String(), err.Error()
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := chaosHTTP.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return codes.DeadlineExceeded.String(), err.Error()
		}
		return codes.Unavailable.String(), err.Error()
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		if ctx.Err() != nil {
			return codes.DeadlineExceeded.String(), err.Error()
		}
		return codes.Unavailable.String(), err.Error()
	}
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(data, out); err != nil {
			return codes.Internal.String(), "undecodable answer: " + err.Error()
		}
		return codes.OK.String(), ""
	}
	var st struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal(data, &st); err != nil || st.Code == 0 {
		return codes.Unknown.String(), fmt.Sprintf("HTTP %d: %.200s", resp.StatusCode, data)
	}
	return codes.Code(st.Code).String(), st.Message
}
