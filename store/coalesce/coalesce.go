// Package coalesce lets concurrent reads of one key share a single read of
// a slow store (Redis, sealed), with the same store.Store interface. It is
// what a replica without an in-process level (cache.l1_disabled) puts in
// front of Redis: under load, many callers ask for the same token at once,
// and one GET (and one decryption) can answer all of them.
//
// It keeps nothing between reads, so every answer is what the shared
// store held at some moment during the caller's call or just before it
// (at most one read's duration earlier). It never joins a read across a
// local change: a Get that starts after a Put, CompareAndDelete or
// GetFresh of its key returned reads afresh, so a replica that waited on
// another's fetch lease sees the token stored under it.
//
// Replicas with an in-process level learn of changes by message (package
// tiered); a Store given Options.Publish sends those messages for its own
// changes, so a fleet can mix replicas with and without that level.
package coalesce

import (
	"context"
	"hash/maphash"
	"strconv"
	"sync/atomic"

	"golang.org/x/sync/singleflight"

	"github.com/tokenbroker/tokenbroker/store"
)

// stripes spreads the change counters over keys.
const stripes = 256

// Store coalesces concurrent Gets of a key into one Get of the store it
// wraps.
type Store struct {
	inner   store.Store
	publish func(ctx context.Context, key string) error
	flight  singleflight.Group
	seed    maphash.Seed
	// gens change on every local change of a key in their stripe.
	gens [stripes]atomic.Uint64

	reads, shared, publishErrors atomic.Uint64
}

// Options tune a Store; zero values are the defaults.
type Options struct {
	// Publish tells other replicas that key changed (after a Put, and a
	// CompareAndDelete that deleted); nil when there are none to tell.
	Publish func(ctx context.Context, key string) error
}

var _ store.Store = (*Store)(nil)

// New returns a Store in front of inner.
func New(inner store.Store, opts Options) *Store {
	return &Store{inner: inner, publish: opts.Publish, seed: maphash.MakeSeed()}
}

// Stats are a Store's counters.
type Stats struct {
	// Reads counts Gets of the wrapped store; Shared counts Gets answered
	// by another caller's read (callers that gave up first do not count).
	Reads, Shared uint64
	// PublishErrors counts change messages that could not be sent.
	PublishErrors uint64
}

// Stats returns the counters.
func (s *Store) Stats() Stats {
	return Stats{Reads: s.reads.Load(), Shared: s.shared.Load(), PublishErrors: s.publishErrors.Load()}
}

// Get implements store.Store. The shared read is not tied to any one
// caller: a caller that gives up returns its own context's error and
// leaves the read to the others.
func (s *Store) Get(ctx context.Context, key string) (store.Entry, error) {
	flightKey := key + "\x00" + strconv.FormatUint(s.gen(key).Load(), 10)
	// Only the caller whose function runs reads; the function's end
	// happens before the result reaches this caller, so leader needs no
	// lock.
	leader := false
	ch := s.flight.DoChan(flightKey, func() (any, error) {
		leader = true
		s.reads.Add(1)
		return s.inner.Get(context.WithoutCancel(ctx), key)
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

// Put implements store.Store.
func (s *Store) Put(ctx context.Context, key string, e store.Entry) error {
	err := s.inner.Put(ctx, key, e)
	s.changed(key)
	if err == nil {
		s.tell(ctx, key)
	}
	return err
}

// CompareAndDelete implements store.Store.
func (s *Store) CompareAndDelete(ctx context.Context, key, accessToken string) (bool, error) {
	deleted, err := s.inner.CompareAndDelete(ctx, key, accessToken)
	s.changed(key)
	if deleted {
		s.tell(ctx, key)
	}
	return deleted, err
}

// tell publishes a change of key, even if the caller has given up since
// (the change is made). A lost message is not the caller's failure: the
// other replicas' levels revalidate within their MaxStale.
func (s *Store) tell(ctx context.Context, key string) {
	if s.publish == nil {
		return
	}
	if err := s.publish(context.WithoutCancel(ctx), key); err != nil {
		s.publishErrors.Add(1)
	}
}

// changed makes later Gets of key start a read of their own.
func (s *Store) changed(key string) { s.gen(key).Add(1) }

func (s *Store) gen(key string) *atomic.Uint64 {
	return &s.gens[maphash.String(s.seed, key)%stripes]
}

// GetFresh implements store.FreshReader: a read of its own, never
// joined to one that started earlier.
func (s *Store) GetFresh(ctx context.Context, key string) (store.Entry, error) {
	s.changed(key)
	s.reads.Add(1)
	return s.inner.Get(ctx, key)
}
