// Command loadgen measures tokenbroker side by side with baselines on this
// machine (loopback only, bounded in time and requests) and prints one
// table, also written as JSON. `make bench` runs it; docs/performance.md
// records a run.
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/tokenbroker/tokenbroker/testkit/bench"
)

func main() {
	if err := withServerStacks(); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen: goroutine stacks keep the runtime's default:", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	child, err := bench.ServeChild(ctx)
	if !child {
		err = realMain(ctx, os.Args[1:], os.Stdout)
	}
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

// stackSetting is the GODEBUG setting loadgen runs with, unless GODEBUG
// already has one for it.
//
// The QPS rows run the load client and the servers in this one process.
// The runtime starts a new goroutine with a stack sized from the average
// its goroutines used, and here the load client's goroutines raise that
// to 16-32 KB, where a server in a process of its own starts them at 2 KB
// (measured in the CPU rows' server processes). A bare grpc-go echo,
// which starts a goroutine per call, then never grows one here, though
// in its own process it spends about 15% of its CPU doing so; the broker
// answers from long-lived stream workers and gains nothing. With the
// setting the servers' goroutines start as in a server's own process
// (docs/performance.md, "Goroutine stacks in the shared process").
// GODEBUG=adaptivestackstart=1 measures with the runtime's default.
const stackSetting = "adaptivestackstart"

// withServerStacks re-executes this program with stackSetting=0 added to
// GODEBUG (a runtime setting read only at start), unless GODEBUG sets it
// already; it returns only when it did not re-execute, this process's
// environment unchanged (so a failed re-execution runs, and reports, the
// runtime's default).
func withServerStacks() error {
	godebug := os.Getenv("GODEBUG")
	if godebugSets(godebug, stackSetting) {
		return nil
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	return syscall.Exec(self, os.Args, withGODEBUG(os.Environ(), stackSetting+"=0"))
}

// withGODEBUG is env (KEY=value entries) with setting appended to its
// GODEBUG, which it adds if absent.
func withGODEBUG(env []string, setting string) []string {
	out := make([]string, 0, len(env)+1)
	found := false
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "GODEBUG="); ok && !found {
			found = true
			if v != "" {
				setting = v + "," + setting
			}
			kv = "GODEBUG=" + setting
		}
		out = append(out, kv)
	}
	if !found {
		out = append(out, "GODEBUG="+setting)
	}
	return out
}

// godebugSets reports whether a GODEBUG value has a setting for key, as
// the runtime reads it: fields split at commas, the key before the first
// "=", nothing trimmed.
func godebugSets(godebug, key string) bool {
	for field := range strings.SplitSeq(godebug, ",") {
		if k, _, ok := strings.Cut(field, "="); ok && k == key {
			return true
		}
	}
	return false
}

// Report is the JSON document.
type Report struct {
	When        time.Time          `json:"when"`
	GoVersion   string             `json:"go_version"`
	GODEBUG     string             `json:"godebug"` // the run's runtime settings (stackSetting)
	CPUs        int                `json:"cpus"`
	Comparisons []bench.Comparison `json:"comparisons"`
	CPU         []bench.CPUCost    `json:"cpu_per_call,omitempty"`
	Fleet       *bench.Fleet       `json:"fleet,omitempty"`
	Churn       *bench.Churn       `json:"churn,omitempty"`
	FleetTen    *bench.FleetTen    `json:"fleet_of_ten,omitempty"`
	RedisDown   *bench.Outage      `json:"redis_down,omitempty"`
	Memory      *bench.Memory      `json:"memory,omitempty"`
	Elapsed     string             `json:"elapsed"`
}

// options are the command line's.
type options struct {
	roundTime     time.Duration
	rounds        int
	out           string
	soak          time.Duration
	lifetime      time.Duration
	tokens        int
	cpuProfile    string
	cpuCalls      int64
	cpuTogether   time.Duration
	childProfiles string
	// run holds the scenarios --only names.
	run map[string]bool
}

