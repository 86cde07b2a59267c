package tiered

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"

	"github.com/tokenbroker/tokenbroker/store"
)

// Concurrent misses of one key share one read of the shared level: what
// golang.org/x/sync/singleflight does, typed for this one use. A read is
// keyed by the key and its invalidation count together (a struct, where
// singleflight needs the two joined in a new string), its result needs no
// boxing, and the leader runs it without singleflight's closure and
// recovery frames: three allocations and a few frames of stack fewer on
// every read (docs/performance.md).

// flightKey names one read: a Get after an invalidation of the key must
// not take the result of a read that started before it.
type flightKey struct {
	key   string
	count uint64
}

// flight is one read of the shared level; done is closed once e and err
// are set.
type flight struct {
	done chan struct{}
	e    store.Entry
	err  error
}

// result is the read's answer, once done is closed.
func (c *flight) result() (store.Entry, error) {
	if c.err != nil {
		return store.Entry{}, c.err
	}
	return c.e, nil
}

// flights are the reads in progress, by flightKey.
type flights struct {
	mu    sync.Mutex
	calls map[flightKey]*flight
}

// join returns k's read in progress, or a new one that the caller must
// run (leader) and finish.
func (f *flights) join(k flightKey) (c *flight, leader bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok := f.calls[k]; ok {
		return c, false
	}
	if f.calls == nil {
		f.calls = make(map[flightKey]*flight)
	}
	c = &flight{done: make(chan struct{})}
	f.calls[k] = c
	return c, true
}

// finish ends k's read c, whose result is set: a later join starts a
// new read, and the callers waiting on c get its result.
func (f *flights) finish(k flightKey, c *flight) {
	f.mu.Lock()
	delete(f.calls, k)
	f.mu.Unlock()
	close(c.done)
}

// errReadPanicked is what the callers sharing a read get when the read
// panicked. Like any failure of the shared level it is a miss to the
// service (which fetches from the vendor), not the caller's error.
var errReadPanicked = errors.New("tiered: the read of the shared level panicked")

// lead runs the read c of key and publishes its result, even when the
// read panics: a later Get then starts a read of its own, and no caller
// waits for ever. A read in its caller's goroutine (inline) goes on
// panicking there, where the server's recovery answers the call INTERNAL
// and counts it; a read in a goroutine of its own is recovered and logged
// here, since nothing above it could catch it and the process with every
// call in flight would die.
func (s *Store) lead(ctx context.Context, k flightKey, c *flight, count *atomic.Uint64, inline bool) {
	defer func() {
		if !inline {
			if v := recover(); v != nil {
				// Formatted with %v: secret types print as [REDACTED].
				slog.Default().Error("panic in a read of the shared level; its callers get an error",
					"panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			}
		}
		s.flights.finish(k, c)
	}()
	c.err = errReadPanicked // replaced when the read returns
	// The read is never cancelled: the key's other callers share it.
	c.e, c.err = s.loadCounted(context.WithoutCancel(ctx), k.key, count)
}
