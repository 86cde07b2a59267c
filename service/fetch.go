package service

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"runtime/debug"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/tokenbroker/tokenbroker/internal/reqinfo"
	"github.com/tokenbroker/tokenbroker/store"
	"github.com/tokenbroker/tokenbroker/vendors"
	"github.com/tokenbroker/tokenbroker/vendors/budget"
)

// The fetch path (docs/design.md, The lease and generation protocol): a miss joins
// the key's one flight in this process; the flight takes the key's fetch
// lease across the fleet or waits, woken when the holder stores a token
// or lets go. Under the lease it reads the newest state past L1 (a token
// another holder just stored, a remembered rejection, the newest refresh
// token) before it asks the vendor, and it writes with the lease's
// generation, so a holder that lost its lease never overwrites a newer
// token.

// token returns an entry for r valid for at least minTTL (a fresh one may
// be shorter), whether it came from the cache, and the time it was found
// good at, which the answer's expires_in counts from: a hit reads the
// clock once, after the read, for all three.
func (s *Service) token(ctx context.Context, r *resolved, minTTL time.Duration, force bool) (store.Entry, bool, time.Time, error) {
	e, err := s.store.Get(ctx, r.key)
	switch {
	case err == nil:
		now := s.now()
		if s.usable(r, e, minTTL, force, now) {
			s.obs.CacheResult(r.vendor, true)
			s.maybeRefreshAhead(r, e, now)
			return e, true, now, nil
		}
	case !errors.Is(err, store.ErrNotFound):
		// A store failure is a miss: the vendor still answers.
		s.cacheWarn("cache read failed; fetching from the vendor", r.vendor, err)
	}
	s.obs.CacheResult(r.vendor, false)
	e, hit, err := s.miss(ctx, r, minTTL, force, e)
	return e, hit, s.now(), err
}

// miss waits for the key's one flight to the vendor (joining it, or
// starting it). stale is what the cache held, if anything. It is apart
// from token so that only a miss moves the entry to the heap (the
// flight's closure captures it), not every hit.
//
// Every fetch of a key in this process, refresh-ahead included, is one
// flight (docs/design.md, Token semantics), so no two ever present the
// same refresh token. The answer is checked again when the flight ends
// (docs/design.md, Token semantics, Pauses): a flight that served another
// caller's request (a refresh ahead, a shorter min_ttl, no force_refresh),
// or a wait this process was paused in, may leave a token that no longer
// fits this request; the caller then starts or joins the next flight, at
// most maxMissRounds in all.
func (s *Service) miss(ctx context.Context, r *resolved, minTTL time.Duration, force bool, stale store.Entry) (store.Entry, bool, error) {
	start := s.now()
	for round := 1; ; round++ {
		joined := s.invalidationsOf(r.key).Load()
		res, mine, err := s.joinFlight(ctx, r, minTTL, force, stale)
		if err != nil {
			// The caller's own deadline or cancellation; the flight goes
			// on for the others (and fills the cache).
			return store.Entry{}, false, err
		}
		if res.Err != nil {
			if !mine && round < maxMissRounds && !s.errorAnswers(ctx, res.Err) {
				continue
			}
			var remembered *rememberedRejection
			if errors.As(res.Err, &remembered) {
				s.obs.NegativeHit(r.vendor)
				reqinfo.SetCache(ctx, "negative")
			}
			return store.Entry{}, false, res.Err
		}
		f := res.Val.(fetched)
		if f.begun < joined && round < maxMissRounds {
			// The flight began before an invalidation of the key that
			// ended before this caller joined it: what it read or
			// fetched may be the token just reported rejected.
			continue
		}
		if s.answers(r, f.entry, f.cached, minTTL, force, start) {
			return f.entry, f.cached, nil
		}
		if round == maxMissRounds {
			return store.Entry{}, false, errNoAnswer
		}
		stale = f.entry
	}
}

// maxMissRounds bounds the flights one caller joins before it gives up.
const maxMissRounds = 3

