// Package budget protects vendors' token endpoints from the whole fleet
// (docs/design.md, Vendors; the README's vendor settings max_requests_per_second,
// burst and max_concurrent_requests): a budget of token requests per
// second per vendor shared by every replica (a GCRA script in Redis,
// store/redisstore; GCRA is the ITU-T I.371 cell rate algorithm), the same
// budget kept in the process while the shared one cannot answer
// (golang.org/x/time/rate), and a per-replica cap on concurrent requests
// per vendor.
//
// A caller over the budget queues for the next free slot and sleeps until
// then, as long as that fits its context's deadline; when it does not, it
// gets an *ExhaustedError at once (the service answers RESOURCE_EXHAUSTED
// with RetryInfo) instead of waiting for a slot it cannot use.
package budget

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// DefaultMaxWait bounds the wait of a caller whose context has no
// deadline.
const DefaultMaxWait = time.Minute

// Limits are one vendor's limits; a zero field means unlimited.
type Limits struct {
	// RatePerSecond is the fleet-wide budget of token requests per second
	// (setting max_requests_per_second).
	RatePerSecond float64
	// Burst is how many requests may go at once after a quiet spell
	// (setting burst); below 1 it is 1. With 1, requests are spaced
	// 1/RatePerSecond apart and no second ever sees more than
	// RatePerSecond of them (rounded up), which is what a vendor that
	// counts per second needs. A burst B lets one second see up to
	// B + RatePerSecond - 1 (a token bucket's burst comes on top of its
	// rate).
	Burst int
	// MaxConcurrent caps this replica's requests in flight to the vendor
	// (setting max_concurrent_requests).
	MaxConcurrent int
	// MaxClientShare is the largest fraction of the budget one client of
	// the broker may take while other clients wait for it (config
	// limits.max_client_share); 0 or >= 1 means no bound. Kept by a
	// Shared budget that implements ShareReserver; per process while it
	// is down, the bound does not apply.
	MaxClientShare float64
}

// ShareReserver is implemented by a Shared budget that can bound one
// client's share of a vendor's budget (*redisstore.Backend).
type ShareReserver interface {
	// ReserveBudgetShare is ReserveBudget for a request of client, who
	// may take at most share of the budget while other clients wait;
	// byShare reports a refusal for the client's share.
	ReserveBudgetShare(ctx context.Context, vendor, client string, ratePerSec float64, burst int, maxWait time.Duration, share float64) (wait time.Duration, reserved, byShare bool, err error)
}

// burst is the effective burst.
func (l Limits) burst() int { return max(l.Burst, 1) }

// Shared is the fleet-wide budget; *redisstore.Backend implements it.
type Shared interface {
	// ReserveBudget reserves one request of vendor's budget if a slot is
	// free within maxWait, answering the wait before it may be sent;
	// otherwise it takes nothing and answers the wait that was needed.
	ReserveBudget(ctx context.Context, vendor string, ratePerSec float64, burst int, maxWait time.Duration) (wait time.Duration, reserved bool, err error)
}

// ExhaustedError says a vendor's budget has no slot within the caller's
// deadline. RetryAfter is when one would have been free.
type ExhaustedError struct {
	Vendor     string
	RetryAfter time.Duration
	// Client is set when the client's share of the budget
	// (Limits.MaxClientShare) refused it while others wait.
	Client string
}

func (e *ExhaustedError) Error() string {
	if e.Client != "" {
		return fmt.Sprintf("budget: vendor %s: client %s has taken its share of the fleet's budget while other clients wait; its next slot is %v away", e.Vendor, e.Client, e.RetryAfter.Round(time.Millisecond))
	}
	return fmt.Sprintf("budget: vendor %s: the fleet's budget of token requests is spent; the next slot is %v away, past the deadline", e.Vendor, e.RetryAfter.Round(time.Millisecond))
}

// Limiter applies Limits per vendor. It is safe for concurrent use.
type Limiter struct {
	shared Shared
	log    *slog.Logger

	mu      sync.Mutex
	vendors map[vendorKey]*vendorState
}

// vendorKey includes the limits, so that callers passing different limits
// for one vendor (a profile overriding them) each keep theirs instead of
// replacing each other's state.
type vendorKey struct {
	vendor string
	limits Limits
}

// vendorState is one vendor's per-process state.
type vendorState struct {
	limits  Limits
	permits chan struct{} // nil: no concurrency cap
	local   *rate.Limiter // nil: no rate limit
}

// New returns a Limiter using shared for the fleet-wide budget; with shared
// nil (no Redis) the budget is kept per process. Pass an untyped nil then,
// not a nil *redisstore.Backend. logger may be nil.
func New(shared Shared, logger *slog.Logger) *Limiter {
	if logger == nil {
		logger = slog.Default()
	}
	return &Limiter{shared: shared, log: logger, vendors: map[vendorKey]*vendorState{}}
}

func (l *Limiter) state(vendor string, lim Limits) *vendorState {
	key := vendorKey{vendor, lim}
	l.mu.Lock()
	defer l.mu.Unlock()
	if s, ok := l.vendors[key]; ok {
		return s
	}
	s := &vendorState{limits: lim}
	if lim.MaxConcurrent > 0 {
		s.permits = make(chan struct{}, lim.MaxConcurrent)
	}
	if lim.RatePerSecond > 0 {
		s.local = rate.NewLimiter(rate.Limit(lim.RatePerSecond), lim.burst())
	}
	l.vendors[key] = s
	return s
}

