// Package logbuf batches log output: one write system call per flush
// interval instead of one per line; Writer.Handler, any slog handler's
// encoding done in batches off the caller's path; and Writer.JSONHandler,
// the same for slog's JSON lines with an encoder of this package's. The
// access log writes a line per request; on a loaded 2-core machine the
// synchronous write, and then the encoding, were a large part of a cached
// token's cost (docs/performance.md). Lines are never dropped: a full
// buffer is written out by the caller that fills it, Close encodes and
// flushes what is left, and a line logged after Close is written at once.
// A crash loses at most one interval of lines.
package logbuf

import (
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// maxBuffered is how much is held before a Write flushes synchronously.
const maxBuffered = 256 << 10

// Writer is an io.Writer that flushes to the underlying writer every
// interval. Safe for concurrent use; every Write is one whole log line from
// slog, and lines are never split or interleaved.
type Writer struct {
	out      io.Writer
	mu       sync.Mutex
	buf      []byte
	outMu    sync.Mutex // serialises writes to out, keeping line order
	spare    []byte     // the other half of the double buffer; guarded by outMu
	stop     chan struct{}
	done     chan struct{}
	closeOne sync.Once
	// closed is set by Close: no flusher runs any more, so every line
	// from then on is written by the caller that logs it.
	closed atomic.Bool
	q      *recordQueue // records Handler's handlers queued
}

// New starts a Writer flushing to out every interval.
func New(out io.Writer, interval time.Duration) *Writer {
	// Two buffers that swap at each flush: appends never grow a slice
	// in the common case, and no flush allocates.
	w := &Writer{
		out:   out,
		buf:   make([]byte, 0, 2*maxBuffered),
		spare: make([]byte, 0, 2*maxBuffered),
		q:     newRecordQueue(),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	go w.loop(interval)
	return w
}

// Write buffers p.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.buf = append(w.buf, p...)
	full := len(w.buf) >= maxBuffered
	w.mu.Unlock()
	// closed is read after the append: a Close whose last Flush missed
	// this line has set it by then (it sets it before flushing, and the
	// flush takes mu after the append released it).
	if full || w.closed.Load() {
		return len(p), w.Flush()
	}
	return len(p), nil
}

// Flush writes out everything buffered.
func (w *Writer) Flush() error {
	w.outMu.Lock()
	defer w.outMu.Unlock()
	w.mu.Lock()
	pending := w.buf
	w.buf = w.spare[:0]
	w.mu.Unlock()
	var err error
	if len(pending) > 0 {
		_, err = w.out.Write(pending)
	}
	w.spare = pending
	return err
}

func (w *Writer) loop(interval time.Duration) {
	defer close(w.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			w.encodeQueued()
			_ = w.Flush()
		case <-w.q.wake:
			w.encodeQueued()
		case <-w.stop:
			return
		}
	}
}

// Close stops the flusher and writes out what is left. Lines logged
// after Close are encoded and written by their callers, one at a time.
func (w *Writer) Close() error {
	w.closeOne.Do(func() {
		close(w.stop)
		<-w.done
		w.q.closed.Store(true)
		w.closed.Store(true)
	})
	w.encodeQueued()
	return w.Flush()
}

// encodeQueued encodes the records Handler's handlers queued.
func (w *Writer) encodeQueued() {
	w.q.encode()
}
