// Package bench measures tokenbroker against the cheapest possible server
// on the same machine, in the same run (docs/performance.md). Machines here
// are noisy, so every result is a ratio against a baseline measured
// alternately with it, never an absolute threshold.
package bench

import (
	"context"
	"math"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Stats summarise one load run.
type Stats struct {
	Requests int64         `json:"requests"`
	Errors   int64         `json:"errors"`
	Elapsed  time.Duration `json:"elapsed_ns"`
	QPS      float64       `json:"qps"`
	P50      time.Duration `json:"p50_ns"`
	P99      time.Duration `json:"p99_ns"`
	Max      time.Duration `json:"max_ns"`
	// ProcessCPU is this process's CPU time (user and system, every
	// thread) over the run: load client and in-process servers together.
	// Against Elapsed it says whether the cores were busy; per call it
	// says what a call cost the whole process.
	ProcessCPU time.Duration `json:"process_cpu_ns"`
	// FirstError is the first failed call's error, for diagnosis.
	FirstError string `json:"first_error,omitempty"`
}

// maxSamples bounds the latency samples kept per run (reservoir beyond).
const maxSamples = 1 << 20

// Load calls op from concurrency goroutines until duration passes or
// maxRequests calls were made, whichever comes first. op gets ctx without
// the run's deadline, so no call fails just because the run ended.
func Load(ctx context.Context, concurrency int, duration time.Duration, maxRequests int64, op func(context.Context) error) Stats {
	var issued, errs atomic.Int64
	var mu sync.Mutex
	var firstErr error
	samples := make([]time.Duration, 0, 1<<16)
	var wg sync.WaitGroup
	cpu0 := selfCPU()
	start := time.Now()
	end := start.Add(duration)
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, 1<<12)
			for ctx.Err() == nil && time.Now().Before(end) && issued.Add(1) <= maxRequests {
				t0 := time.Now()
				if err := op(ctx); err != nil {
					if errs.Add(1) == 1 {
						mu.Lock()
						firstErr = err
						mu.Unlock()
					}
				}
				local = append(local, time.Since(t0))
			}
			mu.Lock()
			if room := maxSamples - len(samples); room > 0 {
				samples = append(samples, local[:min(room, len(local))]...)
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	s := summarize(samples, errs.Load(), time.Since(start))
	s.ProcessCPU = selfCPU() - cpu0
	// Calls beyond the sample cap count too.
	s.Requests = min(issued.Load(), maxRequests)
	s.QPS = float64(s.Requests) / s.Elapsed.Seconds()
	if firstErr != nil {
		s.FirstError = firstErr.Error()
	}
	return s
}

func summarize(samples []time.Duration, errs int64, elapsed time.Duration) Stats {
	slices.Sort(samples)
	s := Stats{Requests: int64(len(samples)), Errors: errs, Elapsed: elapsed}
	if elapsed > 0 {
		s.QPS = float64(len(samples)) / elapsed.Seconds()
	}
	if len(samples) > 0 {
		s.P50 = percentile(samples, 0.50)
		s.P99 = percentile(samples, 0.99)
		s.Max = samples[len(samples)-1]
	}
	return s
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// Comparison is a subject measured against a baseline, alternately.
type Comparison struct {
	Name        string  `json:"name"`
	Concurrency int     `json:"concurrency"`
	Subject     Stats   `json:"subject"`
	Baseline    Stats   `json:"baseline"`
	QPSRatio    float64 `json:"qps_ratio"`
	P99Ratio    float64 `json:"p99_ratio"`
	Goal        string  `json:"goal"`
}

// Compare measures subject against baseline in the same run.
//
// With one call in flight every call is alone on the machine, so the two
// are interleaved call by call (subject then baseline, then baseline then
// subject) for 2 x rounds x roundTime: drift in the machine's speed (other
// processes, frequency scaling) hits both alike, and each side's QPS is
// what it would serve alone, one over its mean latency (A/A: 0.99x-1.01x,
// where alternating rounds of each gave 0.92x-1.08x). With more in flight
// the calls would queue behind each other's and the difference would be
// diluted (a subject 10 µs slower per call measured 0.94x interleaved and
// 0.85x alone), so subject and baseline run alone, in rounds that
// alternate which goes first, each after a garbage collection.
func Compare(ctx context.Context, name string, concurrency, rounds int, roundTime time.Duration, subject, baseline func(context.Context) error) Comparison {
	const maxPerRound = 5_000_000
	Load(ctx, concurrency, roundTime/4, maxPerRound, subject)
	Load(ctx, concurrency, roundTime/4, maxPerRound, baseline)
	c := Comparison{Name: name, Concurrency: concurrency}
	if concurrency == 1 {
		c.Subject, c.Baseline = interleave(ctx, 2*time.Duration(rounds)*roundTime, maxPerRound, subject, baseline)
	} else {
		var subj, base []Stats
		load := func(op func(context.Context) error) Stats {
			runtime.GC() // no round inherits the garbage of the one before
			return Load(ctx, concurrency, roundTime, maxPerRound, op)
		}
		for r := range rounds {
			// Alternate which goes first, so drift hits both alike.
			if r%2 == 0 {
				subj = append(subj, load(subject))
				base = append(base, load(baseline))
			} else {
				base = append(base, load(baseline))
				subj = append(subj, load(subject))
			}
		}
		c.Subject, c.Baseline = merge(subj), merge(base)
	}
	if c.Baseline.QPS > 0 {
		c.QPSRatio = c.Subject.QPS / c.Baseline.QPS
	}
	if c.Baseline.P99 > 0 {
		c.P99Ratio = float64(c.Subject.P99) / float64(c.Baseline.P99)
	}
	return c
}

// interleave calls a and b in turn, one call in flight, until duration
// passes or each made maxRequests calls. Each side's Elapsed is the sum of
// its own calls' latencies, so its QPS is one over its mean latency.
func interleave(ctx context.Context, duration time.Duration, maxRequests int, a, b func(context.Context) error) (Stats, Stats) {
	ops := [2]func(context.Context) error{a, b}
	var samples [2][]time.Duration
	var errs [2]int64
	var firstErr [2]string
	end := time.Now().Add(duration)
	for i := 0; ctx.Err() == nil && time.Now().Before(end) && i < maxRequests; i++ {
		for j := range 2 {
			k := (i + j) % 2 // a, b; then b, a
			t0 := time.Now()
			err := ops[k](ctx)
			samples[k] = append(samples[k], time.Since(t0))
			if err != nil {
				if errs[k]++; errs[k] == 1 {
					firstErr[k] = err.Error()
				}
			}
		}
	}
	var out [2]Stats
	for k := range 2 {
		var sum time.Duration
		for _, d := range samples[k] {
			sum += d
		}
		out[k] = summarize(samples[k], errs[k], sum)
		out[k].FirstError = firstErr[k]
	}
	return out[0], out[1]
}

// merge combines rounds: totals add up, percentiles are the median round's.
func merge(rounds []Stats) Stats {
	var out Stats
	p50s, p99s := make([]time.Duration, 0, len(rounds)), make([]time.Duration, 0, len(rounds))
	for _, r := range rounds {
		out.Requests += r.Requests
		out.Errors += r.Errors
		out.Elapsed += r.Elapsed
		out.ProcessCPU += r.ProcessCPU
		out.Max = max(out.Max, r.Max)
		if out.FirstError == "" {
			out.FirstError = r.FirstError
		}
		p50s = append(p50s, r.P50)
		p99s = append(p99s, r.P99)
	}
	if out.Elapsed > 0 {
		out.QPS = float64(out.Requests) / out.Elapsed.Seconds()
	}
	slices.Sort(p50s)
	slices.Sort(p99s)
	if len(rounds) > 0 {
		out.P50, out.P99 = p50s[len(p50s)/2], p99s[len(p99s)/2]
	}
	return out
}
