// Command loadgen measures tokenbroker side by side with baselines on this
// machine (loopback only, bounded in time and requests) and prints one
// table, also written as JSON. `make bench` runs it; docs/performance.md
// records a run.
package main

import (
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
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/tokenbroker/tokenbroker/internal/testing/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	child, err := bench.ServeMemoryChild(ctx)
	if !child {
		err = realMain(ctx, os.Args[1:], os.Stdout)
	}
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

// Report is the JSON document.
type Report struct {
	When        time.Time          `json:"when"`
	GoVersion   string             `json:"go_version"`
	CPUs        int                `json:"cpus"`
	Comparisons []bench.Comparison `json:"comparisons"`
	Fleet       *bench.Fleet       `json:"fleet,omitempty"`
	Churn       *bench.Churn       `json:"churn,omitempty"`
	RedisDown   *bench.Outage      `json:"redis_down,omitempty"`
	Memory      *bench.Memory      `json:"memory,omitempty"`
	Elapsed     string             `json:"elapsed"`
}

func realMain(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	roundTime := fs.Duration("round", 1500*time.Millisecond, "length of one measured round")
	rounds := fs.Int("rounds", 3, "alternating rounds per comparison")
	out := fs.String("out", "bench-results/latest.json", "where to write the JSON report")
	soak := fs.Duration("soak", 60*time.Second, "length of each fleet soak")
	lifetime := fs.Duration("lifetime", 5*time.Second, "token lifetime during the soaks")
	tokens := fs.Int("tokens", 100_000, "distinct tokens for the memory measurement")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	only := fs.String("only", "hot,rest,mtls,jwt,redis,fleet,churn,down,memory", "comma-separated scenarios to run (also aa: echo vs echo, the method's own bias)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	run := map[string]bool{}
	for _, name := range strings.Split(*only, ",") {
		run[strings.TrimSpace(name)] = true
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	began := time.Now()
	rep := Report{When: began.UTC(), GoVersion: runtime.Version(), CPUs: runtime.NumCPU()}
	env, err := bench.NewEnv(ctx, "")
	if err != nil {
		return err
	}
	defer env.Close()
	progress := func(format string, args ...any) { fmt.Fprintf(os.Stderr, "loadgen: "+format+"\n", args...) }
	// The side-by-side comparisons, each at 1 and 64 in flight.
	comparisons := []struct {
		name, what string
		compare    func(ctx context.Context, concurrency, rounds int, roundTime time.Duration) (bench.Comparison, error)
	}{
		{"aa", "A/A: echo vs echo", env.EchoVsEcho},
		{"hot", "gRPC hot path", env.GRPCHotPath},
		{"rest", "REST hot path", env.RESTHotPath},
		{"mtls", "mTLS hot path", env.MTLSHotPath},
		{"jwt", "JWT caller hot path", env.JWTHotPath},
	}
	for _, cmp := range comparisons {
		if !run[cmp.name] {
			continue
		}
		for _, conc := range []int{1, 64} {
			progress("%s, %d in flight", cmp.what, conc)
			c, err := cmp.compare(ctx, conc, *rounds, *roundTime)
			if err != nil {
				return err
			}
			rep.Comparisons = append(rep.Comparisons, c)
		}
	}
	if run["redis"] || run["fleet"] || run["churn"] {
		redis, err := bench.StartRedis()
		if err != nil {
			return err
		}
		defer redis.Stop()
		for _, conc := range []int{1, 64} {
			if run["redis"] {
				progress("Redis-only path, %d in flight", conc)
				cs, err := env.RedisOnlyPath(ctx, redis.Addr, conc, *rounds, *roundTime)
				if err != nil {
					return err
				}
				rep.Comparisons = append(rep.Comparisons, cs...)
			}
		}
		if run["fleet"] {
			progress("fleet economy: 3 replicas, 600 cold callers, then 2 soaks of %s", *soak)
			f, err := env.FleetEconomy(ctx, redis.Addr, 3, 600, 64, *soak, *lifetime)
			if err != nil {
				return err
			}
			rep.Fleet = &f
		}
		if run["churn"] {
			progress("fleet under churn: 3 broker processes, waiter lag, a holder killed, wrong passwords, a vendor budget")
			c, err := bench.FleetChurn(ctx, redis.Addr)
			if err != nil {
				return err
			}
			rep.Churn = &c
		}
	}
	if run["down"] {
		progress("hot path with Redis up, then SIGSTOPped")
		o, err := env.RedisDown(ctx, 64, 3*time.Second)
		if err != nil {
			return err
		}
		rep.RedisDown = &o
	}
	if run["memory"] {
		progress("memory with %d distinct tokens", *tokens)
		m, err := bench.MemoryFootprint(ctx, *tokens)
		if err != nil {
			return err
		}
		rep.Memory = &m
	}
	rep.Elapsed = time.Since(began).Round(time.Second).String()
	printTable(stdout, rep)
	if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(rep, "", "  ")
	return os.WriteFile(*out, b, 0o644)
}

func printTable(w io.Writer, rep Report) {
	fmt.Fprintf(w, "tokenbroker bench, %s, %d CPUs, %s\n\n", rep.GoVersion, rep.CPUs, rep.When.Format(time.RFC3339))
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tin flight\tQPS\tbaseline QPS\tratio\tp50\tp99\tbaseline p99\tp99 ratio\terrors\tgoal")
	for _, c := range rep.Comparisons {
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.0f\t%.2fx\t%s\t%s\t%s\t%.2fx\t%d\t%s\n",
			c.Name, c.Concurrency, c.Subject.QPS, c.Baseline.QPS, c.QPSRatio,
			c.Subject.P50.Round(time.Microsecond), c.Subject.P99.Round(time.Microsecond), c.Baseline.P99.Round(time.Microsecond),
			c.P99Ratio, c.Subject.Errors+c.Baseline.Errors, c.Goal)
	}
	tw.Flush()
	if f := rep.Fleet; f != nil {
		fmt.Fprintf(w, "\nfleet economy (%d replicas, one Redis)\n", f.Replicas)
		fmt.Fprintf(w, "  %d concurrent cold callers: %d upstream request(s) (goal 1)\n", f.ColdCallers, f.ColdUpstream)
		fmt.Fprintf(w, "  soak %.0fs, %s tokens, shared cache: %d upstream requests (goal <= 17 for 60s/5s), %d calls, %d expired served, %d errors\n",
			f.SoakSeconds, f.TokenLifetime, f.SharedUpstream, f.SharedCalls, f.SharedExpired, f.SharedErrors)
		fmt.Fprintf(w, "  same soak, each replica caching alone: %d upstream requests, %d calls, %d expired served, %d errors\n",
			f.AloneUpstream, f.AloneCalls, f.AloneExpired, f.AloneErrors)
	}
	if c := rep.Churn; c != nil {
		fmt.Fprintf(w, "\nfleet under churn (%d broker processes, one Redis, vendor latency %s)\n", c.Replicas, c.VendorLatency)
		fmt.Fprintf(w, "  waiters on other replicas, after the lease holder's answer: p50 %.1f ms, p99 %.1f ms over %d cold keys (goal p99 <= 5 ms)\n",
			c.WaiterLagP50Ms, c.WaiterLagP99Ms, c.WaiterRounds)
		fmt.Fprintf(w, "  holder SIGKILLed mid-fetch: last caller answered %.0f ms after the kill, %d upstream requests (goal <= lease TTL %s + vendor latency + 1 s, <= 2)\n",
			c.CrashAnsweredMs, c.CrashUpstream, c.CrashLeaseTTL)
		fmt.Fprintf(w, "  %d wrong-password calls over the fleet: %d upstream request(s) (goal 1 per negative_ttl)\n", c.WrongPasswordCalls, c.WrongPasswordUpstream)
		fmt.Fprintf(w, "  %d cold credential sets, budget %d/s: busiest second %d requests (%.2fx the budget; goal <= 1x + jitter)\n",
			c.BudgetSets, c.BudgetPerSecond, c.BudgetPeak, float64(c.BudgetPeak)/float64(c.BudgetPerSecond))
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
