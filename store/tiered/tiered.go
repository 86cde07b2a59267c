// Package tiered puts a bounded in-process level (L1) in front of a shared
// store (Redis, sealed), with the same store.Store interface, so the hot
// path of a replica answers from memory and never waits on the network.
// Entries never outlive their token.
//
// Other replicas change the shared level: they refresh a token, or delete
// one that a caller reported as rejected (InvalidateToken). L1 learns of it
// by two means, each covering the other's blind spot:
//
//   - Push: every Put and every CompareAndDelete (deleted or not: another
//     replica may hold the named token alone) publishes the key on a
//     Redis pub/sub channel (Options.Publish), and each replica's
//     subscriber calls Forget, dropping the key within milliseconds.
//     Pub/sub was chosen over keyspace notifications (a server setting
//     that managed Redis often forbids, and node-local in a Cluster) and
//     over RESP3 client tracking (experimental in go-redis, standalone
//     only, and it invalidates raw values where L1 holds opened entries).
//     When the subscription is lost, messages may have been missed, so
//     Resync marks every entry for revalidation.
//   - Bound: an entry not revalidated against the shared level for
//     MaxStale (default 2s) is revalidated in the background on its next
//     hit (the hit itself is served from memory). That bounds staleness
//     even if a message is lost in a way nobody noticed.
//
// GetFresh reads past L1 (and reconciles L1 with what it read): the
// service uses it under the fetch lease and after waking from a wait, so a
// replica that waited for another's fetch sees its token, not its own
// stale L1 copy, while the hot path keeps reading L1.
//
// When the shared level fails, L1 keeps serving what it holds (tokens
// still inside their lifetime): a Redis outage costs no latency for warm
// keys. An entry written while the shared level was unreachable is kept,
// and written back, when the shared level answers that it has nothing for
// the key and the write's generation is still current (store.ErrStale
// otherwise: the entry is dropped); otherwise the newer token (by
// IssuedAt) wins, after the same write-back when ours is the newer and
// was never shared. A write the shared level refuses because the token
// was reported rejected (store.ErrRevoked) drops the entry from L1 too
// (docs/design.md, The lease and generation protocol). A CompareAndDelete that could not reach the
// shared level is remembered (up to MaxPendingDeletes) and done when the
// shared level answers again: on the next read of the key, and on Resync.
package tiered

import (
	"context"
	"errors"
	"hash/maphash"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/tokenbroker/tokenbroker/store"
)

// DefaultMaxStale bounds how long an L1 entry is served without being
// revalidated against the shared level.
const DefaultMaxStale = 2 * time.Second

// evictSample is how many entries a full L1 looks at to pick a victim.
const evictSample = 64

// MaxPendingDeletes bounds the invalidations remembered while the shared
// level is unreachable.
const MaxPendingDeletes = 10_000

// invalidationStripes spreads invalidation counters over keys, so that the
// invalidations of one key do not stop L1 fills of others.
const invalidationStripes = 256

// Options tune a Store; zero values are the defaults.
type Options struct {
	// MaxEntries bounds L1 (store.DefaultMaxEntries).
	MaxEntries int
	// MaxStale (DefaultMaxStale): see the package comment.
	MaxStale time.Duration
	// NoL1 keeps nothing in process (cache.l1_disabled): every Get reads
	// the shared level, concurrent Gets of one key sharing one read, and
	// the rest (publishing changes, missed invalidations retried, the
	// generation check on writes) works as with L1.
	NoL1 bool
	// Publish tells other replicas that key changed; nil when there are
	// none to tell.
	Publish func(ctx context.Context, key string) error
}

// Stats are a Store's counters.
type Stats struct {
	// Hits and Misses count Gets answered from L1 or not.
	Hits, Misses uint64
	// Fallbacks counts Gets answered from L1 because the shared level
	// failed.
	Fallbacks uint64
	// PublishErrors counts change messages that could not be sent (the
	// other replicas revalidate within their MaxStale). Failed calls to
	// the shared level itself are counted there (redisstore's Errors).
	PublishErrors uint64
	// Forgotten counts entries dropped on another replica's message.
	Forgotten uint64
	// Reads counts reads of the shared level; Shared counts Gets answered
	// by another caller's concurrent read of it.
	Reads, Shared uint64
	// Entries is the current size of L1.
	Entries int
}

