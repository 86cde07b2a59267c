package tiered

import (
	"context"
	"time"
)

// Invalidations: compare-and-delete in the shared level and L1, the
// deletions the shared level missed (retried until done) or may lose
// (remembered until the token expires), and other replicas' messages.

// CompareAndDelete implements store.Store: atomically in the shared level,
// then in L1 here and, by message, in the other replicas. When the shared
// level fails, L1 alone is checked: this replica at least stops serving
// the rejected token.
//
// Concurrent calls naming the same key and token (a storm of callers that
// all saw one token rejected) are coalesced: one goes to the shared level,
// and the others answer false, as they would have one after the other,
// since the first deleted the token.
func (s *Store) CompareAndDelete(ctx context.Context, key, accessToken string) (bool, error) {
	ch, leader := s.joinDelete(key + "\x00" + accessToken)
	if !leader {
		select {
		case <-ch:
			return false, nil
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
	defer s.leaveDelete(key+"\x00"+accessToken, ch)
	return s.compareAndDelete(ctx, key, accessToken)
}

// joinDelete returns the channel closed when the deletion of id ends, and
// whether the caller is to perform it.
func (s *Store) joinDelete(id string) (chan struct{}, bool) {
	s.deletingMu.Lock()
	defer s.deletingMu.Unlock()
	if ch, ok := s.deleting[id]; ok {
		return ch, false
	}
	ch := make(chan struct{})
	s.deleting[id] = ch
	return ch, true
}

func (s *Store) leaveDelete(id string, ch chan struct{}) {
	s.deletingMu.Lock()
	delete(s.deleting, id)
	s.deletingMu.Unlock()
	close(ch)
}

func (s *Store) compareAndDelete(ctx context.Context, key, accessToken string) (bool, error) {
	deleted, err := s.remote.CompareAndDelete(ctx, key, accessToken)
	s.mu.Lock()
	cur, have := s.entries[key]
	localMatch := have && cur.e.AccessToken == accessToken
	if localMatch {
		delete(s.entries, key)
	}
	s.invalidationCount(key).Add(1)
	s.mu.Unlock()
	if err != nil {
		// Done here; the shared level (and so the other replicas) still
		// hold the token until it answers again.
		s.rememberDelete(key, accessToken, cur.e.ExpiresAt)
		return localMatch, nil
	}
	if deleted {
		s.bury(key, accessToken, cur.e.ExpiresAt)
	}
	// Told even when the shared level held another token or none: a
	// replica may hold the rejected one in its L1 alone (fetched while it
	// could not reach the shared level).
	s.publish(ctx, key)
	return deleted, nil
}

// bury remembers that accessToken was deleted from key until expires (an
// hour when L1 did not know the token's life).
func (s *Store) bury(key, accessToken string, expires time.Time) {
	s.pendingMu.Lock()
	defer s.unlockPending()
	s.remember(&s.buried, key, accessToken, expires)
}

// remember adds accessToken under key to set until expires, or for an
// hour when L1 did not know the token's life. Called with pendingMu held.
func (s *Store) remember(set *deletions, key, accessToken string, expires time.Time) {
	now := s.now()
	if !expires.After(now) {
		expires = now.Add(time.Hour)
	}
	// Raised first: a read that sees the deadline then takes pendingMu,
	// and finds the token once this critical section ends.
	if until := s.rememberedUntil.Load(); until == nil || expires.After(*until) {
		s.rememberedUntil.Store(&expires)
	}
	set.add(key, accessToken, expires, now)
}

// mayRemember reports whether pending or buried may hold a token that
// has not expired; when not, a read of the shared level has nothing to
// look up in them.
func (s *Store) mayRemember() bool {
	until := s.rememberedUntil.Load()
	return until != nil && until.After(s.now())
}

// deleteAgain is called with what the shared level holds for key: if it
// is a token this replica deleted there before (the deletion was lost in
// a failover or a restart), it deletes it again and reports true (the
// token must not be served).
func (s *Store) deleteAgain(ctx context.Context, key, accessToken string) bool {
	s.pendingMu.Lock()
	_, ok := s.buried.get(key, accessToken, s.now())
	s.unlockPending()
	if !ok {
		return false
	}
	if deleted, err := s.remote.CompareAndDelete(ctx, key, accessToken); err == nil && deleted {
		s.publish(ctx, key)
	}
	return true
}

// rememberDelete keeps key's missed deletion of accessToken until
// expires (or an hour, when L1 did not know the token's life).
func (s *Store) rememberDelete(key, accessToken string, expires time.Time) {
	s.pendingMu.Lock()
	defer s.unlockPending()
	s.remember(&s.pending, key, accessToken, expires)
	s.startPendingRetries()
}

// pendingRetryInterval spaces the background attempts to finish missed
// deletions while the shared level stays unreachable.
const pendingRetryInterval = 250 * time.Millisecond

// startPendingRetries starts, unless it runs, the goroutine that retries
// the missed deletions until none is left (or the Store closes).
func (s *Store) startPendingRetries() {
	s.bgMu.Lock()
	defer s.bgMu.Unlock()
	if s.closed || s.retrying {
		return
	}
	s.retrying = true
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		tick := time.NewTicker(pendingRetryInterval)
		defer tick.Stop()
		for {
			select {
			case <-s.bgCtx.Done():
				return
			case <-tick.C:
			}
			s.finishPendingDeletes(s.bgCtx)
			s.pendingMu.Lock()
			s.bgMu.Lock()
			done := s.pending.len() == 0
			if done {
				s.retrying = false
			}
			s.bgMu.Unlock()
			s.unlockPending()
			if done {
				return
			}
		}
	}()
}

// finishPendingDeletes tries every missed deletion once.
func (s *Store) finishPendingDeletes(ctx context.Context) {
	s.pendingMu.Lock()
	batch := s.pending.all()
	s.unlockPending()
	for key, list := range batch {
		for _, p := range list {
			if ctx.Err() != nil {
				return
			}
			s.finishPendingDelete(ctx, key, p.accessToken)
		}
	}
}

// finishPendingDelete is called with what the shared level holds for key:
// if it is a token this replica invalidated while the shared level was
// away, the deletion is done now, and it reports true (the token must not
// be served).
func (s *Store) finishPendingDelete(ctx context.Context, key, accessToken string) bool {
	s.pendingMu.Lock()
	until, ok := s.pending.get(key, accessToken, s.now())
	s.unlockPending()
	if !ok {
		return false
	}
	_, err := s.remote.CompareAndDelete(ctx, key, accessToken)
	if err == nil {
		// Done there, and still not to come back here (the deletion
		// may yet be lost, as any other): moved from pending to buried
		// in one critical section, so that no read finds it in
		// neither. Told either way, as in compareAndDelete.
		s.pendingMu.Lock()
		s.pending.remove(key, accessToken)
		s.remember(&s.buried, key, accessToken, until)
		s.unlockPending()
		s.publish(ctx, key)
	}
	return true
}

// PendingDeletes is the number of invalidations waiting for the shared
// level.
func (s *Store) PendingDeletes() int {
	s.pendingMu.Lock()
	defer s.unlockPending()
	return s.pending.len()
}

// Forget drops key from L1: another replica changed it.
func (s *Store) Forget(key string) {
	s.drop(key)
	s.forgotten.Add(1)
}

// Resync marks every entry for revalidation on its next hit, and retries
// the invalidations the shared level missed (it is called when the
// subscription to the shared level is back).
func (s *Store) Resync() {
	s.epoch.Add(1)
	s.pendingMu.Lock()
	hasPending := s.pending.len() > 0
	s.unlockPending()
	if hasPending {
		s.startPendingRetries()
	}
}

// unlockPending clears rememberedUntil if pending and buried are both
// empty, and unlocks pendingMu.
func (s *Store) unlockPending() {
	if s.pending.len()+s.buried.len() == 0 {
		s.rememberedUntil.Store(nil)
	}
	s.pendingMu.Unlock()
}
