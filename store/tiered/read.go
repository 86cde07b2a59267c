package tiered

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/tokenbroker/tokenbroker/store"
)

// The read path: a hit from L1, a miss (or a stale entry) read from the
// shared level once for all concurrent callers of a key, and L1 reconciled
// with what was read (write-back of a token only this replica holds).

// Get implements store.Store: from L1 when it holds a live entry checked
// against the shared level less than MaxStale ago (revalidated in the
// background from three quarters of MaxStale, or after a Resync), else
// from the shared level: an entry past MaxStale is not served before a
// read that began after the hit confirms it (or fails: then L1 answers).
func (s *Store) Get(ctx context.Context, key string) (store.Entry, error) {
	now := s.now()
	s.mu.RLock()
	sl, ok := s.entries[key]
	s.mu.RUnlock()
	if ok && sl.e.ExpiresAt.After(now) {
		if age := now.Sub(sl.checked); age < s.opts.MaxStale {
			s.hits.Add(1)
			if sl.epoch != s.epoch.Load() || age >= s.revalidateAfter {
				s.revalidate(key)
			}
			return sl.e, nil
		}
	}
	s.misses.Add(1)
	// Concurrent misses of one key share one read of the shared level,
	// but not across an invalidation: a Get after one (after GetFresh, say)
	// must not take the result of a read that started before it.
	count := s.invalidationCount(key)
	k := flightKey{key: key, count: count.Load()}
	c, leader := s.flights.join(k)
	inline := readsInline(ctx)
	switch {
	case leader && inline:
		s.lead(ctx, k, c, count, true)
		return c.result()
	case leader:
		go s.lead(ctx, k, c, count, false)
	}
	if inline {
		<-c.done
		return s.sharedResult(leader, c)
	}
	select {
	case <-c.done:
		return s.sharedResult(leader, c)
	case <-ctx.Done():
		return store.Entry{}, ctx.Err()
	}
}

// sharedResult is the answer of a read that a Get waited for: its own
// (leader, in a goroutine of its own) or another caller's, which Stats
// counts as shared.
func (s *Store) sharedResult(leader bool, c *flight) (store.Entry, error) {
	if !leader {
		s.shared.Add(1)
	}
	return c.result()
}

// inlineReadMargin is how far a caller's deadline must be for Get to read
// the shared level in the caller's own goroutine. A read is a few Redis
// commands, each bounded by the store's command timeout (50 ms by
// default), so it ends long before such a deadline, and the caller keeps
// leaving at its deadline. Nearer deadlines get a goroutine for the read
// and leave without it; that costs every read two more wake-ups across
// the machine's cores (on a loopback Redis at one call in flight, about
// 5% of the call: docs/performance.md).
const inlineReadMargin = time.Second

// readsInline reports whether a Get with ctx may wait for a shared read
// without watching its context: ctx has no deadline, or one at least
// inlineReadMargin away. Such a caller that is cancelled meanwhile (its
// client went away) returns once the read ends, at most a few command
// timeouts later, rather than at once.
func readsInline(ctx context.Context) bool {
	deadline, ok := ctx.Deadline()
	return !ok || time.Until(deadline) >= inlineReadMargin
}

// GetFresh implements store.FreshReader: a read of the shared level of
// its own (reconciling L1 with it), never one that started earlier.
func (s *Store) GetFresh(ctx context.Context, key string) (store.Entry, error) {
	s.misses.Add(1)
	return s.load(ctx, key)
}

// load reads key from the shared level and reconciles L1 with it.
func (s *Store) load(ctx context.Context, key string) (store.Entry, error) {
	return s.loadCounted(ctx, key, s.invalidationCount(key))
}