// l1Entry is an entry of L1: a cached entry and what L1 knows of it.
type l1Entry struct {
	e store.Entry
	// seq identifies this write, to detect concurrent changes.
	seq uint64
	// checked is when it was last known to match the shared level, in
	// epoch.
	checked time.Time
	epoch   uint64
	// synced is false when the shared level could not be written.
	synced bool
}

// Store is an L1 cache in front of a shared store.Store.
type Store struct {
	remote store.Store
	opts   Options
	now    func() time.Time

	mu      sync.RWMutex
	entries map[string]l1Entry

	seq atomic.Uint64
	// invalidationCounts change on every local invalidation of a key in
	// their stripe; a read of the shared level that started before one
	// must not fill L1 with what it read.
	invalidationCounts [invalidationStripes]atomic.Uint64
	stripeSeed         maphash.Seed
	// epoch changes on Resync; entries of an older epoch are revalidated.
	epoch atomic.Uint64

	flight singleflight.Group

	// deleting holds the compare-and-deletes in flight, by key and token.
	deletingMu sync.Mutex
	deleting   map[string]chan struct{}

	// pending holds the compare-and-deletes the shared level missed, by
	// key: the access token to delete, until the token expires.
	pendingMu sync.Mutex
	pending   deletions
	// buried holds, by key, the tokens this replica deleted from the
	// shared level, until they expire: a failover or a restart of Redis
	// may lose the deletion, and the token must not come back here
	// (docs/design.md, The lease and generation protocol, Invalidations during an outage).
	buried deletions

	hits, misses, fallbacks, publishErrors, forgotten atomic.Uint64
	reads, shared                                     atomic.Uint64

	// Background revalidations: one per key at a time, owned by the Store.
	bgMu         sync.Mutex
	closed       bool
	bg           sync.WaitGroup
	bgCtx        context.Context
	bgCancel     context.CancelFunc
	revalidating map[string]bool
	// retrying is true while the missed deletions are being retried.
	retrying bool
}

var _ store.Store = (*Store)(nil)

// New returns an L1 in front of remote. Call Close to stop background
// revalidations.
func New(remote store.Store, opts Options) *Store {
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = store.DefaultMaxEntries
	}
	if opts.MaxStale <= 0 {
		opts.MaxStale = DefaultMaxStale
	}
	s := &Store{
		remote:       remote,
		opts:         opts,
		now:          time.Now,
		entries:      make(map[string]l1Entry),
		revalidating: make(map[string]bool),
		deleting:     make(map[string]chan struct{}),
		pending:      newDeletions(),
		buried:       newDeletions(),
		stripeSeed:   maphash.MakeSeed(),
	}
	s.bgCtx, s.bgCancel = context.WithCancel(context.Background())
	return s
}

// Close stops background revalidations and waits for them.
func (s *Store) Close() {
	s.bgMu.Lock()
	s.closed = true
	s.bgMu.Unlock()
	s.bgCancel()
	s.bg.Wait()
}

// Stats returns the counters.
func (s *Store) Stats() Stats {
	s.mu.RLock()
	n := len(s.entries)
	s.mu.RUnlock()
	return Stats{
		Hits:          s.hits.Load(),
		Misses:        s.misses.Load(),
		Fallbacks:     s.fallbacks.Load(),
		PublishErrors: s.publishErrors.Load(),
		Forgotten:     s.forgotten.Load(),
		Reads:         s.reads.Load(),
		Shared:        s.shared.Load(),
		Entries:       n,
	}
}

// Get implements store.Store: from L1 when it holds a live entry (which is
// revalidated in the background when stale), else from the shared level.
func (s *Store) Get(ctx context.Context, key string) (store.Entry, error) {
	now := s.now()
	s.mu.RLock()
	sl, ok := s.entries[key]
	s.mu.RUnlock()
	if ok && sl.e.ExpiresAt.After(now) {
		s.hits.Add(1)
		if sl.epoch != s.epoch.Load() || now.Sub(sl.checked) >= s.opts.MaxStale {
			s.revalidate(key)
		}
		return sl.e, nil
	}
	s.misses.Add(1)
	// Concurrent misses of one key share one read of the shared level,
	// but not across an invalidation: a Get after one (after GetFresh, say)
	// must not take the result of a read that started before it.
	flightKey := key + "\x00" + strconv.FormatUint(s.invalidationCount(key).Load(), 10)
	// Only the caller whose function runs reads; the function's end
	// happens before the result reaches this caller, so leader needs no
	// lock.
	leader := false
	ch := s.flight.DoChan(flightKey, func() (any, error) {
		leader = true
		return s.load(context.WithoutCancel(ctx), key)
	})
	select {
	case res := <-ch:
		if !leader {
			s.shared.Add(1)
		}
		if res.Err != nil {
			return store.Entry{}, res.Err
		}
		return res.Val.(store.Entry), nil
	case <-ctx.Done():
		return store.Entry{}, ctx.Err()
	}
}

