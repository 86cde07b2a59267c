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
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/tokenbroker/tokenbroker/internal/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := realMain(ctx, os.Args[1:], os.Stdout)
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
}

func realMain(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	roundTime := fs.Duration("round", 2*time.Second, "length of one measured round")
	rounds := fs.Int("rounds", 3, "alternating rounds per comparison")
	out := fs.String("out", "bench-results/latest.json", "where to write the JSON report")
	if err := fs.Parse(args); err != nil {
		return err
	}
	rep := Report{When: time.Now().UTC(), GoVersion: runtime.Version(), CPUs: runtime.NumCPU()}
	env, err := bench.NewEnv(ctx, "")
	if err != nil {
		return err
	}
	defer env.Close()
	for _, conc := range []int{1, 64} {
		c, err := env.GRPCHotPath(ctx, conc, *rounds, *roundTime)
		if err != nil {
			return err
		}
		rep.Comparisons = append(rep.Comparisons, c)
	}
	for _, conc := range []int{1, 64} {
		c, err := env.RESTHotPath(ctx, conc, *rounds, *roundTime)
		if err != nil {
			return err
		}
		rep.Comparisons = append(rep.Comparisons, c)
	}
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
}
