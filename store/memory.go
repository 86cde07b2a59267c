package store

import (
	"context"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// DefaultMaxEntries bounds a Memory store when no size is given.
const DefaultMaxEntries = 100_000

// Memory is an in-process Store whose entries expire with their token. It
// is bounded: when full, the least recently used entry is dropped (a
// bounded LRU, github.com/hashicorp/golang-lru/v2); an expired entry is
// dropped when next read.
type Memory struct {
	now func() time.Time

	// mu makes CompareAndDelete one step; simplelru is not safe for
	// concurrent use, and a Get moves its entry to the front, so every
	// call takes mu.
	mu      sync.Mutex
	entries *simplelru.LRU[string, Entry]
}

var _ Store = (*Memory)(nil)

// NewMemory returns a Memory store holding at most maxEntries (0 means
// DefaultMaxEntries).
func NewMemory(maxEntries int) *Memory {
	if maxEntries <= 0 {
		maxEntries = DefaultMaxEntries
	}
	entries, err := simplelru.NewLRU[string, Entry](maxEntries, nil)
	if err != nil {
		panic(err) // only for a size <= 0
	}
	return &Memory{now: time.Now, entries: entries}
}

// Get implements Store.
func (m *Memory) Get(_ context.Context, key string) (Entry, error) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.entries.Get(key)
	if !ok {
		return Entry{}, ErrNotFound
	}
	if !e.ExpiresAt.After(now) {
		m.entries.Remove(key)
		return Entry{}, ErrNotFound
	}
	return e, nil
}

// Put implements Store. Like the Redis store's fenced write, it refuses
// (ErrStale) a write older than what it holds: a lower generation, or a
// token issued before the cached one, so a slow fetch never replaces a
// newer token (and its rotated refresh token) with an older one.
func (m *Memory) Put(_ context.Context, key string, e Entry) error {
	now := m.now()
	if !e.ExpiresAt.After(now) {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if cur, ok := m.entries.Peek(key); ok && cur.ExpiresAt.After(now) && older(e, cur) {
		return ErrStale
	}
	m.entries.Add(key, e)
	return nil
}

// older reports whether e is older than cur, the entry it would replace.
func older(e, cur Entry) bool {
	if e.Fence != cur.Fence {
		return e.Fence < cur.Fence
	}
	return e.AccessToken != "" && cur.AccessToken != "" && e.IssuedAt.Before(cur.IssuedAt)
}

// CompareAndDelete implements Store.
func (m *Memory) CompareAndDelete(_ context.Context, key, accessToken string) (bool, error) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.entries.Peek(key)
	if !ok || e.AccessToken != accessToken || !e.ExpiresAt.After(now) {
		return false, nil
	}
	m.entries.Remove(key)
	return true, nil
}

// Delete removes key whatever it holds (used by wrappers that learn of an
// invalidation elsewhere).
func (m *Memory) Delete(key string) {
	m.mu.Lock()
	m.entries.Remove(key)
	m.mu.Unlock()
}

// Len returns the number of entries, expired ones included until read.
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.entries.Len()
}
