// Package logjson is a slog.Handler that writes exactly what
// slog.JSONHandler writes, faster for the records a server logs on every
// request: a message and flat attributes of plain kinds (strings, numbers,
// booleans, durations, times, errors). It encodes those itself into a
// pooled buffer, with no reflection and no encoding/json call per float,
// and hands everything else (groups, LogValuers, arbitrary values, source
// locations, ReplaceAttr) to a slog.JSONHandler writing to the same
// writer, so the output never depends on which path a record took.
// TestMatchesSlog and FuzzMatchesSlog hold it to that.
package logjson

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// NewHandler returns a handler writing JSON lines to w. Options that
// change what a line holds (AddSource, ReplaceAttr) make it a plain
// slog.JSONHandler.
func NewHandler(w io.Writer, opts *slog.HandlerOptions) slog.Handler {
	var o slog.HandlerOptions
	if opts != nil {
		o = *opts
	}
	if o.AddSource || o.ReplaceAttr != nil {
		return slog.NewJSONHandler(w, &o)
	}
	out := &lockedWriter{w: w}
	return &Handler{level: o.Level, out: out, slow: slog.NewJSONHandler(out, &o)}
}

// Handler is the fast JSON handler; see the package comment.
type Handler struct {
	level slog.Leveler
	out   *lockedWriter
	// pre holds the attributes of WithAttrs, encoded, each with its
	// leading comma.
	pre []byte
	// slow is the equivalent slog.JSONHandler (same writer, options and
	// attributes) for records the fast path does not encode.
	slow slog.Handler
}

// lockedWriter serialises the writes of both paths, so lines never
// interleave whatever w is.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// Enabled implements slog.Handler.
func (h *Handler) Enabled(_ context.Context, level slog.Level) bool {
	min := slog.LevelInfo
	if h.level != nil {
		min = h.level.Level()
	}
	return level >= min
}

// WithAttrs implements slog.Handler.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	for _, a := range attrs {
		if !plain(a) {
			return h.slow.WithAttrs(attrs)
		}
	}
	pre := make([]byte, len(h.pre), len(h.pre)+64*len(attrs))
	copy(pre, h.pre)
	for _, a := range attrs {
		pre = appendAttr(pre, a)
	}
	return &Handler{level: h.level, out: h.out, pre: pre, slow: h.slow.WithAttrs(attrs)}
}

// WithGroup implements slog.Handler. Groups are rare: from here on the
// standard handler does all the work. An empty name returns h, as the
// slog.Handler contract asks (slog.Logger never passes one; called
// directly, slog.JSONHandler would open a group named "").
func (h *Handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return h.slow.WithGroup(name)
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// Handle implements slog.Handler.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	fast := r.Time.IsZero() || timeOK(r.Time)
	if fast {
		r.Attrs(func(a slog.Attr) bool {
			fast = plain(a)
			return fast
		})
	}
	if !fast {
		return h.slow.Handle(ctx, r)
	}
	bp := bufPool.Get().(*[]byte)
	b := (*bp)[:0]
	b = append(b, '{')
	if !r.Time.IsZero() {
		b = append(b, `"time":"`...)
		b = r.Time.AppendFormat(b, time.RFC3339Nano)
		b = append(b, `",`...)
	}
	b = append(b, `"level":`...)
	b = appendString(b, r.Level.String())
	b = append(b, `,"msg":`...)
	b = appendString(b, r.Message)
	b = append(b, h.pre...)
	r.Attrs(func(a slog.Attr) bool {
		b = appendAttr(b, a)
		return true
	})
	b = append(b, '}', '\n')
	_, err := h.out.Write(b)
	if cap(b) <= 16<<10 { // keep only ordinary buffers
		*bp = b
		bufPool.Put(bp)
	}
	return err
}

// plain reports whether the fast path encodes a exactly as slog does.
func plain(a slog.Attr) bool {
	if a.Key == "" {
		return false // slog elides or inlines these
	}
	v := a.Value
	switch v.Kind() {
	case slog.KindString, slog.KindInt64, slog.KindUint64, slog.KindBool, slog.KindDuration:
		return true
	case slog.KindFloat64:
		f := v.Float64()
		return !math.IsNaN(f) && !math.IsInf(f, 0)
	case slog.KindTime:
		return timeOK(v.Time())
	case slog.KindAny:
		err, isErr := v.Any().(error)
		_, marshals := v.Any().(json.Marshaler)
		return isErr && err != nil && !marshals && errorTextSafe(err)
	}
	return false
}

// errorTextSafe reports whether err.Error() returns normally. A typed nil
// pointer or a broken Error method panics; slog recovers and writes
// "<nil>" or "!PANIC: ...", so such values take slog's path.
func errorTextSafe(err error) (ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	_ = err.Error()
	return true
}

// timeOK: slog reports an error for years RFC 3339 cannot write.
func timeOK(t time.Time) bool {
	y := t.Year()
	return y >= 0 && y < 10000
}

// appendAttr appends ,"key":value for a plain attribute.
func appendAttr(b []byte, a slog.Attr) []byte {
	b = append(b, ',')
	b = appendString(b, a.Key)
	b = append(b, ':')
	v := a.Value
	switch v.Kind() {
	case slog.KindString:
		b = appendString(b, v.String())
	case slog.KindInt64:
		b = strconv.AppendInt(b, v.Int64(), 10)
	case slog.KindUint64:
		b = strconv.AppendUint(b, v.Uint64(), 10)
	case slog.KindFloat64:
		b = appendFloat(b, v.Float64())
	case slog.KindBool:
		b = strconv.AppendBool(b, v.Bool())
	case slog.KindDuration:
		b = strconv.AppendInt(b, int64(v.Duration()), 10) // nanoseconds, as encoding/json
	case slog.KindTime:
		b = append(b, '"')
		b = v.Time().AppendFormat(b, time.RFC3339Nano)
		b = append(b, '"')
	case slog.KindAny:
		b = appendString(b, v.Any().(error).Error())
	}
	return b
}

// appendFloat writes f as encoding/json does (which slog calls for
// floats): plain notation between 1e-6 and 1e21, else an exponent
// without a leading zero.
func appendFloat(b []byte, f float64) []byte {
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	start := len(b)
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// 1e-07 -> 1e-7
		exp := b[start:]
		if n := len(exp); n >= 4 && exp[n-4] == 'e' && exp[n-3] == '-' && exp[n-2] == '0' {
			b[len(b)-2] = b[len(b)-1]
			b = b[:len(b)-1]
		}
	}
	return b
}

const hexDigits = "0123456789abcdef"

// appendString writes s as a JSON string the way slog does: quotes,
// backslashes and control characters escaped (\n, \r, \t by name), invalid
// UTF-8 replaced by \ufffd, U+2028 and U+2029 escaped, nothing else
// (no HTML escaping).
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	clean := 0 // s[clean:i] still to copy
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[clean:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			clean = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[clean:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[clean:i]...)
			b = append(b, `\u202`...)
			b = append(b, hexDigits[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		clean = i
	}
	b = append(b, s[clean:]...)
	return append(b, '"')
}