// GetFresh implements store.FreshReader: a read of the shared level of
// its own (reconciling L1 with it), never one that started earlier.
func (s *Store) GetFresh(ctx context.Context, key string) (store.Entry, error) {
	s.misses.Add(1)
	return s.load(ctx, key)
}

// load reads key from the shared level and reconciles L1 with it.
func (s *Store) load(ctx context.Context, key string) (store.Entry, error) {
	s.mu.RLock()
	before := s.entries[key].seq
	s.mu.RUnlock()
	count := s.invalidationCount(key)
	countBefore, epoch := count.Load(), s.epoch.Load()

	s.reads.Add(1)
	e, err := s.remote.Get(ctx, key)
	if err == nil && (s.finishPendingDelete(ctx, key, e.AccessToken) || s.deleteAgain(ctx, key, e.AccessToken)) {
		e, err = store.Entry{}, store.ErrNotFound
	}
	found := err == nil

	now := s.now()
	s.mu.Lock()
	cur, have := s.entries[key]
	live := have && cur.e.ExpiresAt.After(now)
	if cur.seq != before || count.Load() != countBefore {
		// L1 changed for this key (a Put, an invalidation) while we read:
		// what we read may be older than what happened since.
		s.mu.Unlock()
		switch {
		case live:
			return cur.e, nil
		case found:
			return e, nil
		}
		return store.Entry{}, err
	}
	switch {
	case found && live && cur.e.IssuedAt.After(e.IssuedAt) && !cur.synced:
		// Ours is newer: fetched while the shared level was away. Share
		// it, unless the shared level refuses it: then it is not ours to
		// serve either, and the shared level's token is.
		cur.checked, cur.epoch = now, epoch
		s.entries[key] = cur
		s.mu.Unlock()
		switch perr := s.remote.Put(ctx, key, cur.e); {
		case perr == nil:
			s.markSynced(key, cur.seq)
		case refused(perr):
			s.mu.Lock()
			if mine, ok := s.entries[key]; ok && mine.seq == cur.seq {
				s.setLocked(key, l1Entry{e: e, checked: now, epoch: epoch, synced: true}, now)
			}
			s.invalidationCount(key).Add(1)
			s.mu.Unlock()
			return e, nil
		}
		return cur.e, nil
	case found && live && cur.e.IssuedAt.After(e.IssuedAt):
		// Ours is newer and was stored: the shared level lost it.
		cur.checked, cur.epoch = now, epoch
		s.entries[key] = cur
		s.mu.Unlock()
		return cur.e, nil
	case found:
		s.setLocked(key, l1Entry{e: e, checked: now, epoch: epoch, synced: true}, now)
		s.mu.Unlock()
		return e, nil
	case errors.Is(err, store.ErrNotFound) && live && !cur.synced:
		// Never reached the shared level, so nobody can have deleted it
		// there: keep it, and share it now.
		cur.checked, cur.epoch = now, epoch
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

// Put implements store.Store: the shared level, then L1, then a message to
// the other replicas. When the shared level fails the entry is still
// cached in L1 (and nil is returned: the token is cached, in this
// process).
func (s *Store) Put(ctx context.Context, key string, e store.Entry) error {
	now := s.now()
	if !e.ExpiresAt.After(now) {
		return nil
	}
	err := s.remote.Put(ctx, key, e)
	if refused(err) {
		s.drop(key)
		return err
	}
	if s.opts.NoL1 {
		// Nothing kept here: a later Get must not join a read of what was
		// there before.
		s.invalidationCount(key).Add(1)
		if err != nil {
			return err
		}
		s.publish(ctx, key)
		return nil
	}
	s.mu.Lock()
	s.setLocked(key, l1Entry{e: e, checked: now, epoch: s.epoch.Load(), synced: err == nil}, now)
	s.mu.Unlock()
	if err == nil {
		s.publish(ctx, key)
	}
	return nil
}

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
	now := s.now()
	if !expires.After(now) {
		expires = now.Add(time.Hour)
	}
	s.pendingMu.Lock()
	defer s.pendingMu.Unlock()
	s.buried.add(key, accessToken, expires, now)
}

// deleteAgain is called with what the shared level holds for key: if it
// is a token this replica deleted there before (the deletion was lost in
// a failover or a restart), it deletes it again and reports true (the
// token must not be served).
func (s *Store) deleteAgain(ctx context.Context, key, accessToken string) bool {
	s.pendingMu.Lock()
	_, ok := s.buried.get(key, accessToken, s.now())
	s.pendingMu.Unlock()
	if !ok {
		return false
	}
	if deleted, err := s.remote.CompareAndDelete(ctx, key, accessToken); err == nil && deleted {
		s.publish(ctx, key)
	}
	return true
}

// refused reports whether the shared level refused a write for good: a
// newer generation is stored, or the token was reported rejected.
func refused(err error) bool {
	return errors.Is(err, store.ErrStale) || errors.Is(err, store.ErrRevoked)
}

// rememberDelete keeps key's missed deletion of accessToken until
// expires (or an hour, when L1 did not know the token's life).
func (s *Store) rememberDelete(key, accessToken string, expires time.Time) {
	now := s.now()
	if !expires.After(now) {
		expires = now.Add(time.Hour)
	}
	s.pendingMu.Lock()
	defer s.pendingMu.Unlock()
	s.pending.add(key, accessToken, expires, now)
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
			s.pendingMu.Unlock()
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
	s.pendingMu.Unlock()
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
	s.pendingMu.Unlock()
	if !ok {
		return false
	}
	_, err := s.remote.CompareAndDelete(ctx, key, accessToken)
	if err == nil {
		s.pendingMu.Lock()
		s.pending.remove(key, accessToken)
		s.pendingMu.Unlock()
		// Done there, and still not to come back here (the deletion
		// may yet be lost, as any other); told either way, as in
		// compareAndDelete.
		s.bury(key, accessToken, until)
		s.publish(ctx, key)
	}
	return true
}

// PendingDeletes is the number of invalidations waiting for the shared
// level.
func (s *Store) PendingDeletes() int {
	s.pendingMu.Lock()
	defer s.pendingMu.Unlock()
	return s.pending.len()
}

// publish tells the other replicas that key changed, even if the caller
// has given up since (the change is made).
func (s *Store) publish(ctx context.Context, key string) {
	if s.opts.Publish == nil {
		return
	}
	if err := s.opts.Publish(context.WithoutCancel(ctx), key); err != nil {
		s.publishErrors.Add(1)
	}
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
	s.pendingMu.Unlock()
	if hasPending {
		s.startPendingRetries()
	}
}

// dropIf drops key if L1 still holds the write seq.
func (s *Store) dropIf(key string, seq uint64) {
	s.mu.Lock()
	if cur, ok := s.entries[key]; ok && cur.seq == seq {
		delete(s.entries, key)
	}
	s.invalidationCount(key).Add(1)
	s.mu.Unlock()
}

func (s *Store) drop(key string) {
	s.mu.Lock()
	delete(s.entries, key)
	s.invalidationCount(key).Add(1)
	s.mu.Unlock()
}

// invalidationCount is the invalidation counter of key's stripe.
func (s *Store) invalidationCount(key string) *atomic.Uint64 {
	return &s.invalidationCounts[maphash.String(s.stripeSeed, key)%invalidationStripes]
}

// setLocked stores entry under key, making room if L1 is full. Called with
// mu held.
func (s *Store) setLocked(key string, entry l1Entry, now time.Time) {
	if s.opts.NoL1 {
		return
	}
	entry.seq = s.seq.Add(1)
	if _, exists := s.entries[key]; !exists && len(s.entries) >= s.opts.MaxEntries {
		s.evictLocked(now)
	}
	s.entries[key] = entry
}

// evictLocked drops the expired entries of a sample of L1 or, if none
// is, the sampled entry closest to expiry.
func (s *Store) evictLocked(now time.Time) {
	var victim string
	var soonest time.Time
	expired, seen := 0, 0
	for k, sl := range s.entries {
		if !sl.e.ExpiresAt.After(now) {
			delete(s.entries, k)
			expired++
		} else if victim == "" || sl.e.ExpiresAt.Before(soonest) {
			victim, soonest = k, sl.e.ExpiresAt
		}
		if seen++; seen >= evictSample {
			break
		}
	}
	if expired == 0 && victim != "" {
		delete(s.entries, victim)
	}
}
