package auth

import (
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"
)

// maxBuckets bounds the limiter's memory when principals are not a fixed
// list (mTLS with no clients configured: one bucket per certificate
// subject).
const maxBuckets = 10_000

// limiter is a token bucket per principal (golang.org/x/time/rate): each
// holds up to burst tokens, refilled at rate per second; a call takes one.
// The buckets live in a bounded LRU: the principal dropped is the one
// idle longest, whose bucket has most likely refilled, and a new bucket
// starts full, so dropping it changes little.
type limiter struct {
	rate, burst float64
	now         func() time.Time

	buckets *lru.Cache[string, *rate.Limiter]
}

func newLimiter(ratePerSecond, burst float64, now func() time.Time) *limiter {
	buckets, err := lru.New[string, *rate.Limiter](maxBuckets)
	if err != nil {
		panic(err) // only for a size <= 0
	}
	return &limiter{rate: ratePerSecond, burst: burst, now: now, buckets: buckets}
}

// allow takes a token from key's bucket. When there is none it returns
// false and how long until there will be.
func (l *limiter) allow(key string) (bool, time.Duration) {
	now := l.now()
	b, ok := l.buckets.Get(key)
	if !ok {
		b = rate.NewLimiter(rate.Limit(l.rate), int(l.burst))
		if prev, found, _ := l.buckets.PeekOrAdd(key, b); found {
			b = prev
		}
	}
	r := b.ReserveN(now, 1)
	if !r.OK() {
		return false, time.Duration(1 / l.rate * float64(time.Second))
	}
	if wait := r.DelayFrom(now); wait > 0 {
		r.CancelAt(now) // refused: the token is not taken
		return false, wait
	}
	return true, 0
}