// answers reports whether a flight's token, received now, answers the
// caller who started waiting at start: a cached token must still be
// servable; a freshly fetched one is returned while it has not expired,
// even when shorter than min_ttl (docs/design.md, Token semantics,
// min_ttl).
func (s *Service) answers(r *resolved, e store.Entry, cached bool, minTTL time.Duration, force bool, start time.Time) bool {
	if !cached {
		return e.ExpiresAt.After(s.now())
	}
	return s.servable(r, e, minTTL, force, start)
}

// errorAnswers reports whether the error another caller's flight ended
// with is this caller's answer too: the vendor's answer for the key (a
// rejection, remembered or not, an outage, throttling, the budget) or a
// panic. Not what was that flight's own: its cancellation or deadline, a
// background refresh that stopped because Redis failed (a miss fetches
// without the lease instead), another client's miss limit; the caller
// then starts the next flight.
func (s *Service) errorAnswers(ctx context.Context, err error) bool {
	var (
		ml *missLimitError
		ve *vendors.Error
		be *budget.ExhaustedError
	)
	switch {
	case errors.As(err, &ml):
		return ml.principal == reqinfo.Principal(ctx)
	case errors.As(err, &ve), errors.As(err, &be), errors.Is(err, errFlightPanicked):
		return true
	}
	return false
}

// joinFlight waits for the key's one flight to the vendor, joining it or
// starting it (mine). err is the caller's own context ending.
func (s *Service) joinFlight(ctx context.Context, r *resolved, minTTL time.Duration, force bool, stale store.Entry) (singleflight.Result, bool, error) {
	// started is set by the flight only if this caller started it; read
	// once the flight has answered (or never, when the caller gives up
	// first and the flight goes on without it).
	var started atomic.Bool
	ch := s.flight.DoChan(r.key, func() (v any, err error) {
		started.Store(true)
		begun := s.invalidationsOf(r.key).Load()
		defer s.recoverFlight(r, &err)
		// The fetch outlives any one caller: a caller that gives up must
		// not fail the others waiting on the same flight. Its retries
		// still fit in the starting caller's deadline, so a throttled
		// vendor's Retry-After reaches the caller in time.
		fctx := context.WithoutCancel(ctx)
		if deadline, ok := ctx.Deadline(); ok {
			fctx = vendors.WithRetryDeadline(fctx, deadline)
		}
		// Bounded all the same: a wait on other replicas' leases ends
		// within the vendor's timeout plus a lease's worth of slack.
		fctx, cancel := context.WithTimeout(fctx, r.settings.Timeout()+s.startup.FlightSlack)
		defer cancel()
		f, err := s.fetch(fctx, r, minTTL, force, stale)
		f.begun = begun
		return f, err
	})
	select {
	case res := <-ch:
		return res, started.Load(), nil
	case <-ctx.Done():
		return singleflight.Result{}, false, ctx.Err()
	}
}

// recoverFlight turns a panic in a flight (a strategy's Fetch, a store)
// into an error for its callers: singleflight re-raises a panic on a
// goroutine of its own, where no interceptor could catch it, and the
// process with every fetch in flight would die. Deferred in every flight.
func (s *Service) recoverFlight(r *resolved, err *error) {
	v := recover()
	if v == nil {
		return
	}
	s.obs.Panic()
	s.log.Error("panic in a token fetch; its callers get internal error", "vendor", r.vendor, "profile", r.profile,
		"panic", fmt.Sprint(v), "stack", string(debug.Stack()))
	*err = errFlightPanicked
}

// errFlightPanicked is what the callers of a flight that panicked get
// (INTERNAL "internal error").
var errFlightPanicked = errors.New("service: a token fetch panicked")

// fetched is a flight's result.
type fetched struct {
	entry  store.Entry
	cached bool // another replica (or flight) had just fetched it
	// begun is the key's invalidation count when the flight began.
	begun uint64
}

// invalidationStripes is how many counters Service.invalidations spreads
// keys over; keys sharing one cost each other at most an extra flight
// right after an invalidation.
const invalidationStripes = 256

// invalidationsOf is key's counter of completed invalidations.
func (s *Service) invalidationsOf(key string) *atomic.Uint64 {
	return &s.invalidations[maphash.String(s.jitterSeed, key)%invalidationStripes]
}

