package service

import (
	"sync"
	"time"
)

// negativeCache remembers rejected credentials per cache key, so a wrong
// password under load costs one vendor request per negative_ttl instead of
// thousands (and does not lock the vendor account).
type negativeCache struct {
	max     int
	mu      sync.Mutex
	entries map[string]negativeEntry
}

type negativeEntry struct {
	err   error
	until time.Time
}

func newNegativeCache(max int) *negativeCache {
	return &negativeCache{max: max, entries: map[string]negativeEntry{}}
}

func (c *negativeCache) get(key string, now time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok {
		return nil
	}
	if !now.Before(e.until) {
		delete(c.entries, key)
		return nil
	}
	return e.err
}

func (c *negativeCache) put(key string, err error, until time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.max {
		now := time.Now()
		for k, e := range c.entries {
			if !now.Before(e.until) || len(c.entries) >= c.max {
				delete(c.entries, k)
			}
		}
	}
	c.entries[key] = negativeEntry{err: err, until: until}
}

func (c *negativeCache) delete(key string) {
	c.mu.Lock()
	delete(c.entries, key)
	c.mu.Unlock()
}
