package service

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/tokenbroker/tokenbroker/internal/reqinfo"
	"github.com/tokenbroker/tokenbroker/store"
	"github.com/tokenbroker/tokenbroker/vendors"
)

// lockPoll is how often a replica waiting on another's fetch re-reads the
// store.
const lockPoll = 20 * time.Millisecond

// token returns an entry for r valid for at least minTTL (a fresh one may
// be shorter), and whether it came from the cache.
func (s *Service) token(ctx context.Context, r *resolved, minTTL time.Duration, force bool) (store.Entry, bool, error) {
	if err := s.negative.get(r.key, s.now()); err != nil {
		s.obs.NegativeHit(r.vendor)
		reqinfo.SetCache(ctx, "negative")
		return store.Entry{}, false, err
	}
	e, err := s.store.Get(ctx, r.key)
	switch {
	case err == nil:
		if s.usable(e, minTTL, force) {
			s.obs.CacheResult(r.vendor, true)
			s.maybeRefreshAhead(r, e)
			return e, true, nil
		}
	case !errors.Is(err, store.ErrNotFound):
		// A store failure is a miss: the vendor still answers.
		s.cacheWarn("cache read failed; fetching from the vendor", r.vendor, err)
	}
	s.obs.CacheResult(r.vendor, false)
	return s.miss(ctx, r, minTTL, force, e)
}

// miss waits for the key's one flight to the vendor (joining it, or
// starting it). stale is what the cache held, if anything. It is apart
// from token so that only a miss moves the entry to the heap (the
// flight's closure captures it), not every hit.
func (s *Service) miss(ctx context.Context, r *resolved, minTTL time.Duration, force bool, stale store.Entry) (store.Entry, bool, error) {
	ch := s.flight.DoChan(r.key, func() (any, error) {
		// The fetch outlives any one caller: a caller that gives up must
		// not fail the others waiting on the same flight. Its retries
		// still fit in the starting caller's deadline (design section 4),
		// so a throttled vendor's Retry-After reaches the caller in time.
		fctx := context.WithoutCancel(ctx)
		if deadline, ok := ctx.Deadline(); ok {
			fctx = vendors.WithRetryDeadline(fctx, deadline)
		}
		return s.fetch(fctx, r, minTTL, force, stale)
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return store.Entry{}, false, res.Err
		}
		f := res.Val.(fetched)
		return f.entry, f.cached, nil
	case <-ctx.Done():
		return store.Entry{}, false, ctx.Err()
	}
}

// fetched is a flight's result.
type fetched struct {
	entry  store.Entry
	cached bool // another replica (or flight) had just fetched it
}

// usable reports whether a cached entry may be served.
func (s *Service) usable(e store.Entry, minTTL time.Duration, force bool) bool {
	now := s.now()
	left := e.ExpiresAt.Sub(now)
	if force {
		return left > 0 && now.Sub(e.FetchedAt) < s.conf.Load().forceRefreshInterval
	}
	return left > 0 && left >= minTTL
}

// fetch obtains a token from the vendor unless another replica just did,
// holding the store's lock (when there is one) while it does. stale is the
// entry the caller saw (its refresh token is reused).
func (s *Service) fetch(ctx context.Context, r *resolved, minTTL time.Duration, force bool, stale store.Entry) (fetched, error) {
	// A flight that just ended may have found the credentials rejected
	// after this caller looked: do not ask the vendor again.
	if err := s.negative.get(r.key, s.now()); err != nil {
		s.obs.NegativeHit(r.vendor)
		return fetched{}, err
	}
	// Re-check: a flight that just ended or another replica may have
	// stored a token since the caller looked.
	if e, err := s.store.Get(ctx, r.key); err == nil {
		if s.usable(e, minTTL, force) {
			return fetched{entry: e, cached: true}, nil
		}
		stale = e
	}
	if s.cfg.Locker != nil {
		release, e, done, err := s.lock(ctx, r, minTTL, force)
		if err != nil {
			return fetched{}, err
		}
		if done {
			return fetched{entry: e, cached: true}, nil
		}
		if release != nil {
			defer release()
		}
	}
	e, err := s.fetchFromVendor(ctx, r, stale.RefreshToken)
	if err != nil {
		return fetched{}, err
	}
	return fetched{entry: e}, nil
}

// lock takes the cross-replica fetch lock, or waits for its holder to store
// a token. done with an entry means the holder's token can be served;
// release is nil when the store is unreachable (fetch anyway: availability
// over economy).
func (s *Service) lock(ctx context.Context, r *resolved, minTTL time.Duration, force bool) (release func(), e store.Entry, done bool, err error) {
	waitStart := s.now()
	waited := false
	for {
		release, acquired, err := s.cfg.Locker.TryLock(ctx, r.key, s.lockTTL(r))
		if err != nil {
			s.cacheWarn("cache lock failed; fetching without it", r.vendor, err)
			return nil, store.Entry{}, false, nil
		}
		if acquired {
			if waited {
				s.obs.LockWait(r.vendor, s.now().Sub(waitStart))
			}
			// The previous holder may have stored a token just before
			// releasing.
			if e, err := s.store.Get(ctx, r.key); err == nil && (s.usable(e, minTTL, force) || (force && e.FetchedAt.After(waitStart))) {
				release()
				return nil, e, true, nil
			}
			return release, store.Entry{}, false, nil
		}
		waited = true
		select {
		case <-ctx.Done():
			return nil, store.Entry{}, false, ctx.Err()
		case <-time.After(lockPoll):
		}
		if e, err := s.store.Get(ctx, r.key); err == nil && (s.usable(e, minTTL, force) || (force && e.FetchedAt.After(waitStart))) {
			s.obs.LockWait(r.vendor, s.now().Sub(waitStart))
			return nil, e, true, nil
		}
	}
}

