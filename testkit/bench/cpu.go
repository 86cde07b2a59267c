package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/proto"

	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
)

// CPUCost is the CPU time a server process spends per call, the broker's
// against its echo's, for the same calls in the same run. On a saturated
// machine QPS mixes the load client's cost with the server's; a server's
// own CPU time per call does not, and it moves far less with what else
// the machine is doing.
type CPUCost struct {
	Name        string `json:"name"`
	Concurrency int    `json:"concurrency"`
	// Calls each side answered in the measured rounds.
	SubjectCalls  int64 `json:"subject_calls"`
	BaselineCalls int64 `json:"baseline_calls"`
	// Microseconds of the server process's CPU (user + system, every
	// thread) per call.
	SubjectCPUPerCallUs  float64 `json:"subject_cpu_per_call_us"`
	BaselineCPUPerCallUs float64 `json:"baseline_cpu_per_call_us"`
	Ratio                float64 `json:"cpu_ratio"`
	// CPU each server spends per second with no call (timers, flushers),
	// measured over idleWindow before the rounds: at one call in flight
	// it is a visible part of the per-call figures.
	SubjectIdleUsPerSec  float64 `json:"subject_idle_cpu_us_per_s"`
	BaselineIdleUsPerSec float64 `json:"baseline_idle_cpu_us_per_s"`
	// Rounds' per-call CPU ratios, for how much they vary.
	RoundRatios []float64 `json:"round_ratios"`
	// Calls per second each side answered in the alternating rounds
	// (calls over the rounds' time), and the broker's against the echo's:
	// the QPS rows' comparison with each server in a process of its own
	// (docs/performance.md, "Goroutine stacks in the shared process").
	SubjectQPS  float64 `json:"subject_qps"`
	BaselineQPS float64 `json:"baseline_qps"`
	QPSRatio    float64 `json:"qps_ratio"`
	// The same calls with both sides loaded at once, each at Concurrency
	// in flight, for a window of the same length, so both see the same
	// machine: alternating rounds compare windows seconds apart, and a
	// machine whose speed drifts (other processes, CPU steal) moves their
	// ratio; these rounds' ratios and their median (TogetherRatio) do
	// not share that drift. (A side of a together round shares the cores
	// with the other side, so its CPU per call is not the alternating
	// rounds'.)
	TogetherRatio       float64   `json:"together_cpu_ratio,omitempty"`
	TogetherRoundRatios []float64 `json:"together_round_ratios,omitempty"`
	TogetherCalls       [2]int64  `json:"together_calls"` // broker, echo
	Errors              int64     `json:"errors"`
	FirstError          string    `json:"first_error,omitempty"`
	Goal                string    `json:"goal"`
	// Profiles written for this row (--child-cpuprofile).
	SubjectProfile  string `json:"subject_profile,omitempty"`
	BaselineProfile string `json:"baseline_profile,omitempty"`
}

// CPU rows, one per hot path.
const (
	CPUPathGRPC = "grpc"
	CPUPathREST = "rest"
	CPUPathMTLS = "mtls"
	// CPUPathAA is the method's own noise: the bare grpc-go echo against
	// another process of the same echo (1.00x if the method were exact).
	CPUPathAA = "aa"
)

// cpuRoundLimit bounds one measured round in time; calls bounds it in
// count.
const cpuRoundLimit = 30 * time.Second

