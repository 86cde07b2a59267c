package redisstore

import (
	"sync"
	"sync/atomic"
	"time"
)

// Breaker defaults.
const (
	// DefaultFailureThreshold failed commands in a row open the breaker;
	// when they are timeouts, they must also span DefaultMinOutage.
	DefaultFailureThreshold = 3
	// DefaultMinOutage keeps one stall (a burst of concurrent commands
	// timing out together while this process is starved of CPU) from
	// opening the breaker: only timeouts that go on for this long do. A
	// refused connection needs no such wait.
	DefaultMinOutage = 500 * time.Millisecond
	// DefaultProbeInterval is how often an open breaker PINGs Redis, in the
	// background, to close again.
	DefaultProbeInterval = 250 * time.Millisecond
)

// breaker is a consecutive-failure circuit breaker. Closed, commands run;
// after threshold failures in a row (timeouts: spread over at least
// minOutage), it opens and every command is refused at once, without
// touching the network, until a background probe (not a request: no
// caller pays for the probe) finds Redis answering again.
type breaker struct {
	threshold int
	minOutage time.Duration
	now       func() time.Time

	open atomic.Bool
	// opens counts closed->open transitions.
	opens atomic.Uint64
	// probing is true while a probe goroutine runs for this breaker.
	probing atomic.Bool

	// mu guards the streak: failures and since change together.
	mu sync.Mutex
	// failures is the streak's length, written under mu and read without
	// it: a success with no streak to end (every command while Redis is
	// well) takes no lock, so concurrent commands do not contend for one.
	// A success that reads 0 while a failure is being recorded is ordered
	// before that failure, one of the orders the lock allowed; one that
	// reads more takes the lock and ends the streak.
	failures atomic.Int64
	since    time.Time // first failure of the streak
}

// allow reports whether a command may run.
func (b *breaker) allow() bool { return !b.open.Load() }

// suspect reports whether the last command failed: Redis may be going
// down, and long waits are not worth it.
func (b *breaker) suspect() bool { return b.failures.Load() > 0 }

// success records a command Redis answered.
func (b *breaker) success() {
	if b.failures.Load() == 0 {
		return
	}
	b.mu.Lock()
	b.failures.Store(0)
	b.mu.Unlock()
}

// failure records a command that timed out or could not reach Redis, and
// reports whether it opened the breaker. A refused or reset connection is
// certain (nothing serves there), so those failures open it without
// waiting for minOutage; a timeout may be a stall of this process.
func (b *breaker) failure(certain bool) (opened bool) {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.failures.Load() == 0 {
		b.since = now
	}
	if n := b.failures.Add(1); n < int64(b.threshold) || (!certain && now.Sub(b.since) < b.minOutage) || b.open.Load() {
		return false
	}
	b.open.Store(true)
	b.opens.Add(1)
	return true
}

// reset closes the breaker after a successful probe.
func (b *breaker) reset() {
	b.mu.Lock()
	b.failures.Store(0)
	b.open.Store(false)
	b.mu.Unlock()
}
