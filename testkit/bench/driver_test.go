package bench

import (
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestInterleaveAlternatesWhoGoesFirst(t *testing.T) {
	var order []string
	a := func(context.Context) error { order = append(order, "a"); return nil }
	fails := 0
	b := func(context.Context) error {
		order = append(order, "b")
		if fails++; fails%2 == 0 {
			return errors.New("b failed")
		}
		return nil
	}
	sa, sb := interleave(context.Background(), time.Hour, 3, a, b)
	if got, want := len(order), 6; got != want {
		t.Fatalf("%d calls, want %d", got, want)
	}
	if got := strings.Join(order, ""); got != "abbaab" {
		t.Errorf("order %s, want abbaab", got)
	}
	if sa.Requests != 3 || sb.Requests != 3 || sa.Errors != 0 || sb.Errors != 1 || sb.FirstError != "b failed" {
		t.Errorf("a %+v, b %+v", sa, sb)
	}
	if sa.QPS <= 0 || sa.Elapsed <= 0 {
		t.Errorf("a: QPS %v over %v", sa.QPS, sa.Elapsed)
	}
}

func TestMedian(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{1.2}, 1.2},
		{[]float64{1.3, 1.1}, 1.2},
		{[]float64{1.5, 0.9, 1.1}, 1.1},
		{[]float64{1.4, 1.0, 1.2, 9}, 1.3},
	}
	for _, tt := range tests {
		in := slices.Clone(tt.in)
		if got := median(tt.in); math.Abs(got-tt.want) > 1e-9 {
			t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
		}
		if !slices.Equal(in, tt.in) {
			t.Errorf("median reordered its argument: %v, was %v", tt.in, in)
		}
	}
}

// TestLoadCountsTheProcessCPU checks that a run records the CPU the
// process spent in it, and that merged rounds add theirs up.
func TestLoadCountsTheProcessCPU(t *testing.T) {
	spin := func(context.Context) error {
		x := 0
		for i := range 200_000 {
			x += i
		}
		sink.Add(int64(x))
		return nil
	}
	var rounds []Stats
	for range 2 {
		s := Load(context.Background(), 2, time.Second, 200, spin)
		if s.Requests != 200 || s.ProcessCPU <= 0 {
			t.Fatalf("run of %d calls recorded %v of process CPU", s.Requests, s.ProcessCPU)
		}
		rounds = append(rounds, s)
	}
	if m := merge(rounds); m.ProcessCPU != rounds[0].ProcessCPU+rounds[1].ProcessCPU {
		t.Errorf("merged process CPU %v, want the rounds' sum %v", m.ProcessCPU, rounds[0].ProcessCPU+rounds[1].ProcessCPU)
	}
}

// sink keeps the spin loop's result, so the compiler keeps the loop.
var sink atomic.Int64

func TestPerCall(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                       string
		subject, baseline          cpuSide
		cpuSubj, cpuBase, ratio    float64
		qpsSubj, qpsBase, qpsRatio float64
	}{{
		name:     "both sides measured",
		subject:  cpuSide{cpu: 3 * time.Second, calls: 100_000, elapsed: 2 * time.Second},
		baseline: cpuSide{cpu: 2 * time.Second, calls: 100_000, elapsed: time.Second},
		cpuSubj:  30, cpuBase: 20, ratio: 1.5,
		qpsSubj: 50_000, qpsBase: 100_000, qpsRatio: 0.5,
	}, {
		name:     "no calls in time: no QPS (no NaN in the report)",
		subject:  cpuSide{cpu: time.Second, elapsed: time.Second},
		baseline: cpuSide{cpu: time.Second, calls: 10, elapsed: time.Second},
		cpuBase:  100_000,
	}, {
		name:     "no calls: no figure",
		subject:  cpuSide{cpu: time.Second},
		baseline: cpuSide{cpu: time.Second, calls: 10, elapsed: time.Second},
		cpuBase:  100_000, qpsBase: 0,
	}}
	for _, tt := range tests {
		var c CPUCost
		c.perCall(tt.subject, tt.baseline)
		got := []float64{c.SubjectCPUPerCallUs, c.BaselineCPUPerCallUs, c.Ratio, c.SubjectQPS, c.BaselineQPS, c.QPSRatio}
		want := []float64{tt.cpuSubj, tt.cpuBase, tt.ratio, tt.qpsSubj, tt.qpsBase, tt.qpsRatio}
		for i := range got {
			if math.Abs(got[i]-want[i]) > 1e-9 {
				t.Errorf("%s: got %v, want %v", tt.name, got, want)
				break
			}
		}
		if c.SubjectCalls != tt.subject.calls || c.BaselineCalls != tt.baseline.calls {
			t.Errorf("%s: calls %d/%d", tt.name, c.SubjectCalls, c.BaselineCalls)
		}
	}
}