// loadCounted is load with key's invalidation counter, which Get has
// already looked up.
func (s *Store) loadCounted(ctx context.Context, key string, count *atomic.Uint64) (store.Entry, error) {
	s.mu.RLock()
	before := s.entries[key].seq
	s.mu.RUnlock()
	countBefore, epoch := count.Load(), s.epoch.Load()

	// What the read finds is known to match the shared level as of the
	// read's start, not its end: a deletion may fall in between.
	start := s.now()
	s.reads.Add(1)
	e, err := s.remote.Get(ctx, key)
	if err == nil && s.mayRemember() && (s.finishPendingDelete(ctx, key, e.AccessToken) || s.deleteAgain(ctx, key, e.AccessToken)) {
		e, err = store.Entry{}, store.ErrNotFound
	}
	found := err == nil

	now := s.now()
	s.mu.Lock()
	cur, have := s.entries[key]
	live := have && cur.e.ExpiresAt.After(now)
	if cur.seq != before || count.Load() != countBefore {
		// L1 changed for this key (a Put, an invalidation) while we read:
		// what we read may be older than what happened since, so L1 is
		// left as it is, and this caller gets the newer of the two: a
		// write since the read began (or one the shared level never
		// had), else what the read found, else (the shared level failed)
		// what L1 holds.
		s.mu.Unlock()
		switch {
		case live && (cur.seq != before || !cur.synced):
			return cur.e, nil
		case found:
			return e, nil
		case live && !errors.Is(err, store.ErrNotFound):
			return cur.e, nil
		}
		return store.Entry{}, err
	}
	switch {
	case found && live && cur.e.IssuedAt.After(e.IssuedAt) && !cur.synced:
		// Ours is newer: fetched while the shared level was away. Share
		// it, unless the shared level refuses it: then it is not ours to
		// serve either, and the shared level's token is.
		cur.checked, cur.epoch = start, epoch
		s.entries[key] = cur
		s.mu.Unlock()
		switch perr := s.remote.Put(ctx, key, cur.e); {
		case perr == nil:
			s.markSynced(key, cur.seq)
		case refused(perr):
			s.mu.Lock()
			if mine, ok := s.entries[key]; ok && mine.seq == cur.seq {
				s.setLocked(key, l1Entry{e: e, checked: start, epoch: epoch, synced: true}, now)
			}
			s.invalidationCount(key).Add(1)
			s.mu.Unlock()
			return e, nil
		}
		return cur.e, nil
	case found && live && cur.e.IssuedAt.After(e.IssuedAt):
		// Ours is newer and was stored: the shared level lost it.
		cur.checked, cur.epoch = start, epoch
		s.entries[key] = cur
		s.mu.Unlock()
		return cur.e, nil
	case found:
		s.setLocked(key, l1Entry{e: e, checked: start, epoch: epoch, synced: true}, now)
		s.mu.Unlock()
		return e, nil
	case errors.Is(err, store.ErrNotFound) && live && !cur.synced:
		// Never reached the shared level, so nobody can have deleted it
		// there: keep it, and share it now.
		cur.checked, cur.epoch = start, epoch
		s.entries[key] = cur
		s.mu.Unlock()
		switch perr := s.remote.Put(ctx, key, cur.e); {
		case perr == nil:
			s.markSynced(key, cur.seq)
		case refused(perr):
			// A replica leased the key since this entry's fetch, or a
			// caller reported the token rejected meanwhile (through any
			// replica): it is not ours to share, nor to serve.
			s.dropIf(key, cur.seq)
			return store.Entry{}, store.ErrNotFound
		}
		return cur.e, nil
	case errors.Is(err, store.ErrNotFound):
		// Deleted, expired or lost in the shared level.
		if have {
			delete(s.entries, key)
		}
		s.mu.Unlock()
		return store.Entry{}, store.ErrNotFound
	case live:
		// The shared level failed: serve what we hold, and try again
		// after MaxStale rather than on every hit.
		s.fallbacks.Add(1)
		cur.checked, cur.epoch = now, epoch
		s.entries[key] = cur
		s.mu.Unlock()
		return cur.e, nil
	}
	s.mu.Unlock()
	return store.Entry{}, err
}

func (s *Store) markSynced(key string, seq uint64) {
	s.mu.Lock()
	if cur, ok := s.entries[key]; ok && cur.seq == seq {
		cur.synced = true
		s.entries[key] = cur
	}
	s.mu.Unlock()
}

// revalidate starts a background load of key unless one is running.
func (s *Store) revalidate(key string) {
	s.bgMu.Lock()
	defer s.bgMu.Unlock()
	if s.closed || s.revalidating[key] {
		return
	}
	s.revalidating[key] = true
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		_, _ = s.load(s.bgCtx, key)
		s.bgMu.Lock()
		delete(s.revalidating, key)
		s.bgMu.Unlock()
	}()
}