// usable reports whether a cached entry may be served.
func (s *Service) usable(r *resolved, e store.Entry, minTTL time.Duration, force bool, now time.Time) bool {
	if e.Rejected != nil || e.AccessToken == "" {
		return false
	}
	left := e.ExpiresAt.Sub(now)
	if left <= 0 || left < minTTL {
		return false
	}
	// A force_refresh is answered from the cache only with a token
	// fetched within force_refresh_interval, and still with min_ttl left
	// (docs/design.md, Token semantics, force_refresh).
	return !force || now.Sub(e.FetchedAt) < r.conf.forceRefreshInterval
}

// servable reports whether e, read after waiting since waitStart, answers
// the request: usable, or (for force_refresh) fetched by another holder
// while this one waited.
func (s *Service) servable(r *resolved, e store.Entry, minTTL time.Duration, force bool, waitStart time.Time) bool {
	if s.usable(r, e, minTTL, force, s.now()) {
		return true
	}
	if !force || e.Rejected != nil || e.AccessToken == "" || !e.FetchedAt.After(waitStart) {
		return false
	}
	left := e.ExpiresAt.Sub(s.now())
	return left > 0 && left >= minTTL
}

// fetch obtains a token from the vendor unless another flight or replica
// just did, under the key's fetch lease when there is a Leaser. stale is
// the entry the caller saw.
func (s *Service) fetch(ctx context.Context, r *resolved, minTTL time.Duration, force bool, stale store.Entry) (fetched, error) {
	// A flight that just ended may have stored a token or found the
	// credentials rejected since the caller looked.
	if err := s.rejected(ctx, r, false); err != nil {
		return fetched{}, err
	}
	if e, err := s.store.Get(ctx, r.key); err == nil {
		if s.usable(r, e, minTTL, force, s.now()) {
			return fetched{entry: e, cached: true}, nil
		}
		stale = e
	}
	if s.leases == nil {
		// One process: the flight is the only fetch of the key.
		e, _, err := s.fetchFromVendor(ctx, r, stale.RefreshToken, stale.Fence)
		return fetched{entry: e}, err
	}
	waitStart := s.now()
	waited := false
	for {
		woken, stop := s.leases.Notify(r.key)
		lease, err := s.leases.TryLease(ctx, r.key)
		if err != nil {
			stop()
			// Redis is failing: fetch without the lease (availability
			// over economy), with the primary grant: another replica may
			// hold the lease and be spending the refresh token this one
			// has (presented twice, it revokes the grant where servers
			// detect reuse).
			s.cacheWarn("cache lease failed; fetching without it", r.vendor, err)
			e, _, err := s.fetchFromVendor(ctx, r, "", stale.Fence)
			return fetched{entry: e}, err
		}
		if lease != nil {
			stop()
			if waited {
				s.obs.LeaseWait(r.vendor, s.now().Sub(waitStart))
			}
			return s.fetchUnderLease(ctx, r, lease, func(e store.Entry) bool {
				return s.servable(r, e, minTTL, force, waitStart)
			})
		}
		waited = true
		err = s.waitFor(ctx, woken)
		stop()
		if err != nil {
			return fetched{}, err
		}
		// The holder stored a token, remembered a rejection, or let go
		// (then the next round takes the lease).
		if e, err := store.GetFresh(ctx, s.store, r.key); err == nil && s.servable(r, e, minTTL, force, waitStart) {
			s.obs.LeaseWait(r.vendor, s.now().Sub(waitStart))
			return fetched{entry: e, cached: true}, nil
		}
		if err := s.rejected(ctx, r, true); err != nil {
			return fetched{}, err
		}
	}
}