// CPUPerCall measures one hot path with the broker and its echo each in a
// process of its own (this binary, re-executed): rounds of calls calls at
// concurrency in flight, alternating which side goes first, reading each
// server's CPU time before and after its round; then, with together > 0,
// rounds of both sides loaded at once for that long (CPUCost.Together).
// With profileDir, both children write a CPU profile of the alternating
// rounds there.
func (e *Env) CPUPerCall(ctx context.Context, path string, concurrency, rounds int, calls int64, together time.Duration, profileDir string) (CPUCost, error) {
	c := CPUCost{Concurrency: concurrency, Goal: "<= 1.15x"}
	pair, err := e.startCPUPair(ctx, path, concurrency)
	if err != nil {
		return c, err
	}
	defer pair.close()
	c.Name = pair.name
	if path == CPUPathAA {
		c.Goal = "1.00x (the method's noise)"
	}
	// Warm both (connections, goroutines, caches) before measuring.
	Load(ctx, concurrency, cpuRoundLimit/4, min(calls/4, 2000), pair.broker.op)
	Load(ctx, concurrency, cpuRoundLimit/4, min(calls/4, 2000), pair.echo.op)
	if c.SubjectIdleUsPerSec, err = idleCPU(ctx, pair.broker.child); err != nil {
		return c, err
	}
	if c.BaselineIdleUsPerSec, err = idleCPU(ctx, pair.echo.child); err != nil {
		return c, err
	}
	if profileDir != "" {
		c.SubjectProfile = filepath.Join(profileDir, fmt.Sprintf("%s-%d-broker.prof", path, concurrency))
		c.BaselineProfile = filepath.Join(profileDir, fmt.Sprintf("%s-%d-echo.prof", path, concurrency))
		if err := pair.startProfiles(c.SubjectProfile, c.BaselineProfile); err != nil {
			return c, err
		}
	}
	if err := measureCPURounds(ctx, &c, [2]*cpuSide{&pair.broker, &pair.echo}, rounds, calls); err != nil {
		return c, err
	}
	if profileDir != "" {
		if err := pair.stopProfiles(); err != nil {
			return c, err
		}
	}
	c.perCall(pair.broker, pair.echo)
	if together > 0 {
		if err := measureCPUTogether(ctx, &c, [2]*cpuSide{&pair.broker, &pair.echo}, rounds, together, calls); err != nil {
			return c, err
		}
	}
	return c, nil
}

// cpuSide is one server of a CPU row: its process, the load operation
// that calls it, and the CPU time and calls of its measured rounds.
type cpuSide struct {
	child   *childProcess
	op      func(context.Context) error
	cpu     time.Duration
	calls   int64
	elapsed time.Duration // the rounds' time, for QPS
}

// cpuPair is one CPU row's two servers, the broker and its echo, and
// what stops them.
type cpuPair struct {
	name         string
	broker, echo cpuSide
	closers      []func()
}

// close stops everything the pair started, the last started first.
func (p *cpuPair) close() {
	for i := len(p.closers) - 1; i >= 0; i-- {
		p.closers[i]()
	}
}

// cpuRows are the CPU rows by path: the row's name and the echo the
// broker is compared with.
var cpuRows = map[string]struct{ name, echo string }{
	CPUPathGRPC: {"gRPC GetToken (cached) vs bare grpc-go echo", childEchoGRPC},
	CPUPathREST: {"REST POST /v1/token (cached) vs gateway echo", childEchoGateway},
	CPUPathMTLS: {"gRPC GetToken (cached), mTLS caller vs bare echo over mTLS", childEchoMTLS},
	CPUPathAA:   {"A/A: bare grpc-go echo vs another of the same", childEchoGRPC},
}

