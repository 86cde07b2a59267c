package logbuf

import (
	"context"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// JSONHandler returns a slog.Handler whose lines are byte for byte what
// slog.NewJSONHandler(w, opts) writes, queued and encoded off the
// caller's path as Handler's are. Records whose attributes are all
// strings, integers, finite floats, booleans or durations (the access and
// audit lines: one of each per call) are encoded by this package, with no
// reflection: slog's own handler encodes every float with encoding/json
// and checks for groups, ReplaceAttr and the like attribute by attribute.
// Any other record (groups, LogValuers, errors, ReplaceAttr or AddSource
// in opts), and those of handlers derived with WithAttrs or WithGroup, are
// encoded by slog's handler, in the same queue, so lines keep the order
// they were logged in.
func (w *Writer) JSONHandler(opts *slog.HandlerOptions) slog.Handler {
	if opts == nil {
		opts = &slog.HandlerOptions{}
	}
	return w.Handler(&jsonHandler{
		w:    w,
		slow: slog.NewJSONHandler(w, opts),
		fast: opts.ReplaceAttr == nil && !opts.AddSource,
	})
}

// jsonHandler is the encoder JSONHandler's queue hands records to.
type jsonHandler struct {
	w    *Writer
	slow slog.Handler // slog's own, for what this one does not encode
	fast bool         // opts leave the encoding to this handler
}

// Enabled is slog's: the same options, the same levels.
func (h *jsonHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.slow.Enabled(ctx, l)
}

func (h *jsonHandler) WithAttrs(attrs []slog.Attr) slog.Handler { return h.slow.WithAttrs(attrs) }
func (h *jsonHandler) WithGroup(name string) slog.Handler       { return h.slow.WithGroup(name) }

// lineBufs holds the buffers lines are encoded in before they are copied
// into the Writer's: a line is a few hundred bytes, and a pool keeps the
// encoding free of allocations.
var lineBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// maxPooledLine is the largest buffer put back in the pool, so that one
// huge line does not keep its buffer alive for the process's lifetime.
const maxPooledLine = 16 << 10

func (h *jsonHandler) Handle(ctx context.Context, r slog.Record) error {
	if !h.fast {
		return h.slow.Handle(ctx, r)
	}
	bp := lineBufs.Get().(*[]byte)
	b, ok := appendRecord((*bp)[:0], &r)
	return h.write(ctx, bp, b, ok, func() slog.Record { return r })
}

// handleLine is Handle for a Line.
func (h *jsonHandler) handleLine(ctx context.Context, l *Line) error {
	if !h.fast {
		return h.slow.Handle(ctx, l.record())
	}
	bp := lineBufs.Get().(*[]byte)
	b, ok := appendLine((*bp)[:0], l)
	return h.write(ctx, bp, b, ok, l.record)
}

// write writes b, appended to the pooled buffer bp, when ok; else slog's
// handler writes record() instead. bp goes back to the pool.
func (h *jsonHandler) write(ctx context.Context, bp *[]byte, b []byte, ok bool, record func() slog.Record) error {
	var err error
	if ok {
		_, err = h.w.Write(b)
	} else {
		err = h.slow.Handle(ctx, record())
	}
	if cap(b) <= maxPooledLine {
		*bp = b
		lineBufs.Put(bp)
	}
	return err
}

// appendRecord appends r's line as slog's JSON handler writes it with no
// options (time if set, level, msg, the attributes in order, newline), in
// one pass over the attributes, and reports whether it could: a time RFC
// 3339 can hold, and attributes with a key, of the kinds it knows, floats
// finite (slog writes an error for the others). When it cannot, what it
// appended is to be thrown away and slog's handler used instead.
func appendRecord(b []byte, r *slog.Record) ([]byte, bool) {
	b, ok := appendHead(b, r.Time, r.Level, r.Message)
	if !ok {
		return b, false
	}
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "" {
			ok = false
			return false
		}
		b = append(b, ',')
		b = appendString(b, a.Key)
		b = append(b, ':')
		switch v := a.Value; v.Kind() {
		case slog.KindString:
			b = appendString(b, v.String())
		case slog.KindInt64:
			b = strconv.AppendInt(b, v.Int64(), 10)
		case slog.KindUint64:
			b = strconv.AppendUint(b, v.Uint64(), 10)
		case slog.KindBool:
			b = strconv.AppendBool(b, v.Bool())
		case slog.KindDuration:
			b = strconv.AppendInt(b, int64(v.Duration()), 10)
		case slog.KindFloat64:
			f := v.Float64()
			if math.IsInf(f, 0) || math.IsNaN(f) {
				ok = false
				return false
			}
			b = appendFloat(b, f)
		default:
			ok = false
		}
		return ok
	})
	return append(b, "}\n"...), ok
}

// appendHead opens a line with its time (if set), level and message, as
// slog's JSON handler does, or reports that t is past what RFC 3339 holds.
func appendHead(b []byte, t time.Time, level slog.Level, msg string) ([]byte, bool) {
	if y := t.Year(); !t.IsZero() && (y < 0 || y >= 10000) {
		return b, false
	}
	b = append(b, '{')
	if !t.IsZero() {
		b = append(b, `"time":"`...)
		b = t.AppendFormat(b, time.RFC3339Nano)
		b = append(b, `",`...)
	}
	b = append(b, `"level":`...)
	b = appendString(b, level.String())
	b = append(b, `,"msg":`...)
	b = appendString(b, msg)
	return b, true
}

// appendFloat writes a finite f as encoding/json does (which is what
// slog's handler calls): the shortest decimal that reads back as f, in
// exponent form only below 1e-6 or from 1e21, with a one-digit exponent
// when it has one digit.
func appendFloat(b []byte, f float64) []byte {
	if b, ok := appendThousandths(b, f); ok {
		return b
	}
	format := byte('f')
	if a := math.Abs(f); a != 0 && (a < 1e-6 || a >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// e-07 -> e-7
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

// appendThousandths writes f the way appendFloat would when f is the
// float64 nearest to a whole number of thousandths m with |m| < 1e15 (a
// duration in milliseconds from microseconds, as the access line's), with
// no search for the shortest digits: a decimal of at most 15 significant
// digits is the shortest that reads back as the float nearest to it, since
// any other decimal with as few digits lies further from it than half the
// gap between neighbouring floats. Zero is left to appendFloat (its sign).
func appendThousandths(b []byte, f float64) ([]byte, bool) {
	m := math.Round(f * 1000)
	if f == 0 || math.Abs(m) >= 1e15 || m/1000 != f {
		return b, false
	}
	n := int64(m)
	if n < 0 {
		b = append(b, '-')
		n = -n
	}
	b = strconv.AppendInt(b, n/1000, 10)
	if frac := n % 1000; frac != 0 {
		digits := [4]byte{'.', byte('0' + frac/100), byte('0' + frac/10%10), byte('0' + frac%10)}
		end := 4
		for digits[end-1] == '0' {
			end--
		}
		b = append(b, digits[:end]...)
	}
	return b, true
}

const hexDigits = "0123456789abcdef"

// plain is the bytes appendString copies as they are: printable ASCII
// but for `"` and `\`. Every other byte needs a look: an escape, or the
// start of a UTF-8 sequence.
var plain = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// appendString writes s as a JSON string the way slog does: `"` and `\`
// and control characters escaped (\n, \r, \t by name), invalid UTF-8 as
// U+FFFD, and U+2028 and U+2029 escaped; <, > and & are left as they are.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if plain[c] {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
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
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