// waitFor blocks until woken closes, the poll interval passes (a lost
// message, a dead holder) or ctx ends.
func (s *Service) waitFor(ctx context.Context, woken <-chan struct{}) error {
	poll := time.NewTimer(s.leases.PollInterval())
	defer poll.Stop()
	select {
	case <-woken:
	case <-poll.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// fetchUnderLease asks the vendor for r's token while holding lease,
// unless what the store holds now (read past L1) already answers (done).
func (s *Service) fetchUnderLease(ctx context.Context, r *resolved, lease store.Lease, done func(store.Entry) bool) (fetched, error) {
	defer lease.Release()
	// The previous holder may have stored a token, or a rejection, just
	// before letting go; and only the refresh token read now is current
	// (a refresh token read before waiting may have been redeemed since,
	// and presenting it again revokes the grant where servers detect
	// reuse).
	refreshToken := ""
	cur, err := store.GetFresh(ctx, s.store, r.key)
	if err == nil {
		if done(cur) {
			return fetched{entry: cur, cached: true}, nil
		}
		refreshToken = cur.RefreshToken
	}
	if err := s.rejected(ctx, r, true); err != nil {
		return fetched{}, err
	}
	if refreshToken != "" {
		// Spend it only if no earlier holder may have: a holder whose
		// lease expired mid-request (a stall, a crash) may have presented
		// it and never stored its successor. Then, and when in doubt, the
		// primary grant.
		if claimed, err := lease.ClaimRefreshToken(ctx, refreshToken); err != nil || !claimed {
			refreshToken = ""
		}
	}
	e, superseded, err := s.fetchFromVendor(ctx, r, refreshToken, lease.Fence())
	if superseded {
		// A later holder stored a newer token while this one fetched:
		// serve that one, as the rest of the fleet does.
		if cur, gerr := store.GetFresh(ctx, s.store, r.key); gerr == nil && done(cur) {
			return fetched{entry: cur, cached: true}, nil
		}
	}
	return fetched{entry: e}, err
}

// rejectedKey is the negative cache entry's key beside r's token.
func rejectedKey(r *resolved) string { return store.NegativeKey(r.key) }

// rejected returns the remembered rejection of r's credentials, if the
// negative cache holds one; fresh reads past L1.
func (s *Service) rejected(ctx context.Context, r *resolved, fresh bool) error {
	var e store.Entry
	var err error
	if fresh {
		e, err = store.GetFresh(ctx, s.store, rejectedKey(r))
	} else {
		e, err = s.store.Get(ctx, rejectedKey(r))
	}
	if err != nil || e.Rejected == nil || !e.ExpiresAt.After(s.now()) {
		return nil
	}
	return &rememberedRejection{err: &vendors.Error{
		Vendor:      r.vendor,
		Kind:        vendors.KindRejected,
		Status:      e.Rejected.Status,
		OAuthError:  e.Rejected.OAuthError,
		Description: e.Rejected.Description,
	}}
}

// rememberedRejection is a rejection answered from the negative cache.
type rememberedRejection struct{ err *vendors.Error }

func (e *rememberedRejection) Error() string { return e.err.Error() }
func (e *rememberedRejection) Unwrap() error { return e.err }

// fetchFromVendor calls the vendor and stores the token with fence
// generation fence before anything else is done with it (a rotated refresh token must
// not be lost), or remembers rejected credentials for negative_ttl.
// superseded reports that the store refused the write because a later
// lease holder had stored a token meanwhile (the fetched token is still
// valid).
func (s *Service) fetchFromVendor(ctx context.Context, r *resolved, refreshToken string, fence uint64) (e store.Entry, superseded bool, err error) {
	if err := s.chargeMiss(ctx, r); err != nil {
		return store.Entry{}, false, err
	}
	if s.startup.Budget != nil {
		// The vendor's budget: callers over it queue for a slot within
		// the deadline of the caller who started the fetch, or get
		// RESOURCE_EXHAUSTED with RetryInfo at once.
		bctx := ctx
		if limit, ok := vendors.RetryLimit(ctx); ok {
			var cancel context.CancelFunc
			bctx, cancel = context.WithDeadline(ctx, limit)
			defer cancel()
		}
		lim := r.settings.Limits()
		lim.MaxClientShare = r.conf.maxClientShare
		release, err := s.startup.Budget.AcquireFor(bctx, r.vendor, reqinfo.Principal(ctx), lim)
		if err != nil {
			s.recordOutcome(r, nil, err)
			return store.Entry{}, false, err
		}
		defer release()
	}
	start := s.now()
	fetchCtx, span := startUpstreamSpan(ctx, r)
	tok, err := r.call.Fetch(fetchCtx, refreshToken)
	endUpstreamSpan(span, outcome(err))
	s.obs.Upstream(r.vendor, outcome(err), s.now().Sub(start))
	s.recordOutcome(r, tok, err)
	if err != nil {
		var ve *vendors.Error
		if errors.As(err, &ve) && ve.Kind == vendors.KindRejected {
			s.rememberRejection(ctx, r, ve, fence)
		}
		s.log.Warn("vendor token request failed", "vendor", r.vendor, "profile", r.profile, "err", err)
		return store.Entry{}, false, err
	}
	for _, w := range tok.Warnings {
		s.log.Warn("vendor answer", "vendor", r.vendor, "profile", r.profile, "warning", w)
	}
	e = store.Entry{
		AccessToken:  tok.AccessToken,
		TokenType:    tok.TokenType,
		Scope:        tok.Scope,
		RefreshToken: tok.RefreshToken,
		IssuedAt:     tok.IssuedAt,
		ExpiresAt:    tok.ExpiresAt,
		FetchedAt:    s.now(),
		Fence:        fence,
	}
	if e.RefreshToken == "" {
		e.RefreshToken = refreshToken
	}
	switch err := s.store.Put(ctx, r.key, e); {
	case errors.Is(err, store.ErrStale):
		s.obs.StaleWrite(r.vendor)
		return e, true, nil
	case errors.Is(err, store.ErrRevoked):
		// The vendor answered with a token a caller reported rejected
		// (some vendors hand out the same token until it expires): it
		// is served to this caller, never cached for the fleet.
		s.log.Warn("the vendor issued a token a caller had reported rejected; served uncached", "vendor", r.vendor, "profile", r.profile)
	case err != nil:
		s.cacheWarn("cache write failed; token served uncached", r.vendor, err)
	}
	return e, false, nil
}

// rememberRejection stores ve for the vendor's negative_ttl, for the
// whole fleet (in this process alone while Redis is away).
func (s *Service) rememberRejection(ctx context.Context, r *resolved, ve *vendors.Error, fence uint64) {
	ttl := r.settings.NegativeTTL()
	if ttl <= 0 {
		return
	}
	now := s.now()
	err := s.store.Put(ctx, rejectedKey(r), store.Entry{
		Rejected:  &store.Rejection{Status: ve.Status, OAuthError: ve.OAuthError, Description: ve.Description},
		IssuedAt:  now,
		ExpiresAt: now.Add(ttl),
		FetchedAt: now,
		Fence:     fence,
	})
	if err != nil && !errors.Is(err, store.ErrStale) {
		s.cacheWarn("negative cache write failed", r.vendor, err)
	}
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

// refreshAheadJitter spreads refresh-ahead over ±5% of a token's life
// around RefreshAhead, so tokens fetched together (a fleet's cold start)
// are not refreshed in one wave.
const refreshAheadJitter = 0.05

// aheadJitter is the jitter for a refresh_ahead of frac: refreshAheadJitter,
// but never more than a quarter of the way to the token's issue or its
// expiry, so that a refresh_ahead near 0 or 1 keeps its meaning (0.98 still
// refreshes before expiry, 0.001 still refreshes within the first 0.2% of
// the life).
func aheadJitter(frac float64) float64 {
	return min(refreshAheadJitter, frac/4, (1-frac)/4)
}

// refreshAheadAt is when a background refresh of e may start: the same
// moment for every hit of one token (its jitter derives from the key and
// the token's issue time), so that hits do not re-roll the dice.
func (s *Service) refreshAheadAt(r *resolved, e store.Entry) time.Time {
	var h maphash.Hash
	h.SetSeed(s.jitterSeed)
	h.WriteString(r.key)
	var issued [8]byte
	binary.LittleEndian.PutUint64(issued[:], uint64(e.IssuedAt.UnixNano()))
	h.Write(issued[:])
	u := float64(h.Sum64()>>11) / (1 << 53) // uniform in [0, 1)
	return lifeFraction(e, r.conf.refreshAhead+(2*u-1)*aheadJitter(r.conf.refreshAhead))
}

// lifeFraction is the moment e has used frac of its life.
func lifeFraction(e store.Entry, frac float64) time.Time {
	return e.IssuedAt.Add(time.Duration(float64(e.ExpiresAt.Sub(e.IssuedAt)) * frac))
}

// maybeRefreshAhead starts one background refresh once e has used its
// share of its life; the caller keeps the cached token.
func (s *Service) maybeRefreshAhead(r *resolved, e store.Entry, now time.Time) {
	if r.conf.refreshAhead >= 1 {
		return
	}
	// Most hits are early in a token's life: they need no hash.
	if now.Before(lifeFraction(e, r.conf.refreshAhead-aheadJitter(r.conf.refreshAhead))) || now.Before(s.refreshAheadAt(r, e)) {
		return
	}
	// One refresh per key at a time in this process.
	if !s.ahead.start(r.key, now, now.Add(s.refreshBudget(r))) {
		return
	}
	s.startRefreshAhead(r, e)
}

// refreshBudget bounds one background refresh: the vendor's timeout and
// the wait for another replica's lease.
func (s *Service) refreshBudget(r *resolved) time.Duration {
	return r.settings.Timeout() + s.startup.FlightSlack
}

// startRefreshAhead runs refreshAhead in the background, as the key's one
// flight in this process (misses meanwhile join it, and it joins a miss's
// flight already running). It is apart from maybeRefreshAhead so that only
// a refresh moves the entry to the heap (the goroutine captures it), not
// every cache hit.
func (s *Service) startRefreshAhead(r *resolved, e store.Entry) {
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		ch := s.flight.DoChan(r.key, func() (res any, err error) {
			begun := s.invalidationsOf(r.key).Load()
			defer s.recoverFlight(r, &err)
			ctx, cancel := context.WithTimeout(s.bgCtx, s.refreshBudget(r))
			defer cancel()
			f, err := s.refreshAhead(ctx, r, e)
			f.begun = begun
			return f, err
		})
		var err error
		select {
		case res := <-ch:
			err = res.Err
		case <-s.bgCtx.Done():
			err = s.bgCtx.Err()
		}
		if err == nil {
			s.ahead.done(r.key)
			return
		}
		// Not again for a while: a vendor outage is not hammered by every
		// cache hit, and rejected credentials not before the negative
		// cache would let them through.
		backoff := time.Second
		var ve *vendors.Error
		if errors.As(err, &ve) && ve.Kind == vendors.KindRejected {
			backoff = max(backoff, r.settings.NegativeTTL())
		}
		s.ahead.failed(r.key, s.now().Add(backoff))
	}()
}

// refreshAhead replaces seen unless another flight or replica already did.
// When another replica holds the lease it waits for it to end, then looks
// again; it never drops the key from L1 (hits go on being served from
// memory meanwhile).
func (s *Service) refreshAhead(ctx context.Context, r *resolved, seen store.Entry) (fetched, error) {
	newer := func(e store.Entry) bool { return e.AccessToken != "" && e.IssuedAt.After(seen.IssuedAt) }
	// A hit that read the entry just before another refresh stored its
	// successor asks for nothing.
	cur, err := s.store.Get(ctx, r.key)
	if err == nil && newer(cur) {
		return fetched{entry: cur, cached: true}, nil
	}
	if s.leases == nil {
		// One process, and this is the key's one flight: the refresh
		// token read now is the newest.
		if err != nil {
			cur = seen
		}
		s.obs.RefreshAhead(r.vendor)
		e, _, err := s.fetchFromVendor(ctx, r, cur.RefreshToken, cur.Fence)
		return fetched{entry: e}, err
	}
	for {
		woken, stop := s.leases.Notify(r.key)
		lease, err := s.leases.TryLease(ctx, r.key)
		if err != nil {
			stop()
			return fetched{}, err // Redis is failing: the cached token serves on
		}
		if lease != nil {
			stop()
			s.obs.RefreshAhead(r.vendor)
			return s.fetchUnderLease(ctx, r, lease, newer)
		}
		err = s.waitFor(ctx, woken)
		stop()
		if err != nil {
			return fetched{}, err
		}
		if e, err := store.GetFresh(ctx, s.store, r.key); err == nil && newer(e) {
			return fetched{entry: e, cached: true}, nil
		}
	}
}
