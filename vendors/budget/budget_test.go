package budget_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/tokenbroker/tokenbroker/vendors/budget"
)

// fakeShared is the Redis budget's GCRA in memory, on the bubble's clock,
// and can be made to fail like Redis when it is down.
type fakeShared struct {
	mu    sync.Mutex
	tat   map[string]time.Time
	calls int
	down  bool
}

func newFakeShared() *fakeShared { return &fakeShared{tat: map[string]time.Time{}} }

func (f *fakeShared) ReserveBudget(_ context.Context, vendor string, ratePerSec float64, burst int, maxWait time.Duration) (time.Duration, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.down {
		return 0, false, errors.New("redis: connection refused")
	}
	now := time.Now()
	interval := time.Duration(float64(time.Second) / ratePerSec)
	tat := f.tat[vendor]
	if tat.Before(now) {
		tat = now
	}
	next := tat.Add(interval)
	wait := max(next.Add(-time.Duration(burst)*interval).Sub(now), 0)
	if wait > maxWait {
		return wait, false, nil
	}
	f.tat[vendor] = next
	return wait, true, nil
}

// acquireAll starts n callers at once and returns when each sent its
// request, with the times (since the start) at which they were let through.
func acquireAll(t *testing.T, l *budget.Limiter, n int, lim budget.Limits, timeout time.Duration) []time.Duration {
	t.Helper()
	start := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	var (
		mu   sync.Mutex
		sent []time.Duration
		wg   sync.WaitGroup
	)
	for range n {
		wg.Go(func() {
			release, err := l.Acquire(ctx, "saasu", lim)
			if err != nil {
				t.Error(err)
				return
			}
			defer release()
			mu.Lock()
			sent = append(sent, time.Since(start))
			mu.Unlock()
		})
	}
	wg.Wait()
	return sent
}

// perSecond counts the requests let through in each second since the start.
func perSecond(sent []time.Duration) map[int]int {
	out := map[int]int{}
	for _, d := range sent {
		out[int(d/time.Second)]++
	}
	return out
}

func TestAcquireKeepsTheRate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		shared func() *fakeShared
	}{
		{"shared budget", newFakeShared},
		{"shared budget down: per process", func() *fakeShared { f := newFakeShared(); f.down = true; return f }},
		{"no shared budget", func() *fakeShared { return nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				var l *budget.Limiter
				if shared := tc.shared(); shared != nil {
					l = budget.New(shared, nil)
				} else {
					l = budget.New(nil, nil)
				}
				// 5 a second, no burst: 30 callers at once go 200 ms
				// apart, never more than 5 in a second, and none waits
				// longer than its place in the queue.
				sent := acquireAll(t, l, 30, budget.Limits{RatePerSecond: 5}, time.Minute)
				if len(sent) != 30 {
					t.Fatalf("%d callers got through, want 30", len(sent))
				}
				slices.Sort(sent)
				for i, d := range sent {
					if want := time.Duration(i) * 200 * time.Millisecond; d != want {
						t.Fatalf("caller %d let through after %v, want %v (all: %v)", i, d, want, sent)
					}
				}
				for second, n := range perSecond(sent) {
					if n > 5 {
						t.Errorf("second %d: %d requests, want at most 5", second, n)
					}
				}
			})
		})
	}
}

func TestAcquireFailsAtOnceWhenTheSlotIsPastTheDeadline(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		shared := newFakeShared()
		l := budget.New(shared, nil)
		lim := budget.Limits{RatePerSecond: 1, Burst: 2, MaxConcurrent: 1}
		for range 2 {
			release, err := l.Acquire(t.Context(), "saasu", lim)
			if err != nil {
				t.Fatal(err)
			}
			release()
		}
		ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := l.Acquire(ctx, "saasu", lim)
		var exhausted *budget.ExhaustedError
		if !errors.As(err, &exhausted) {
			t.Fatalf("err = %v, want *ExhaustedError", err)
		}
		if exhausted.Vendor != "saasu" || exhausted.RetryAfter != time.Second {
			t.Fatalf("ExhaustedError = %+v, want vendor saasu, RetryAfter 1s", exhausted)
		}
		if waited := time.Since(start); waited != 0 {
			t.Fatalf("waited %v before failing, want no wait", waited)
		}
		// The concurrency permit was given back: a caller that can wait
		// gets through once the budget allows.
		release, err := l.Acquire(t.Context(), "saasu", lim)
		if err != nil {
			t.Fatal(err)
		}
		release()
		if waited := time.Since(start); waited != time.Second {
			t.Fatalf("next caller let through after %v, want 1s", waited)
		}
	})
}

func TestAcquireCapsConcurrentRequests(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		l := budget.New(nil, nil)
		lim := budget.Limits{MaxConcurrent: 2}
		first, err := l.Acquire(t.Context(), "hotdocs_advance", lim)
		if err != nil {
			t.Fatal(err)
		}
		second, err := l.Acquire(t.Context(), "hotdocs_advance", lim)
		if err != nil {
			t.Fatal(err)
		}
		// Another vendor has its own slots.
		other, err := l.Acquire(t.Context(), "saasu", lim)
		if err != nil {
			t.Fatal(err)
		}
		defer other()

		got := make(chan func(), 1)
		go func() {
			release, err := l.Acquire(t.Context(), "hotdocs_advance", lim)
			if err != nil {
				t.Error(err)
			}
			got <- release
		}()
		synctest.Wait()
		select {
		case <-got:
			t.Fatal("a third request went while two were in flight")
		default:
		}
		first()
		first() // a second call frees nothing more
		synctest.Wait()
		third := <-got
		third()
		second()

		// A caller whose deadline passes while it waits for a slot gets
		// the context's error.
		hold1, _ := l.Acquire(t.Context(), "hotdocs_advance", lim)
		hold2, _ := l.Acquire(t.Context(), "hotdocs_advance", lim)
		defer hold1()
		defer hold2()
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		if _, err := l.Acquire(ctx, "hotdocs_advance", lim); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want DeadlineExceeded", err)
		}
	})
}

func TestAcquireUnlimitedTakesNothing(t *testing.T) {
	t.Parallel()
	shared := newFakeShared()
	l := budget.New(shared, nil)
	for range 100 {
		release, err := l.Acquire(t.Context(), "saasu", budget.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		release()
	}
	if shared.calls != 0 {
		t.Fatalf("shared budget asked %d times for a vendor without limits", shared.calls)
	}
}

func TestBurst(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		for _, tc := range []struct {
			rate        float64
			burst       int
			atOnce      int
			firstSecond int
		}{
			{rate: 0.5, atOnce: 1, firstSecond: 1},
			{rate: 2.5, atOnce: 1, firstSecond: 3},
			{rate: 10, atOnce: 1, firstSecond: 10},
			{rate: 10, burst: 4, atOnce: 4, firstSecond: 13},
		} {
			l := budget.New(newFakeShared(), nil)
			sent := acquireAll(t, l, 30, budget.Limits{RatePerSecond: tc.rate, Burst: tc.burst}, time.Minute)
			atOnce := 0
			for _, d := range sent {
				if d == 0 {
					atOnce++
				}
			}
			if atOnce != tc.atOnce || perSecond(sent)[0] != tc.firstSecond {
				t.Errorf("rate %v burst %d: %d at once, %d in the first second; want %d and %d",
					tc.rate, tc.burst, atOnce, perSecond(sent)[0], tc.atOnce, tc.firstSecond)
			}
		}
	})
}
