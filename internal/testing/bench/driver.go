// Package bench measures tokenbroker against the cheapest possible server
// on the same machine, in the same run (docs/performance.md). Machines here
// are noisy, so every result is a ratio against a baseline measured
// alternately with it, never an absolute threshold.
package bench

import (
	"context"
	"math"
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

// Compare runs subject and baseline in alternating rounds of roundTime
// each (after a warm-up of both), and sums the rounds.
func Compare(ctx context.Context, name string, concurrency, rounds int, roundTime time.Duration, subject, baseline func(context.Context) error) Comparison {
	const maxPerRound = 5_000_000
	Load(ctx, concurrency, roundTime/4, maxPerRound, subject)
	Load(ctx, concurrency, roundTime/4, maxPerRound, baseline)
	var subj, base []Stats
	for r := range rounds {
		// Alternate which goes first, so drift hits both alike.
		if r%2 == 0 {
			subj = append(subj, Load(ctx, concurrency, roundTime, maxPerRound, subject))
			base = append(base, Load(ctx, concurrency, roundTime, maxPerRound, baseline))
		} else {
			base = append(base, Load(ctx, concurrency, roundTime, maxPerRound, baseline))
			subj = append(subj, Load(ctx, concurrency, roundTime, maxPerRound, subject))
		}
	}
	c := Comparison{Name: name, Concurrency: concurrency, Subject: merge(subj), Baseline: merge(base)}
	if c.Baseline.QPS > 0 {
		c.QPSRatio = c.Subject.QPS / c.Baseline.QPS
	}
	if c.Baseline.P99 > 0 {
		c.P99Ratio = float64(c.Subject.P99) / float64(c.Baseline.P99)
	}
	return c
}

// merge combines rounds: totals add up, percentiles are the median round's.
func merge(rounds []Stats) Stats {
	var out Stats
	p50s, p99s := make([]time.Duration, 0, len(rounds)), make([]time.Duration, 0, len(rounds))
	for _, r := range rounds {
		out.Requests += r.Requests
		out.Errors += r.Errors
		out.Elapsed += r.Elapsed
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