func parseFlags(args []string) (options, error) {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	roundTime := fs.Duration("round", 1500*time.Millisecond, "length of one measured round")
	rounds := fs.Int("rounds", 3, "alternating rounds per comparison")
	out := fs.String("out", "bench-results/latest.json", "where to write the JSON report")
	soak := fs.Duration("soak", 60*time.Second, "length of each fleet soak")
	lifetime := fs.Duration("lifetime", 5*time.Second, "token lifetime during the soaks")
	tokens := fs.Int("tokens", 100_000, "distinct tokens for the memory measurement")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	cpuCalls := fs.Int64("cpu-calls", 20_000, "calls per side and round of the CPU-per-call rows")
	cpuTogether := fs.Duration("cpu-together", 2*time.Second, "length of each CPU row's rounds with broker and echo loaded at once (0: none)")
	childProfiles := fs.String("child-cpuprofile", "", "directory for CPU profiles of the CPU rows' server processes (broker and echo, measured rounds only)")
	only := fs.String("only", "hot,rest,mtls,jwt,cpu,redis,fleet,churn,fleet10,down,memory", "comma-separated scenarios to run (also aa: echo vs echo, the method's own bias; cpu-grpc, cpu-rest, cpu-mtls: one CPU row; cpu-aa: the CPU rows' echo vs echo)")
	if err := fs.Parse(args); err != nil {
		return options{}, err
	}
	run := map[string]bool{}
	for _, name := range strings.Split(*only, ",") {
		run[strings.TrimSpace(name)] = true
	}
	return options{roundTime: *roundTime, rounds: *rounds, out: *out, soak: *soak, lifetime: *lifetime, tokens: *tokens,
		cpuProfile: *cpuProfile, cpuCalls: *cpuCalls, cpuTogether: *cpuTogether, childProfiles: *childProfiles, run: run}, nil
}

func realMain(ctx context.Context, args []string, stdout io.Writer) error {
	opts, err := parseFlags(args)
	if err != nil {
		return err
	}
	if opts.cpuProfile != "" {
		stop, err := startCPUProfile(opts.cpuProfile)
		if err != nil {
			return err
		}
		defer stop()
	}
	began := time.Now()
	rep := Report{When: began.UTC(), GoVersion: runtime.Version(), GODEBUG: os.Getenv("GODEBUG"), CPUs: runtime.NumCPU()}
	env, err := bench.NewEnv(ctx, "")
	if err != nil {
		return err
	}
	defer env.Close()
	r := &runner{env: env, opts: opts, rep: &rep}
	for _, rows := range []func(context.Context) error{r.comparisons, r.cpuRows, r.redisRows, r.redisDown, r.memory} {
		if err := rows(ctx); err != nil {
			return err
		}
	}
	rep.Elapsed = time.Since(began).Round(time.Second).String()
	printTable(stdout, rep)
	return writeReport(opts.out, rep)
}

// startCPUProfile profiles this process into path until stop.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// writeReport writes rep as indented JSON to path, its directory created.
func writeReport(path string, rep Report) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return os.WriteFile(path, b, 0o644)
}

// runner runs the scenarios opts.run names, each group of rows adding its
// results to rep.
type runner struct {
	env  *bench.Env
	opts options
	rep  *Report
}

func (r *runner) progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "loadgen: "+format+"\n", args...)
}

// comparisons are the side-by-side comparisons, each at 1 and 64 in flight.
func (r *runner) comparisons(ctx context.Context) error {
	comparisons := []struct {
		name, what string
		compare    func(ctx context.Context, concurrency, rounds int, roundTime time.Duration) (bench.Comparison, error)
	}{
		{"aa", "A/A: echo vs echo", r.env.EchoVsEcho},
		{"hot", "gRPC hot path", r.env.GRPCHotPath},
		{"rest", "REST hot path", r.env.RESTHotPath},
		{"mtls", "mTLS hot path", r.env.MTLSHotPath},
		{"jwt", "JWT caller hot path", r.env.JWTHotPath},
	}
	for _, cmp := range comparisons {
		if !r.opts.run[cmp.name] {
			continue
		}
		for _, conc := range []int{1, 64} {
			r.progress("%s, %d in flight", cmp.what, conc)
			c, err := cmp.compare(ctx, conc, r.opts.rounds, r.opts.roundTime)
			if err != nil {
				return err
			}
			r.rep.Comparisons = append(r.rep.Comparisons, c)
		}
	}
	return nil
}

// cpuRows are the server processes' CPU time per call, each hot path.
func (r *runner) cpuRows(ctx context.Context) error {
	if r.opts.childProfiles != "" {
		if err := os.MkdirAll(r.opts.childProfiles, 0o755); err != nil {
			return err
		}
	}
	for _, path := range []string{bench.CPUPathAA, bench.CPUPathGRPC, bench.CPUPathREST, bench.CPUPathMTLS} {
		if (!r.opts.run["cpu"] || path == bench.CPUPathAA) && !r.opts.run["cpu-"+path] {
			continue
		}
		for _, conc := range []int{1, 64} {
			r.progress("CPU per call, %s, %d in flight", path, conc)
			calls := r.opts.cpuCalls
			if conc == 1 {
				calls /= 4 // one in flight is slower; the same rounds take as long
			}
			c, err := r.env.CPUPerCall(ctx, path, conc, r.opts.rounds, calls, r.opts.cpuTogether, r.opts.childProfiles)
			if err != nil {
				return err
			}
			r.rep.CPU = append(r.rep.CPU, c)
		}
	}
	return nil
}

