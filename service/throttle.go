package service

import (
	"sync/atomic"
	"time"
)

// logThrottle lets one warning through per interval and counts the rest:
// with Redis down every cold request fails its cache calls, and a line for
// each would flood the log exactly when an operator reads it.
type logThrottle struct {
	interval   time.Duration
	next       atomic.Int64 // unix nanoseconds before which lines are held
	suppressed atomic.Int64
}

// allow reports whether a line may be written now, and how many were held
// back since the last one.
func (t *logThrottle) allow(now time.Time) (bool, int64) {
	next := t.next.Load()
	if now.UnixNano() < next || !t.next.CompareAndSwap(next, now.Add(t.interval).UnixNano()) {
		t.suppressed.Add(1)
		return false, 0
	}
	return true, t.suppressed.Swap(0)
}

// cacheWarn logs a cache failure, at most once a second.
func (s *Service) cacheWarn(msg, vendor string, err error) {
	if ok, held := s.cacheWarnings.allow(s.now()); ok {
		s.log.Warn(msg, "vendor", vendor, "err", err, "similar_warnings_suppressed", held)
	}
}
