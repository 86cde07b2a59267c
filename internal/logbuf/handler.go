package logbuf

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
)

// Records are encoded in batches of about wakeAt (the flusher is woken
// when that many wait, and at every flush), which keeps each batch's
// encoding short next to the requests it runs beside. maxQueued is how many
// may wait before the caller that queues one more encodes them itself (the
// flusher is not keeping up).
const (
	wakeAt    = 256
	maxQueued = 4096
)

// Handler returns a slog.Handler that encodes records with inner (which
// must write to w) in w's flusher instead of in the caller: a call that
// logs a line pays for a copy of the record, and the encoding runs later,
// off the request's path, a batch at a time. Records keep their own time,
// are encoded in the order they were logged, and are never dropped: when
// maxQueued are waiting, the caller that logs one more encodes the queue
// itself, and Close encodes what is left before its final flush.
//
// Attribute values are encoded when the batch is, not when logged, so a
// value must not change after it is logged; a slog.LogValuer is resolved
// when it is queued.
func (w *Writer) Handler(inner slog.Handler) slog.Handler {
	return &handler{inner: inner, q: w.q}
}

// queued is a record, or a Line, waiting for its handler.
type queued struct {
	ctx  context.Context
	h    slog.Handler
	r    slog.Record
	line *Line
}

// recordQueue is the records waiting to be encoded, in order.
type recordQueue struct {
	mu      sync.Mutex
	pending []queued
	encMu   sync.Mutex // serialises encoding, keeping the order
	spare   []queued   // guarded by encMu
	wake    chan struct{}
	// closed is set when the Writer is closed: no flusher runs any
	// more, so whoever queues a record encodes the queue.
	closed atomic.Bool
}

func newRecordQueue() *recordQueue {
	return &recordQueue{wake: make(chan struct{}, 1)}
}

// push queues ctx and r for h, wakes the flusher when a batch is
// waiting, and encodes the queue itself when the flusher is behind. r
// must be a clone (Record.Clone): the queue keeps its attributes.
func (q *recordQueue) push(ctx context.Context, h slog.Handler, r *slog.Record) {
	q.mu.Lock()
	q.pending = append(q.pending, queued{ctx: ctx, h: h, r: *r})
	n := len(q.pending)
	q.mu.Unlock()
	q.queued(n)
}

// pushLine is push for a Line, which the queue takes over.
func (q *recordQueue) pushLine(ctx context.Context, h slog.Handler, l *Line) {
	q.mu.Lock()
	q.pending = append(q.pending, queued{ctx: ctx, h: h, line: l})
	n := len(q.pending)
	q.mu.Unlock()
	q.queued(n)
}

// queued wakes the flusher when a batch is waiting, and encodes the
// queue itself when the flusher is behind or, the Writer closed, gone; n
// is how many wait. closed is read after the push: a Close whose last
// encoding missed this record has set it by then.
func (q *recordQueue) queued(n int) {
	switch {
	case n >= maxQueued || q.closed.Load():
		q.encode()
	case n == wakeAt:
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
}

// encode hands every waiting record to its handler.
func (q *recordQueue) encode() {
	q.encMu.Lock()
	defer q.encMu.Unlock()
	q.mu.Lock()
	batch := q.pending
	q.pending = q.spare[:0]
	q.mu.Unlock()
	for i := range batch {
		if l := batch[i].line; l != nil {
			_ = handleLine(batch[i].ctx, batch[i].h, l)
		} else {
			_ = batch[i].h.Handle(batch[i].ctx, batch[i].r)
		}
		batch[i] = queued{} // let the record's values go
	}
	q.spare = batch[:0]
}

type handler struct {
	inner slog.Handler
	q     *recordQueue
}

func (h *handler) Enabled(ctx context.Context, l slog.Level) bool { return h.inner.Enabled(ctx, l) }

// Handle queues r. It runs at the bottom of a request's stack (the
// access and audit lines), so its frame is small: the record is copied
// once, into the queue, and only a record with a LogValuer goes through
// the copy that resolves it.
func (h *handler) Handle(ctx context.Context, r slog.Record) error {
	if hasLogValuer(&r) {
		r = resolved(&r)
	} else {
		r = r.Clone()
	}
	h.q.push(ctx, h.inner, &r)
	return nil
}

func (h *handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &handler{inner: h.inner.WithAttrs(attrs), q: h.q}
}

func (h *handler) WithGroup(name string) slog.Handler {
	return &handler{inner: h.inner.WithGroup(name), q: h.q}
}

// hasLogValuer reports whether any of r's attributes is a LogValuer.
func hasLogValuer(r *slog.Record) bool {
	found := false
	r.Attrs(func(a slog.Attr) bool {
		found = a.Value.Kind() == slog.KindLogValuer
		return !found
	})
	return found
}

// resolved returns a copy of r with its LogValuer attributes resolved now,
// so a value that redacts or snapshots itself does so when it is logged.
//
//go:noinline
func resolved(r *slog.Record) slog.Record {
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		a.Value = a.Value.Resolve()
		out.AddAttrs(a)
		return true
	})
	return out
}