// redisRows are the rows that need a Redis server of their own: the
// Redis-only path and the three fleets.
func (r *runner) redisRows(ctx context.Context) error {
	run := r.opts.run
	if !run["redis"] && !run["fleet"] && !run["churn"] && !run["fleet10"] {
		return nil
	}
	redis, err := bench.StartRedis()
	if err != nil {
		return err
	}
	defer redis.Stop()
	for _, conc := range []int{1, 64} {
		if run["redis"] {
			r.progress("Redis-only path, %d in flight", conc)
			cs, err := r.env.RedisOnlyPath(ctx, redis.Addr, conc, r.opts.rounds, r.opts.roundTime)
			if err != nil {
				return err
			}
			r.rep.Comparisons = append(r.rep.Comparisons, cs...)
		}
	}
	if run["fleet"] {
		r.progress("fleet economy: 3 replicas, 600 cold callers, then 2 soaks of %s", r.opts.soak)
		f, err := r.env.FleetEconomy(ctx, redis.Addr, 3, 600, 64, r.opts.soak, r.opts.lifetime)
		if err != nil {
			return err
		}
		r.rep.Fleet = &f
	}
	if run["churn"] {
		r.progress("fleet under churn: 3 broker processes, waiter lag, a holder killed, wrong passwords, a vendor budget")
		c, err := bench.FleetChurn(ctx, redis.Addr)
		if err != nil {
			return err
		}
		r.rep.Churn = &c
	}
	if run["fleet10"] {
		r.progress("fleet of ten: 10 broker processes, one Redis, counts of vendor requests and Redis commands")
		f, err := bench.FleetOfTen(ctx, redis.Addr)
		if err != nil {
			return err
		}
		r.rep.FleetTen = &f
	}
	return nil
}

func (r *runner) redisDown(ctx context.Context) error {
	if !r.opts.run["down"] {
		return nil
	}
	r.progress("hot path with Redis up, then SIGSTOPped")
	o, err := r.env.RedisDown(ctx, 64, 3*time.Second)
	if err != nil {
		return err
	}
	r.rep.RedisDown = &o
	return nil
}

func (r *runner) memory(ctx context.Context) error {
	if !r.opts.run["memory"] {
		return nil
	}
	r.progress("memory with %d distinct tokens", r.opts.tokens)
	m, err := bench.MemoryFootprint(ctx, r.opts.tokens)
	if err != nil {
		return err
	}
	r.rep.Memory = &m
	return nil
}

// printTable prints the report, a section per group of rows that ran.
func printTable(w io.Writer, rep Report) {
	fmt.Fprintf(w, "tokenbroker bench, %s, GODEBUG=%s, %d CPUs, %s\n\n", rep.GoVersion, rep.GODEBUG, rep.CPUs, rep.When.Format(time.RFC3339))
	if len(rep.Comparisons) > 0 {
		printComparisons(w, rep.Comparisons)
	}
	if len(rep.CPU) > 0 {
		printCPU(w, rep.CPU)
	}
	if f := rep.Fleet; f != nil {
		printFleet(w, f)
	}
	if c := rep.Churn; c != nil {
		printChurn(w, c)
	}
	if f := rep.FleetTen; f != nil {
		printFleetTen(w, f)
	}
	if o := rep.RedisDown; o != nil {
		fmt.Fprintf(w, "\nRedis down (hot path, 64 in flight, %s): p99 up %s, frozen %s, added %s (goal %s); errors %d/%d\n",
			o.Durations, o.Up.P99.Round(time.Microsecond), o.Frozen.P99.Round(time.Microsecond), o.AddedP99.Round(time.Microsecond), o.Goal, o.Up.Errors, o.Frozen.Errors)
	}
	if m := rep.Memory; m != nil {
		fmt.Fprintf(w, "\nmemory (the broker in a process of its own): %d distinct cached tokens: live heap %.1f MB -> %.1f MB (%.0f bytes/token), RSS %.1f MB -> %.1f MB (goal %s), filled in %.1fs, %d errors\n",
			m.Tokens, m.HeapBeforeMB, m.HeapAfterMB, m.HeapPerToken, m.RSSBeforeMB, m.RSSAfterMB, m.Goal, m.FillSeconds, m.FillErrors)
	}
	fmt.Fprintf(w, "\ntotal time %s\n", rep.Elapsed)
}

