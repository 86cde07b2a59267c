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
