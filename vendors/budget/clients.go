package budget

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// ClientLimiter bounds, per client of the broker, how many vendor token
// requests the client's cache misses may cause (config keys
// limits.misses_per_minute and limits.miss_burst; docs/design.md, Security
// model): without it a caller sending endless distinct inline credentials
// or params would spend the vendor's budget of every other tenant, and
// lock accounts. The count is the fleet's, in Redis through Shared (key
// store.BudgetKey("misses:<client>")), and the process's own while that cannot
// answer. A client over its limit is refused at once, never queued.
type ClientLimiter struct {
	shared Shared
	log    *slog.Logger

	mu    sync.Mutex
	local map[clientKey]*rate.Limiter
}

type clientKey struct {
	client           string
	perMinute, burst int
}

// NewClientLimiter returns a ClientLimiter counting in shared (nil: in
// this process only; pass an untyped nil). logger may be nil.
func NewClientLimiter(shared Shared, logger *slog.Logger) *ClientLimiter {
	if logger == nil {
		logger = slog.Default()
	}
	return &ClientLimiter{shared: shared, log: logger, local: map[clientKey]*rate.Limiter{}}
}

// MissBudgetPrefix prefixes a client's name in the shared budget's key.
const MissBudgetPrefix = "misses:"

// Take counts one vendor request caused by client, allowed perMinute per
// minute with bursts of burst. When the client is over its limit it takes
// nothing and answers ok false and when the next one would be allowed.
// perMinute <= 0 means unlimited.
func (c *ClientLimiter) Take(ctx context.Context, client string, perMinute, burst int) (retryAfter time.Duration, ok bool) {
	if perMinute <= 0 {
		return 0, true
	}
	burst = max(burst, 1)
	perSecond := float64(perMinute) / 60
	if c.shared != nil {
		wait, reserved, err := c.shared.ReserveBudget(ctx, MissBudgetPrefix+client, perSecond, burst, 0)
		if err == nil {
			return wait, reserved
		}
		c.log.Debug("shared miss limit unavailable; counting in this process", "client", client, "err", err)
	}
	key := clientKey{client, perMinute, burst}
	c.mu.Lock()
	lim, found := c.local[key]
	if !found {
		lim = rate.NewLimiter(rate.Limit(perSecond), burst)
		c.local[key] = lim
	}
	c.mu.Unlock()
	now := time.Now()
	r := lim.ReserveN(now, 1)
	if wait := r.DelayFrom(now); !r.OK() || wait > 0 {
		r.CancelAt(now)
		return wait, false
	}
	return 0, true
}
