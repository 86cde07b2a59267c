package service

import (
	"context"
	"fmt"
	"time"

	"github.com/tokenbroker/tokenbroker/internal/reqinfo"
)

// missLimitError refuses a vendor request because the client whose cache
// miss caused it is over limits.misses_per_minute (docs/design.md,
// Security model). RESOURCE_EXHAUSTED with RetryInfo.
type missLimitError struct {
	principal  string
	vendor     string
	retryAfter time.Duration
}

func (e *missLimitError) Error() string {
	return fmt.Sprintf("client %s: its cache misses caused more vendor token requests than limits.misses_per_minute allows; retry in %v", e.principal, e.retryAfter.Round(time.Millisecond))
}

// chargeMiss counts one vendor request against the authenticated client
// that caused it. Background refreshes and calls without an authenticated
// client (no clients configured: loopback only) are not counted.
func (s *Service) chargeMiss(ctx context.Context, r *resolved) error {
	principal := reqinfo.Principal(ctx)
	if principal == "" {
		return nil
	}
	wait, ok := s.startup.Misses.Take(ctx, principal, r.conf.missesPerMinute, r.conf.missBurst)
	if ok {
		return nil
	}
	s.log.Warn("client over its miss limit; vendor not asked", "principal", principal, "vendor", r.vendor, "profile", r.profile, "retry_after", wait)
	return &missLimitError{principal: principal, vendor: r.vendor, retryAfter: wait}
}