func printComparisons(w io.Writer, comparisons []bench.Comparison) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tin flight\tQPS\tbaseline QPS\tratio\tp50\tp99\tbaseline p99\tp99 ratio\terrors\tgoal")
	for _, c := range comparisons {
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.0f\t%.2fx\t%s\t%s\t%s\t%.2fx\t%d\t%s\n",
			c.Name, c.Concurrency, c.Subject.QPS, c.Baseline.QPS, c.QPSRatio,
			c.Subject.P50.Round(time.Microsecond), c.Subject.P99.Round(time.Microsecond), c.Baseline.P99.Round(time.Microsecond),
			c.P99Ratio, c.Subject.Errors+c.Baseline.Errors, c.Goal)
	}
	tw.Flush()
}

func printCPU(w io.Writer, costs []bench.CPUCost) {
	fmt.Fprintf(w, "\nCPU time per call of the server process (broker and echo each in a process of their own, same calls, same run)\n")
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tin flight\tbroker µs/call\techo µs/call\tratio\trounds\ttogether: median\trounds\tcalls\tidle µs/s\tQPS broker/echo\terrors\tgoal")
	for _, c := range costs {
		fmt.Fprintf(tw, "%s\t%d\t%.1f\t%.1f\t%.2fx\t%s\t%.2fx\t%s\t%d/%d\t%.0f/%.0f\t%.0f/%.0f %.2fx\t%d\t%s\n",
			c.Name, c.Concurrency, c.SubjectCPUPerCallUs, c.BaselineCPUPerCallUs, c.Ratio, ratios(c.RoundRatios),
			c.TogetherRatio, ratios(c.TogetherRoundRatios), c.SubjectCalls, c.BaselineCalls, c.SubjectIdleUsPerSec, c.BaselineIdleUsPerSec,
			c.SubjectQPS, c.BaselineQPS, c.QPSRatio, c.Errors, c.Goal)
	}
	tw.Flush()
}

// ratios are rs as a compact list.
func ratios(rs []float64) string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = fmt.Sprintf("%.2f", r)
	}
	return strings.Join(out, " ")
}

func printFleet(w io.Writer, f *bench.Fleet) {
	fmt.Fprintf(w, "\nfleet economy (%d replicas, one Redis)\n", f.Replicas)
	fmt.Fprintf(w, "  %d concurrent cold callers: %d upstream request(s) (goal 1)\n", f.ColdCallers, f.ColdUpstream)
	fmt.Fprintf(w, "  soak %.0fs, %s tokens, shared cache: %d upstream requests (goal <= 17 for 60s/5s), %d calls, %d expired served, %d errors\n",
		f.SoakSeconds, f.TokenLifetime, f.SharedUpstream, f.SharedCalls, f.SharedExpired, f.SharedErrors)
	fmt.Fprintf(w, "  same soak, each replica caching alone: %d upstream requests, %d calls, %d expired served, %d errors\n",
		f.AloneUpstream, f.AloneCalls, f.AloneExpired, f.AloneErrors)
}

func printChurn(w io.Writer, c *bench.Churn) {
	fmt.Fprintf(w, "\nfleet under churn (%d broker processes, one Redis, vendor latency %s)\n", c.Replicas, c.VendorLatency)
	fmt.Fprintf(w, "  waiters on other replicas, after the lease holder's answer: p50 %.1f ms, p99 %.1f ms over %d cold keys (goal p99 <= 5 ms)\n",
		c.WaiterLagP50Ms, c.WaiterLagP99Ms, c.WaiterRounds)
	for _, r := range c.Wake {
		fmt.Fprintf(w, "  wake-up over %s: %d callers on replicas 1-2, %.0f ms after replica 0 took the lease; after its answer: p50 %.1f ms, p99 %.1f ms, max %.1f ms over %d rounds (goal p99 <= 5 ms)\n",
			r.Transport, r.Waiters, r.DelayMs, r.LagP50Ms, r.LagP99Ms, r.LagMaxMs, r.Rounds)
		fmt.Fprintf(w, "    CPU of replicas 1-2 from the wait to the last answer, per caller answered: %.0f µs (idle %.0f µs/s subtracted); %d callers a replica: %.1f ms of CPU each\n",
			r.WaitingCPUPerAnswerUs, r.IdleUsPerSec, r.Waiters/2, r.WaitingCPUPerAnswerUs*float64(r.Waiters/2)/1000)
		for _, line := range r.Trace {
			fmt.Fprintf(w, "      %s\n", line)
		}
	}
	fmt.Fprintf(w, "  holder SIGKILLed mid-fetch: last caller answered %.0f ms after the kill, %d upstream requests (goal <= lease TTL %s + vendor latency + 1 s, <= 2)\n",
		c.CrashAnsweredMs, c.CrashUpstream, c.CrashLeaseTTL)
	fmt.Fprintf(w, "  %d wrong-password calls over the fleet: %d upstream request(s) (goal 1 per negative_ttl)\n", c.WrongPasswordCalls, c.WrongPasswordUpstream)
	fmt.Fprintf(w, "  %d cold credential sets, budget %d/s: busiest second %d requests (%.2fx the budget; goal <= 1x + jitter)\n",
		c.BudgetSets, c.BudgetPerSecond, c.BudgetPeak, float64(c.BudgetPeak)/float64(c.BudgetPerSecond))
}

