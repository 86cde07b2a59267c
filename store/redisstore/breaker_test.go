package redisstore

import (
	"sync"
	"testing"
	"time"
)

// TestBreaker drives the breaker through sequences of outcomes and checks
// where each leaves it: open or not, suspect (the last command failed) or
// not.
func TestBreaker(t *testing.T) {
	const (
		ok      = "ok"
		timeout = "timeout" // a failure that may be a stall of this process
		refused = "refused" // a certain one
		wait    = "wait"    // minOutage passes
		reset   = "reset"   // a probe found Redis again
	)
	for _, tc := range []struct {
		name          string
		steps         []string
		open, suspect bool
	}{
		{"fresh", nil, false, false},
		{"successes", []string{ok, ok, ok}, false, false},
		{"one failure", []string{timeout}, false, true},
		{"a success ends the streak", []string{timeout, timeout, ok}, false, false},
		{"a success ends the streak before the threshold", []string{refused, refused, ok, refused, refused}, false, true},
		{"certain failures open at the threshold", []string{refused, refused, refused}, true, true},
		{"timeouts within minOutage do not open", []string{timeout, timeout, timeout, timeout}, false, true},
		{"timeouts over minOutage open", []string{timeout, wait, timeout, timeout}, true, true},
		{"reset closes and clears", []string{refused, refused, refused, reset}, false, false},
		{"after a reset the streak starts again", []string{refused, refused, refused, reset, refused, refused}, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Unix(1000, 0)
			b := &breaker{threshold: 3, minOutage: time.Second, now: func() time.Time { return now }}
			for _, s := range tc.steps {
				switch s {
				case ok:
					b.success()
				case timeout:
					b.failure(false)
				case refused:
					b.failure(true)
				case wait:
					now = now.Add(2 * time.Second)
				case reset:
					b.reset()
				}
			}
			if got := !b.allow(); got != tc.open {
				t.Errorf("open = %t, want %t", got, tc.open)
			}
			if got := b.suspect(); got != tc.suspect {
				t.Errorf("suspect = %t, want %t", got, tc.suspect)
			}
		})
	}
}

// TestBreakerConcurrentOutcomes runs successes (which take no lock while
// no streak runs) and failures from many goroutines at once, for the race
// detector: the streak is only touched as documented. It then checks
// that a last success ends the streak. (An interleaving that loses a
// streak's end is too rare for this test to find; the comment at
// breaker.failures says why none exists.)
func TestBreakerConcurrentOutcomes(t *testing.T) {
	b := &breaker{threshold: 1 << 30, minOutage: time.Hour, now: time.Now}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				if (g+i)%3 == 0 {
					b.failure(false)
				} else {
					b.success()
				}
			}
		})
	}
	wg.Wait()
	b.success()
	if b.suspect() || b.failures.Load() != 0 {
		t.Fatalf("after a last success: suspect %t, failures %d", b.suspect(), b.failures.Load())
	}
}
