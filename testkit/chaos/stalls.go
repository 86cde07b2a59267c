package chaos

import (
	"context"
	"time"
)

// Stall is a span in which the test process itself did not run: a ticker
// due at Start fired only at End. On a machine with more runnable threads
// than cores the callers, the brokers and Redis starve together, and a
// token loses that much life between the broker's check and the caller's
// receipt; the checker allows for it (docs/design.md, The chaos run).
type Stall struct {
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
}

// Stall tick and threshold: the watcher wakes every stallTick and records
// a stall when it woke stallMin or more after it was due.
const (
	stallTick = 10 * time.Millisecond
	stallMin  = 50 * time.Millisecond
)

// WatchStalls records the test process's stalls into h until ctx ends.
func WatchStalls(ctx context.Context, h *History) {
	t := time.NewTicker(stallTick)
	defer t.Stop()
	due := time.Now().Add(stallTick)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		if late := now.Sub(due); late >= stallMin {
			h.stall(Stall{Start: due, End: now})
		}
		due = now.Add(stallTick)
	}
}

func (h *History) stall(s Stall) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.Stalls = append(h.Stalls, s)
}

// stalled is how long the test process stood still during [from, to].
func (c *checker) stalled(from, to time.Time) time.Duration {
	var total time.Duration
	for _, s := range c.h.Stalls {
		total += overlap(s.Start, s.End, from, to)
	}
	return total
}

// overlap is how much of [start, end] falls within [from, to].
func overlap(start, end, from, to time.Time) time.Duration {
	start, end = later(start, from), earlier(end, to)
	if end.After(start) {
		return end.Sub(start)
	}
	return 0
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
