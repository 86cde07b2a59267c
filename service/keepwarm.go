package service

import (
	"context"
	"errors"
	"sort"
	"time"

	"github.com/tokenbroker/tokenbroker/store"
)

// Keep-warm (docs/design.md, Token semantics, "Keep warm"): profiles with
// keep_warm get their token refreshed at the refresh-ahead point whether
// or not anyone calls, so the first caller after a quiet night never
// waits, and refresh tokens that lapse when unused stay alive. Every
// replica looks; the refresh itself is the refresh-ahead path (the fetch
// lease, and a "newer than what I saw" check), so one replica asks the
// vendor, within the vendor's budget.

// Defaults of keep-warm.
const (
	// DefaultKeepWarmInterval is the longest keep-warm sleeps between two
	// looks at its profiles' tokens; it wakes earlier for a refresh that
	// is due sooner.
	DefaultKeepWarmInterval = time.Second
	// keepWarmMinSleep keeps the loop from spinning on a refresh that is
	// due but busy (running, or backing off after a failure).
	keepWarmMinSleep = 50 * time.Millisecond
)

// startKeepWarm starts the keep-warm loop; it stops at Close.
func (s *Service) startKeepWarm() {
	interval := s.health.cfg.KeepWarmInterval
	if interval <= 0 {
		interval = DefaultKeepWarmInterval
	}
	s.health.loops.Go(func() {
		timer := time.NewTimer(0)
		defer timer.Stop()
		for {
			select {
			case <-s.bgCtx.Done():
				return
			case <-timer.C:
			}
			next := s.keepWarm(s.snapshot.Load(), s.now().Add(interval))
			timer.Reset(max(next.Sub(s.now()), keepWarmMinSleep))
		}
	})
}

// keepWarmProfiles returns the names of conf's keep_warm profiles, sorted
// (the configuration refuses more than service.keep_warm_max of them).
func keepWarmProfiles(conf *snapshot) []string {
	var names []string
	for name, p := range conf.profiles {
		if p.KeepWarm {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}

// keepWarm looks at each keep-warm profile's token once: a missing one is
// fetched, one past its refresh-ahead point refreshed (both in the
// background). It returns when to look again: the earliest refresh-ahead
// point still ahead, or latest.
func (s *Service) keepWarm(conf *snapshot, latest time.Time) time.Time {
	next := latest
	for _, name := range keepWarmProfiles(conf) {
		r, err := s.resolve(conf, selector{profile: name})
		if err != nil {
			// A profile that needs a caller's params cannot be fetched
			// without a caller: said once per configuration.
			if prev, _ := s.health.unresolvable.Swap(name, conf); prev != conf {
				s.log.Warn("keep_warm: the profile cannot be fetched without a caller's params; not kept warm", "profile", name, "vendor", conf.profiles[name].Vendor, "err", err)
			}
			continue
		}
		ctx, cancel := context.WithTimeout(s.bgCtx, statusWriteTimeout)
		e, err := s.store.Get(ctx, r.key)
		cancel()
		switch {
		case err == nil && e.AccessToken != "" && e.ExpiresAt.After(s.now()):
			if r.conf.refreshAhead >= 1 {
				// Refresh ahead is off: refresh when the token expires.
				if due := e.ExpiresAt; due.Before(next) {
					next = due
				}
				continue
			}
			if due := s.refreshAheadAt(r, e); due.After(s.now()) {
				if due.Before(next) {
					next = due
				}
				continue
			}
			s.maybeRefreshAhead(r, e, s.now())
		case err == nil || errors.Is(err, store.ErrNotFound):
			s.startKeepWarmFetch(r)
		default:
			s.cacheWarn("keep_warm: cache read failed", r.vendor, err)
		}
	}
	return next
}

// startKeepWarmFetch fetches r's missing token in the background through
// the refresh-ahead path with nothing seen before (the key's one flight,
// the lease, the negative cache under it, the back-off after a failure),
// unless a refresh of the key is already running in this process or
// backing off.
func (s *Service) startKeepWarmFetch(r *resolved) {
	now := s.now()
	if !s.ahead.start(r.key, now, now.Add(s.refreshBudget(r))) {
		return
	}
	s.startRefreshAhead(r, store.Entry{})
}
