package bench

import (
	"context"
	"errors"
	"strings"
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