// lockTTL is how long a fetch lock on r's key may be held: LockTTL, or
// longer when the vendor's timeout allows a longer fetch (a lock that
// expired mid-fetch would let another replica fetch too).
func (s *Service) lockTTL(r *resolved) time.Duration {
	return max(s.cfg.LockTTL, r.settings.Timeout()+lockMargin)
}

// lockMargin covers storing the token after the vendor answered.
const lockMargin = 5 * time.Second

// fetchFromVendor calls the vendor, stores the token, and remembers
// rejected credentials for negative_ttl.
func (s *Service) fetchFromVendor(ctx context.Context, r *resolved, refreshToken string) (store.Entry, error) {
	start := s.now()
	fetchCtx, span := startUpstreamSpan(ctx, r)
	tok, err := r.call.Fetch(fetchCtx, refreshToken)
	endUpstreamSpan(span, outcome(err))
	s.obs.Upstream(r.vendor, outcome(err), s.now().Sub(start))
	if err != nil {
		var ve *vendors.Error
		if errors.As(err, &ve) && ve.Kind == vendors.KindRejected {
			if ttl := r.settings.NegativeTTL(); ttl > 0 {
				s.negative.put(r.key, err, s.now().Add(ttl))
			}
		}
		s.log.Warn("vendor token request failed", "vendor", r.vendor, "profile", r.profile, "err", err)
		return store.Entry{}, err
	}
	for _, w := range tok.Warnings {
		s.log.Warn("vendor answer", "vendor", r.vendor, "profile", r.profile, "warning", w)
	}
	e := store.Entry{
		AccessToken:  tok.AccessToken,
		TokenType:    tok.TokenType,
		Scope:        tok.Scope,
		RefreshToken: tok.RefreshToken,
		IssuedAt:     tok.IssuedAt,
		ExpiresAt:    tok.ExpiresAt,
		FetchedAt:    s.now(),
	}
	if e.RefreshToken == "" {
		e.RefreshToken = refreshToken
	}
	if err := s.store.Put(ctx, r.key, e); err != nil {
		s.cacheWarn("cache write failed; token served uncached", r.vendor, err)
	}
	s.negative.delete(r.key)
	return e, nil
}

func outcome(err error) string {
	if err == nil {
		return "ok"
	}
	var ve *vendors.Error
	if errors.As(err, &ve) {
		return ve.Kind.String()
	}
	return "error"
}

// maybeRefreshAhead starts one background refresh once e has used the
// RefreshAhead fraction of its life (with up to 5% jitter so replicas do
// not align); the caller keeps the cached token.
func (s *Service) maybeRefreshAhead(r *resolved, e store.Entry) {
	if r.conf.refreshAhead >= 1 {
		return
	}
	life := e.ExpiresAt.Sub(e.IssuedAt)
	frac := r.conf.refreshAhead - rand.Float64()*0.05
	if s.now().Before(e.IssuedAt.Add(time.Duration(float64(life) * frac))) {
		return
	}
	now := s.now()
	if until, busy := s.ahead.Load(r.key); busy && now.Before(until.(time.Time)) {
		return
	}
	// One refresh per key at a time; a failed one is not retried for a
	// second, so a vendor outage is not hammered by every cache hit.
	if _, loaded := s.ahead.LoadOrStore(r.key, now.Add(s.cfg.LockTTL)); loaded {
		if until, _ := s.ahead.Load(r.key); until != nil && now.Before(until.(time.Time)) {
			return
		}
		s.ahead.Store(r.key, now.Add(s.cfg.LockTTL))
	}
	s.startRefreshAhead(r, e)
}

// startRefreshAhead runs refreshAhead in the background. It is apart from
// maybeRefreshAhead so that only a refresh moves the entry to the heap
// (the goroutine captures it), not every cache hit.
func (s *Service) startRefreshAhead(r *resolved, e store.Entry) {
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		if err := s.refreshAhead(r, e); err != nil {
			s.ahead.Store(r.key, s.now().Add(time.Second))
			return
		}
		s.ahead.Delete(r.key)
	}()
}

// refreshAhead replaces e unless another replica already did.
func (s *Service) refreshAhead(r *resolved, seen store.Entry) error {
	ctx := s.bgCtx
	if cur, err := s.store.Get(ctx, r.key); err == nil && cur.IssuedAt.After(seen.IssuedAt) {
		return nil
	}
	if s.cfg.Locker != nil {
		release, acquired, err := s.cfg.Locker.TryLock(ctx, r.key, s.lockTTL(r))
		if err == nil && !acquired {
			return nil // another replica is refreshing
		}
		if acquired {
			defer release()
			if cur, err := s.store.Get(ctx, r.key); err == nil && cur.IssuedAt.After(seen.IssuedAt) {
				return nil
			}
		}
	}
	s.obs.RefreshAhead(r.vendor)
	_, err := s.fetchFromVendor(ctx, r, seen.RefreshToken)
	return err
}
