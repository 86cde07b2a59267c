package service

import (
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// maxAheadKeys bounds the refresh-ahead bookkeeping: keys with a
// background refresh running or recently failed. Past it the least
// recently touched key is forgotten, which at worst lets one more refresh
// of it start early.
const maxAheadKeys = 10_000

// aheadTable records, per key, when the next background refresh may
// start (docs/design.md, Token semantics: one refresh per key per process
// at a time, a failed one not retried for 1 s or negative_ttl). Entries
// leave when a refresh succeeds, and the table is bounded, so keys whose
// refreshes keep failing cannot grow it.
type aheadTable struct {
	mu    sync.Mutex
	until *lru.Cache[string, time.Time]
}

func newAheadTable(size int) *aheadTable {
	c, err := lru.New[string, time.Time](size)
	if err != nil {
		panic(err) // only for a size <= 0
	}
	return &aheadTable{until: c}
}

// start reports whether a refresh of key may start now, and if so marks it
// busy until busyUntil.
func (t *aheadTable) start(key string, now, busyUntil time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if until, ok := t.until.Peek(key); ok && now.Before(until) {
		return false
	}
	t.until.Add(key, busyUntil)
	return true
}

// done forgets key: its refresh succeeded.
func (t *aheadTable) done(key string) {
	t.mu.Lock()
	t.until.Remove(key)
	t.mu.Unlock()
}

// failed holds key's next refresh until the given time.
func (t *aheadTable) failed(key string, until time.Time) {
	t.mu.Lock()
	t.until.Add(key, until)
	t.mu.Unlock()
}

// len is the number of keys held.
func (t *aheadTable) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.until.Len()
}