// startCPUPair starts the broker and the echo of path's row (for mTLS,
// with certificates of a throwaway PKI), a broker answer cached, and the
// load operations that call them.
func (e *Env) startCPUPair(ctx context.Context, path string, concurrency int) (_ *cpuPair, err error) {
	row, ok := cpuRows[path]
	if !ok {
		return nil, fmt.Errorf("CPU rows: unknown path %q", path)
	}
	pair := &cpuPair{name: row.name}
	defer func() {
		if err != nil {
			pair.close()
		}
	}()
	var brokerExtra string
	var p *pki
	dialOpts := []grpc.DialOption{}
	if path == CPUPathMTLS {
		if p, err = newPKI(); err != nil {
			return nil, err
		}
		pair.closers = append(pair.closers, p.remove)
		brokerExtra = mtlsBrokerYAML(p)
		dialOpts = append(dialOpts, grpc.WithTransportCredentials(credentials.NewTLS(p.client)))
	}
	broker, err := startServerChild(ctx, childSpec{Kind: childBroker, Config: brokerYAML(e.Sim, brokerExtra)})
	if err != nil {
		return nil, err
	}
	pair.closers = append(pair.closers, broker.stop)
	bconn, err := dialWith(broker.grpcAddr, dialOpts)
	if err != nil {
		return nil, err
	}
	pair.closers = append(pair.closers, func() { _ = bconn.Close() })
	resp, err := warmResponse(ctx, tokenbrokerv1.NewTokenServiceClient(bconn))
	if err != nil {
		return nil, err
	}
	respBytes, err := proto.Marshal(resp)
	if err != nil {
		return nil, err
	}
	spec := childSpec{Kind: row.echo, Response: respBytes}
	if p != nil {
		spec.CertFile, spec.KeyFile, spec.CAFile = p.certFile, p.keyFile, p.caFile
	}
	echo, err := startServerChild(ctx, spec)
	if err != nil {
		return nil, err
	}
	pair.closers = append(pair.closers, echo.stop)
	pair.broker.child, pair.echo.child = broker, echo
	if path == CPUPathAA {
		// The subject is a second echo; the broker above only made the
		// answer both echo, and idles.
		other, err := startServerChild(ctx, spec)
		if err != nil {
			return nil, err
		}
		pair.closers = append(pair.closers, other.stop)
		pair.broker.child = other
		if bconn, err = dialWith(other.grpcAddr, dialOpts); err != nil {
			return nil, err
		}
		pair.closers = append(pair.closers, func() { _ = bconn.Close() })
	}
	if err := pair.loadOps(path, concurrency, bconn, dialOpts); err != nil {
		return nil, err
	}
	return pair, nil
}

// loadOps are the operations that call each side over the path's
// transport: REST through one HTTP client with a connection per call in
// flight, gRPC over a connection to each (bconn is the broker's).
func (p *cpuPair) loadOps(path string, concurrency int, bconn *grpc.ClientConn, dialOpts []grpc.DialOption) error {
	if path == CPUPathREST {
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: concurrency + 1, MaxConnsPerHost: concurrency + 1}}
		p.closers = append(p.closers, client.CloseIdleConnections)
		p.broker.op, p.echo.op = postToken(client, "http://"+p.broker.child.httpAddr), postToken(client, "http://"+p.echo.child.httpAddr)
		return nil
	}
	econn, err := dialWith(p.echo.child.grpcAddr, dialOpts)
	if err != nil {
		return err
	}
	p.closers = append(p.closers, func() { _ = econn.Close() })
	p.broker.op = getToken(tokenbrokerv1.NewTokenServiceClient(bconn))
	p.echo.op = getToken(tokenbrokerv1.NewTokenServiceClient(econn))
	return nil
}

func (p *cpuPair) startProfiles(brokerPath, echoPath string) error {
	if err := p.broker.child.startProfile(brokerPath); err != nil {
		return err
	}
	return p.echo.child.startProfile(echoPath)
}

func (p *cpuPair) stopProfiles() error {
	if err := p.broker.child.stopProfile(); err != nil {
		return err
	}
	return p.echo.child.stopProfile()
}

// measureCPURounds runs rounds of calls on each side (broker, echo; then
// echo, broker), adding each side's CPU time and calls, and c's errors and
// each round's ratio.
func measureCPURounds(ctx context.Context, c *CPUCost, sides [2]*cpuSide, rounds int, calls int64) error {
	for r := range rounds {
		var per [2]float64
		for j := range 2 {
			k := (r + j) % 2 // broker, echo; then echo, broker
			s := sides[k]
			before, err := s.child.cpu()
			if err != nil {
				return err
			}
			st := Load(ctx, c.Concurrency, cpuRoundLimit, calls, s.op)
			after, err := s.child.cpu()
			if err != nil {
				return err
			}
			s.cpu += after - before
			s.calls += st.Requests
			s.elapsed += st.Elapsed
			c.countErrors(st)
			if st.Requests > 0 {
				per[k] = float64(after-before) / float64(st.Requests)
			}
		}
		if per[1] > 0 {
			c.RoundRatios = append(c.RoundRatios, per[0]/per[1])
		}
	}
	return nil
}