// Acquire waits until vendor's limits let one more token request go, and
// returns release, to be called when the request has ended (it frees the
// concurrency permit; it is safe to call more than once). ctx bounds the
// wait: when the budget's next slot lies past ctx's deadline, Acquire
// returns an *ExhaustedError at once; when ctx ends while waiting for a
// concurrency permit, ctx's error. Pass the context of the whole vendor
// call, so the wait counts against its deadline.
//
// The budget is shared by the fleet through Shared; when that errs (Redis
// down, breaker open) each process keeps the budget on its own, so for
// the outage the fleet may send up to replicas x the rate.
//
//	release, err := limiter.Acquire(ctx, "abbyy_vantage", settings.Limits())
//	if err != nil {
//		return err // *budget.ExhaustedError: RESOURCE_EXHAUSTED with RetryInfo
//	}
//	defer release()
//	resp, err := vendor.Fetch(ctx, input)
func (l *Limiter) Acquire(ctx context.Context, vendor string, lim Limits) (release func(), err error) {
	return l.AcquireFor(ctx, vendor, "", lim)
}

// AcquireFor is Acquire for a request caused by client (a name of the
// broker's caller; "" for none), who may take at most
// lim.MaxClientShare of the budget while other clients wait for it.
func (l *Limiter) AcquireFor(ctx context.Context, vendor, client string, lim Limits) (release func(), err error) {
	s := l.state(vendor, lim)
	release = func() {}
	if s.permits != nil {
		// The permit is taken first and held while waiting for the
		// budget: budget taken while queued for a permit would let the
		// queue go in one burst when permits free up.
		select {
		case s.permits <- struct{}{}:
		case <-ctx.Done():
			return nil, fmt.Errorf("budget: vendor %s: waiting for one of %d concurrent request permits: %w", vendor, lim.MaxConcurrent, ctx.Err())
		}
		var once sync.Once
		release = func() { once.Do(func() { <-s.permits }) }
	}
	if s.local == nil {
		return release, nil
	}
	if err := l.waitForBudget(ctx, vendor, client, s); err != nil {
		release()
		return nil, err
	}
	return release, nil
}

// lateTolerance is how late past its slot a request may still go: a
// caller woken later than that (a starved process) takes a new slot
// instead, so that requests woken together after a stall do not reach the
// vendor in one burst.
const lateTolerance = 20 * time.Millisecond

// waitForBudget reserves a slot of the budget and sleeps until it.
func (l *Limiter) waitForBudget(ctx context.Context, vendor, client string, s *vendorState) error {
	for {
		maxWait := DefaultMaxWait
		if deadline, ok := ctx.Deadline(); ok {
			maxWait = time.Until(deadline)
		}
		if maxWait < 0 {
			maxWait = 0
		}
		wait, reserved, byShare, err := l.reserve(ctx, vendor, client, s, maxWait)
		if err != nil {
			return err
		}
		if byShare {
			return &ExhaustedError{Vendor: vendor, RetryAfter: wait, Client: client}
		}
		if !reserved {
			return &ExhaustedError{Vendor: vendor, RetryAfter: wait}
		}
		if wait <= 0 {
			return nil
		}
		due := time.Now().Add(wait)
		timer := time.NewTimer(wait)
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			// The reserved slot goes unused: the fleet then sends less
			// than its budget, never more.
			return fmt.Errorf("budget: vendor %s: waiting %v for the budget's next slot: %w", vendor, wait, ctx.Err())
		}
		if time.Since(due) <= lateTolerance {
			return nil
		}
	}
}

// Reachability is implemented by a Shared budget that can tell a store
// that is down (the process's own budget then applies) from a command
// that failed in a store that is up (a pool of connections saturated by
// a cold start of thousands of tokens: the shared budget is asked again,
// since falling back would let each replica send the whole budget).
type Reachability interface {
	BudgetReachable(vendor string) bool
}

// sharedRetry spaces the attempts on a shared budget that is reachable
// but failed a command.
const sharedRetry = 20 * time.Millisecond

// reserve asks the shared budget, or the process's own when that is down.
func (l *Limiter) reserve(ctx context.Context, vendor, client string, s *vendorState, maxWait time.Duration) (wait time.Duration, reserved, byShare bool, err error) {
	lim := s.limits
	sharer, _ := l.shared.(ShareReserver)
	bounded := client != "" && lim.MaxClientShare > 0 && lim.MaxClientShare < 1 && sharer != nil
	for l.shared != nil {
		var wait time.Duration
		var reserved, byShare bool
		var err error
		if bounded {
			wait, reserved, byShare, err = sharer.ReserveBudgetShare(ctx, vendor, client, lim.RatePerSecond, lim.burst(), maxWait, lim.MaxClientShare)
		} else {
			wait, reserved, err = l.shared.ReserveBudget(ctx, vendor, lim.RatePerSecond, lim.burst(), maxWait)
		}
		if err == nil {
			return wait, reserved, byShare, nil
		}
		if ctx.Err() != nil {
			return 0, false, false, fmt.Errorf("budget: vendor %s: %w", vendor, ctx.Err())
		}
		if r, ok := l.shared.(Reachability); !ok || !r.BudgetReachable(vendor) {
			l.log.Debug("shared vendor budget unavailable; using this process's", "vendor", vendor, "err", err)
			break
		}
		timer := time.NewTimer(sharedRetry)
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return 0, false, false, fmt.Errorf("budget: vendor %s: %w", vendor, ctx.Err())
		}
		maxWait -= sharedRetry
	}
	now := time.Now()
	r := s.local.ReserveN(now, 1)
	if !r.OK() {
		// Cannot happen: the burst is at least 1.
		return 0, false, false, fmt.Errorf("budget: vendor %s: burst %d admits no request", vendor, lim.burst())
	}
	wait = r.DelayFrom(now)
	if wait > maxWait {
		r.CancelAt(now)
		return wait, false, false, nil
	}
	return wait, true, false, nil
}
