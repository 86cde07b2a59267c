package tiered

import (
	"hash/maphash"
	"sync/atomic"
	"time"
)

// The in-process level itself: entries, the invalidation counters a read
// in flight checks, and eviction when it is full.

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