// measureCPUTogether runs rounds in which both sides are loaded at once,
// each at c.Concurrency in flight for window (and at most 4 x calls
// calls), reading both servers' CPU time before and after, and sets c's
// together ratios: each round's broker-to-echo CPU per call, and their
// median.
func measureCPUTogether(ctx context.Context, c *CPUCost, sides [2]*cpuSide, rounds int, window time.Duration, calls int64) error {
	for range rounds {
		var before, after [2]time.Duration
		for k, s := range sides {
			var err error
			if before[k], err = s.child.cpu(); err != nil {
				return err
			}
		}
		var st [2]Stats
		var wg sync.WaitGroup
		for k, s := range sides {
			wg.Go(func() { st[k] = Load(ctx, c.Concurrency, window, 4*calls, s.op) })
		}
		wg.Wait()
		for k, s := range sides {
			var err error
			if after[k], err = s.child.cpu(); err != nil {
				return err
			}
		}
		var per [2]float64
		for k := range sides {
			c.TogetherCalls[k] += st[k].Requests
			c.countErrors(st[k])
			if st[k].Requests > 0 {
				per[k] = float64(after[k]-before[k]) / float64(st[k].Requests)
			}
		}
		if per[1] > 0 {
			c.TogetherRoundRatios = append(c.TogetherRoundRatios, per[0]/per[1])
		}
	}
	c.TogetherRatio = median(c.TogetherRoundRatios)
	return nil
}

// countErrors adds a round's errors to c's, keeping the first one seen.
func (c *CPUCost) countErrors(st Stats) {
	c.Errors += st.Errors
	if c.FirstError == "" {
		c.FirstError = st.FirstError
	}
}

// median is the middle of xs (the mean of the two middle ones for an even
// count), 0 for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// perCall fills c's calls, CPU per call, QPS and their ratios from the
// two sides' measured rounds.
func (c *CPUCost) perCall(subject, baseline cpuSide) {
	c.SubjectCalls, c.BaselineCalls = subject.calls, baseline.calls
	if c.SubjectCalls > 0 {
		c.SubjectCPUPerCallUs = float64(subject.cpu.Microseconds()) / float64(c.SubjectCalls)
	}
	if c.BaselineCalls > 0 {
		c.BaselineCPUPerCallUs = float64(baseline.cpu.Microseconds()) / float64(c.BaselineCalls)
	}
	if c.BaselineCPUPerCallUs > 0 {
		c.Ratio = c.SubjectCPUPerCallUs / c.BaselineCPUPerCallUs
	}
	if subject.calls > 0 && baseline.calls > 0 && subject.elapsed > 0 && baseline.elapsed > 0 {
		c.SubjectQPS = float64(subject.calls) / subject.elapsed.Seconds()
		c.BaselineQPS = float64(baseline.calls) / baseline.elapsed.Seconds()
		c.QPSRatio = c.SubjectQPS / c.BaselineQPS
	}
}

// idleWindow is how long idleCPU watches a server with no call.
const idleWindow = time.Second

// idleCPU is child's CPU time per second while nobody calls it, in
// microseconds.
func idleCPU(ctx context.Context, child *childProcess) (float64, error) {
	before, err := child.cpu()
	if err != nil {
		return 0, err
	}
	start := time.Now()
	select {
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(idleWindow):
	}
	after, err := child.cpu()
	if err != nil {
		return 0, err
	}
	return float64((after - before).Microseconds()) / time.Since(start).Seconds(), nil
}

// postToken is the load operation of the REST comparisons.
func postToken(client *http.Client, base string) func(context.Context) error {
	url := base + "/v1/token"
	body := []byte(`{"profile":"bench","min_ttl":"0s"}`)
	return func(ctx context.Context) error { return postOK(ctx, client, url, body) }
}

// postOK POSTs the JSON body to url and reads the answer, which must be
// 200 OK.
func postOK(ctx context.Context, client *http.Client, url string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	r, err := client.Do(req)
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

// dialWith is dial with other options (mTLS) in place of plaintext.
func dialWith(addr string, opts []grpc.DialOption) (*grpc.ClientConn, error) {
	if len(opts) == 0 {
		return dial(addr)
	}
	return grpc.NewClient(addr, opts...)
}
