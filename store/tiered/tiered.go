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
//   - Bound: an entry is not served once MaxStale (default 2s) has passed
//     since the start of the read that last checked it against the shared
//     level: such a hit waits for a new read (which a hit from three
//     quarters of MaxStale on starts in the background, so that under
//     steady traffic nobody waits). That bounds staleness even if a
//     message is lost in a way nobody noticed.
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
	"sync"
	"sync/atomic"
	"time"

	"github.com/tokenbroker/tokenbroker/store"
)

// DefaultMaxStale bounds how long an L1 entry is served after the start
// of the read that last checked it against the shared level.
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
	// revalidateAfter is three quarters of MaxStale: from then on a hit
	// starts a background revalidation, so that steady traffic renews an
	// entry before its hits would have to wait.
	revalidateAfter time.Duration

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

	flights flights

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
	// rememberedUntil is nil while pending and buried are both empty,
	// else no earlier than the latest deadline either holds. It is
	// written under pendingMu (raised before a token is added, cleared by
	// unlockPending once both are empty) and read without it by every
	// read of the shared level, which has nothing to look up in them
	// once that deadline has passed (an expired token counts as absent).
	rememberedUntil atomic.Pointer[time.Time]

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
	s.revalidateAfter = opts.MaxStale / 4 * 3
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

// refused reports whether the shared level refused a write for good: a
// newer generation is stored, or the token was reported rejected.
func refused(err error) bool {
	return errors.Is(err, store.ErrStale) || errors.Is(err, store.ErrRevoked)
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
