package auth

import (
	"math"
	"sync"
	"time"
)

// maxBuckets bounds the limiter's memory when principals are not a fixed
// list (mTLS with no clients configured: one bucket per certificate
// subject).
const maxBuckets = 10_000

// limiter is a token bucket per principal: each holds up to burst tokens,
// refilled at rate per second; a call takes one. Hand-written (twenty lines)
// rather than golang.org/x/time/rate, which is not otherwise a dependency.
type limiter struct {
	rate, burst float64
	now         func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(ratePerSecond, burst float64, now func() time.Time) *limiter {
	return &limiter{rate: ratePerSecond, burst: burst, now: now, buckets: map[string]*bucket{}}
}

// allow takes a token from key's bucket. When there is none it returns
// false and how long until there will be.
func (l *limiter) allow(key string) (bool, time.Duration) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= maxBuckets {
			l.dropFull(now)
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[key] = b
	}
	if elapsed := now.Sub(b.last); elapsed > 0 {
		b.tokens = math.Min(l.burst, b.tokens+elapsed.Seconds()*l.rate)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	wait := time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
	return false, wait
}

// dropFull forgets buckets that have refilled completely: a new bucket
// starts full, so forgetting them changes nothing. If every bucket is
// active, the oldest state is dropped wholesale rather than growing without
// bound.
func (l *limiter) dropFull(now time.Time) {
	for k, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
			delete(l.buckets, k)
		}
	}
	if len(l.buckets) >= maxBuckets {
		clear(l.buckets)
	}
}
