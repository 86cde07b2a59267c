package store

import (
	"context"
	"sync"
	"time"
)

// DefaultMaxEntries bounds a Memory store when no size is given.
const DefaultMaxEntries = 100_000

// Memory is an in-process Store whose entries expire with their token. It
// is bounded: when full, expired entries are swept and, if that is not
// enough, the entry closest to expiry is dropped.
type Memory struct {
	max int
	now func() time.Time

	mu      sync.RWMutex
	entries map[string]Entry
}

var _ Store = (*Memory)(nil)

// NewMemory returns a Memory store holding at most maxEntries (0 means
// DefaultMaxEntries).
func NewMemory(maxEntries int) *Memory {
	if maxEntries <= 0 {
		maxEntries = DefaultMaxEntries
	}
	return &Memory{max: maxEntries, now: time.Now, entries: make(map[string]Entry)}
}

// Get implements Store.
func (m *Memory) Get(_ context.Context, key string) (Entry, error) {
	m.mu.RLock()
	e, ok := m.entries[key]
	m.mu.RUnlock()
	if !ok || !e.ExpiresAt.After(m.now()) {
		return Entry{}, ErrNotFound
	}
	return e, nil
}

// Put implements Store.
func (m *Memory) Put(_ context.Context, key string, e Entry) error {
	now := m.now()
	if !e.ExpiresAt.After(now) {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, exists := m.entries[key]; !exists && len(m.entries) >= m.max {
		m.makeRoom(now)
	}
	m.entries[key] = e
	return nil
}

// makeRoom sweeps expired entries, then drops the one closest to expiry.
// Called with mu held.
func (m *Memory) makeRoom(now time.Time) {
	for k, e := range m.entries {
		if !e.ExpiresAt.After(now) {
			delete(m.entries, k)
		}
	}
	if len(m.entries) < m.max {
		return
	}
	var victim string
	var soonest time.Time
	for k, e := range m.entries {
		if victim == "" || e.ExpiresAt.Before(soonest) {
			victim, soonest = k, e.ExpiresAt
		}
	}
	delete(m.entries, victim)
}

// CompareAndDelete implements Store.
func (m *Memory) CompareAndDelete(_ context.Context, key, accessToken string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.entries[key]
	if !ok || e.AccessToken != accessToken || !e.ExpiresAt.After(m.now()) {
		return false, nil
	}
	delete(m.entries, key)
	return true, nil
}

// Delete removes key whatever it holds (used by wrappers that learn of an
// invalidation elsewhere).
func (m *Memory) Delete(key string) {
	m.mu.Lock()
	delete(m.entries, key)
	m.mu.Unlock()
}

// Len returns the number of entries, expired ones included until swept.
func (m *Memory) Len() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.entries)
}
