package logbuf

import (
	"context"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"time"
)

// Line is a log line whose attributes are strings, unsigned integers and
// floats: the lines written on every call (the access and audit lines).
// It is what a slog.Record with the same time, level, message and
// attributes is, written the same way, without what a Record costs the
// caller: boxed values, a second array past five attributes, a check of
// every attribute for a LogValuer and a copy into the queue. A Line comes
// from NewLine, gets its attributes in order, and goes to Log, which takes
// it over.
type Line struct {
	time  time.Time
	level slog.Level
	msg   string
	n     int
	attrs [lineAttrs]lineAttr
	more  []lineAttr // past lineAttrs
}

// lineAttrs is how many attributes a Line holds in place: the access
// line has up to twelve.
const lineAttrs = 12

type lineKind uint8

const (
	lineString lineKind = iota
	lineUint64
	lineFloat64
)

type lineAttr struct {
	key  string
	str  string
	num  uint64 // a lineUint64's value, or a lineFloat64's bits
	kind lineKind
}

// value is a's value as slog holds it.
func (a *lineAttr) value() slog.Value {
	switch a.kind {
	case lineUint64:
		return slog.Uint64Value(a.num)
	case lineFloat64:
		return slog.Float64Value(math.Float64frombits(a.num))
	}
	return slog.StringValue(a.str)
}

var linePool = sync.Pool{New: func() any { return new(Line) }}

// NewLine returns an empty Line with a time, level and message, as
// slog.NewRecord takes them (a zero time is left out of the line).
func NewLine(t time.Time, level slog.Level, msg string) *Line {
	l := linePool.Get().(*Line)
	l.time, l.level, l.msg = t, level, msg
	return l
}

func (l *Line) add(a lineAttr) {
	if l.n < lineAttrs {
		l.attrs[l.n] = a
	} else {
		l.more = append(l.more, a)
	}
	l.n++
}

// String adds a string attribute.
func (l *Line) String(key, value string) { l.add(lineAttr{key: key, str: value, kind: lineString}) }

// Uint64 adds an unsigned integer attribute.
func (l *Line) Uint64(key string, value uint64) {
	l.add(lineAttr{key: key, num: value, kind: lineUint64})
}

// Float64 adds a float attribute.
func (l *Line) Float64(key string, value float64) {
	l.add(lineAttr{key: key, num: math.Float64bits(value), kind: lineFloat64})
}

// attr returns the i-th attribute.
func (l *Line) attr(i int) *lineAttr {
	if i < lineAttrs {
		return &l.attrs[i]
	}
	return &l.more[i-lineAttrs]
}

// record is l as a slog.Record, for a handler that takes only those.
func (l *Line) record() slog.Record {
	r := slog.NewRecord(l.time, l.level, l.msg, 0)
	for i := range l.n {
		a := l.attr(i)
		r.AddAttrs(slog.Attr{Key: a.key, Value: a.value()})
	}
	return r
}

// release puts l back in the pool, its strings let go.
func (l *Line) release() {
	clear(l.attrs[:min(l.n, lineAttrs)])
	clear(l.more)
	l.more = l.more[:0]
	if cap(l.more) > lineAttrs {
		l.more = nil // one long line does not keep a long array
	}
	l.time, l.msg, l.n = time.Time{}, "", 0
	linePool.Put(l)
}

// Log hands l to h, and l must not be used after. A handler of this
// package's (Writer.Handler, Writer.JSONHandler) queues l itself, in
// order with its records, and JSONHandler's encoder writes it; any other
// handler, or one derived with WithAttrs or WithGroup from slog's, gets l
// as a slog.Record. Like slog.Handler.Handle, Log does not check h's
// level: the caller asks h.Enabled first.
func Log(ctx context.Context, h slog.Handler, l *Line) error {
	if q, ok := h.(*handler); ok {
		q.q.pushLine(ctx, q.inner, l)
		return nil
	}
	err := h.Handle(ctx, l.record())
	l.release()
	return err
}

// handleLine writes l with h (what Handler wraps), in the flusher, and
// releases it.
func handleLine(ctx context.Context, h slog.Handler, l *Line) error {
	defer l.release()
	if j, ok := h.(*jsonHandler); ok {
		return j.handleLine(ctx, l)
	}
	return h.Handle(ctx, l.record())
}

// appendLine is appendRecord for a Line: the same bytes for the same
// line, and false when slog's handler must write it instead.
func appendLine(b []byte, l *Line) ([]byte, bool) {
	b, ok := appendHead(b, l.time, l.level, l.msg)
	if !ok {
		return b, false
	}
	for i := range l.n {
		a := l.attr(i)
		if a.key == "" {
			return b, false
		}
		b = append(b, ',')
		b = appendString(b, a.key)
		b = append(b, ':')
		switch a.kind {
		case lineString:
			b = appendString(b, a.str)
		case lineUint64:
			b = strconv.AppendUint(b, a.num, 10)
		case lineFloat64:
			f := math.Float64frombits(a.num)
			if math.IsInf(f, 0) || math.IsNaN(f) {
				return b, false
			}
			b = appendFloat(b, f)
		}
	}
	return append(b, "}\n"...), true
}