func printFleetTen(w io.Writer, f *bench.FleetTen) {
	fmt.Fprintf(w, "\nfleet of ten (%d broker processes, one Redis, vendor latency %s; Redis commands from INFO commandstats)\n", f.Replicas, f.VendorLatency)
	fmt.Fprintf(w, "  %d cold callers for one token: %d vendor request(s) (goal 1), %d errors, Redis %s (%.1f per replica)\n",
		f.ColdCallers, f.ColdUpstream, f.ColdErrors, formatCommands(f.ColdRedisCommands), f.ColdCommandsPerRep)
	fmt.Fprintf(w, "  %d cold credential sets: %d vendor requests (goal %d), %d errors, Redis %s\n",
		f.Sets, f.SetsUpstream, f.Sets, f.SetsErrors, formatCommands(f.SetsRedisCommands))
	fmt.Fprintf(w, "  one cold fetch alone, per fetch (%d fetches): Redis %s\n", f.SoloFetches, formatCommands(f.SoloCommandsPerFetch))
	fmt.Fprintf(w, "  one cold fetch with a waiter on each of the 9 others, per fetch: Redis %s\n", formatCommands(f.WaitedCommandsPerFetch))
	fmt.Fprintf(w, "  %d cached calls over %.1fs: Redis %s\n", f.CachedCalls, f.CachedSeconds, formatCommands(f.CachedRedisCommands))
	fmt.Fprintf(w, "  one invalidation (%d, averaged): Redis %s; %d subscribers; %.0f bytes out of Redis (one message: %d bytes to each subscriber)\n",
		f.Invalidations, formatCommands(f.InvalidationCommands), f.InvalidationSubscribers, f.InvalidationOutBytes, f.InvalidationMessageBytes)
	fmt.Fprintf(w, "  waiter lag, holder on replica 0, 90 waiters on the 9 others: p50 %.1f ms, p99 %.1f ms, max %.1f ms over %d keys (a latency: rerun on a quiet machine)\n",
		f.WaiterLagP50Ms, f.WaiterLagP99Ms, f.WaiterLagMaxMs, f.WaiterRounds)
	fmt.Fprintf(w, "  Redis connections held by the ten: %d\n", f.RedisClients)
	for _, t := range f.RedisTrouble {
		fmt.Fprintf(w, "  after %s: Redis errors %.0f, skipped by an open breaker %.0f, breaker openings %.0f (cumulative over the ten)\n", t.Step, t.Errors, t.Skipped, t.BreakerOpens)
	}
	fmt.Fprintf(w, "  trace of one cold fetch alone (MONITOR; time client command key):\n")
	for _, l := range f.SoloTrace {
		fmt.Fprintf(w, "      %s\n", l)
	}
	fmt.Fprintf(w, "  trace of one cold fetch with 9 waiters:\n")
	for _, l := range f.WaitedTrace {
		fmt.Fprintf(w, "      %s\n", l)
	}
}

// formatCommands prints Redis command counts, most first: "12 (get 8, evalsha 4)".
func formatCommands(m map[string]int64) string {
	names := make([]string, 0, len(m))
	var total int64
	for name, n := range m {
		if n > 0 {
			names = append(names, name)
			total += n
		}
	}
	slices.SortFunc(names, func(a, b string) int { return cmp.Or(cmp.Compare(m[b], m[a]), cmp.Compare(a, b)) })
	parts := make([]string, len(names))
	for i, name := range names {
		parts[i] = fmt.Sprintf("%s %d", name, m[name])
	}
	return fmt.Sprintf("%d commands (%s)", total, strings.Join(parts, ", "))
}
