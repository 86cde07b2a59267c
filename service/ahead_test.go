package service

import (
	"math"
	"testing"
)

func TestAheadJitterStaysInsideTheLife(t *testing.T) {
	for _, tc := range []struct {
		frac, want float64
	}{
		{0.8, 0.05},
		{0.5, 0.05},
		{0.1, 0.025},
		{0.001, 0.00025},
		{0.98, 0.005},
		{0.999, 0.00025},
	} {
		got := aheadJitter(tc.frac)
		if math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("aheadJitter(%g) = %g, want %g", tc.frac, got, tc.want)
		}
		// The earliest and latest refresh stay strictly inside (0, 1).
		if lo, hi := tc.frac-got, tc.frac+got; lo <= 0 || hi >= 1 {
			t.Errorf("refresh_ahead %g: window [%g, %g] leaves the token's life", tc.frac, lo, hi)
		}
	}
}
