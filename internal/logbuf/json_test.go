package logbuf

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math"
	"strings"
	"sync"
	"testing"
	"time"
)

// slogLine is what slog's own JSON handler writes for r.
func slogLine(t testing.TB, opts *slog.HandlerOptions, r slog.Record) string {
	t.Helper()
	var buf bytes.Buffer
	if err := slog.NewJSONHandler(&buf, opts).Handle(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

// ourLine is what JSONHandler writes for r.
func ourLine(t testing.TB, opts *slog.HandlerOptions, r slog.Record) string {
	t.Helper()
	var out lockedBuffer
	w := New(&out, time.Hour)
	if err := w.JSONHandler(opts).Handle(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

type redacted struct{}

func (redacted) LogValue() slog.Value { return slog.StringValue("[redacted]") }

func TestJSONHandlerWritesWhatSlogWrites(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 7, 10, 47, 28, 123456789, time.FixedZone("x", 3600))
	rec := func(tm time.Time, level slog.Level, msg string, attrs ...slog.Attr) slog.Record {
		r := slog.NewRecord(tm, level, msg, 0)
		r.AddAttrs(attrs...)
		return r
	}
	replace := &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == "secret" {
			a.Value = slog.StringValue("***")
		}
		return a
	}}
	tests := []struct {
		name string
		opts *slog.HandlerOptions
		r    slog.Record
	}{
		{"access line", nil, rec(at, slog.LevelInfo, "request",
			slog.String("request_id", "QWERTYUIOPASD-1z"), slog.String("method", "/tokenbroker.v1.TokenService/GetToken"),
			slog.String("transport", "grpc"), slog.String("principal", "apikey:billing"), slog.String("vendor", "saasu"),
			slog.String("profile", "default"), slog.String("cache", "hit"), slog.String("code", "OK"),
			slog.Float64("duration_ms", 0.042), slog.Uint64("sampled_one_in", 10))},
		{"no attributes, no time", nil, rec(time.Time{}, slog.LevelWarn, "w")},
		{"levels between", nil, rec(at, slog.LevelError+2, "e", slog.Int("n", -7))},
		{"numbers", nil, rec(at, slog.LevelInfo, "n",
			slog.Int64("min", math.MinInt64), slog.Uint64("max", math.MaxUint64), slog.Bool("t", true), slog.Bool("f", false),
			slog.Duration("d", 1500*time.Millisecond), slog.Float64("zero", 0), slog.Float64("neg zero", math.Copysign(0, -1)),
			slog.Float64("tiny", 1.5e-7), slog.Float64("small", 1e-6), slog.Float64("big", 1e21), slog.Float64("under big", 999999999999999999999.0),
			slog.Float64("third", 1.0/3), slog.Float64("neg", -2.5e-300), slog.Float64("huge", math.MaxFloat64))},
		{"thousandths", nil, rec(at, slog.LevelInfo, "ms",
			slog.Float64("a", 0.042), slog.Float64("b", 1), slog.Float64("c", 12.5), slog.Float64("d", -0.001),
			slog.Float64("e", 123456789.123), slog.Float64("f", 999999999999.999), slog.Float64("g", 1e12),
			slog.Float64("h", 0.0425), slog.Float64("i", float64(1)/1000), slog.Float64("j", -1e-10))},
		{"escapes", nil, rec(at, slog.LevelInfo, "m\"s\\g\n",
			slog.String("k\"\t", "a\x00b\x1fc\x7f<>&\r\u2028\u2029é€𝄞"), slog.String("bad utf-8", "a\xffb\xc3"),
			slog.String("", "empty key"))},
		{"empty string attribute", nil, rec(at, slog.LevelInfo, "", slog.String("k", ""))},
		{"duplicate keys", nil, rec(at, slog.LevelInfo, "d", slog.String("k", "1"), slog.String("k", "2"))},
		{"LogValuer", nil, rec(at, slog.LevelInfo, "v", slog.Any("who", redacted{}))},
		{"group", nil, rec(at, slog.LevelInfo, "g", slog.Group("req", slog.String("id", "1")), slog.Group("empty"))},
		{"error", nil, rec(at, slog.LevelError, "e", slog.Any("err", errors.New("boom \"x\"")))},
		{"time attribute", nil, rec(at, slog.LevelInfo, "t", slog.Time("at", at))},
		{"infinite float", nil, rec(at, slog.LevelInfo, "f", slog.Float64("inf", math.Inf(1)), slog.Float64("nan", math.NaN()))},
		{"year past 9999", nil, rec(time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), slog.LevelInfo, "y")},
		{"ReplaceAttr", replace, rec(at, slog.LevelInfo, "r", slog.String("secret", "hunter2"))},
		{"AddSource", &slog.HandlerOptions{AddSource: true}, rec(at, slog.LevelInfo, "s")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			want := slogLine(t, tt.opts, tt.r.Clone())
			if got := ourLine(t, tt.opts, tt.r.Clone()); got != want {
				t.Errorf("line:\n got %q\nwant %q", got, want)
			}
		})
	}
}

func FuzzJSONHandlerWritesWhatSlogWrites(f *testing.F) {
	f.Add("request", "request_id", "abc", 0.042, int64(-3), uint64(10), int64(1))
	f.Add("m\"\\\n", "k\x00", "\xff\u2028é", 1e-7, int64(math.MinInt64), uint64(math.MaxUint64), int64(-1))
	f.Add("", "", "", 1e21, int64(0), uint64(0), int64(0))
	f.Fuzz(func(t *testing.T, msg, key, s string, fl float64, i int64, u uint64, nanos int64) {
		r := slog.NewRecord(time.Unix(0, nanos).UTC(), slog.Level(i%16), msg, 0)
		r.AddAttrs(slog.String(key, s), slog.Float64("f", fl), slog.Int64("i", i), slog.Uint64("u", u),
			slog.Bool(s, i%2 == 0), slog.Duration("d", time.Duration(i)), slog.String("k", key),
			slog.Float64("ms", float64(i%2e15)/1000), slog.Float64("us", float64(i)/1e6))
		want := slogLine(t, nil, r.Clone())
		if got := ourLine(t, nil, r.Clone()); got != want {
			t.Errorf("line:\n got %q\nwant %q", got, want)
		}
	})
}

func TestJSONHandlerLevels(t *testing.T) {
	t.Parallel()
	var lv slog.LevelVar
	w := New(&lockedBuffer{}, time.Hour)
	defer w.Close()
	tests := []struct {
		opts  *slog.HandlerOptions
		level slog.Level
		want  bool
	}{
		{nil, slog.LevelDebug, false},
		{nil, slog.LevelInfo, true},
		{&slog.HandlerOptions{Level: slog.LevelWarn}, slog.LevelInfo, false},
		{&slog.HandlerOptions{Level: slog.LevelWarn}, slog.LevelWarn, true},
		{&slog.HandlerOptions{Level: &lv}, slog.LevelInfo, true},
	}
	for _, tt := range tests {
		if got := w.JSONHandler(tt.opts).Enabled(context.Background(), tt.level); got != tt.want {
			t.Errorf("opts %+v: Enabled(%v) = %v, want %v", tt.opts, tt.level, got, tt.want)
		}
	}
	lv.Set(slog.LevelError)
	if w.JSONHandler(&slog.HandlerOptions{Level: &lv}).Enabled(context.Background(), slog.LevelWarn) {
		t.Error("a LevelVar raised to ERROR still enables WARN")
	}
}

func TestJSONHandlerDerivedHandlersAreSlogs(t *testing.T) {
	t.Parallel()
	var out lockedBuffer
	w := New(&out, time.Hour)
	log := slog.New(w.JSONHandler(nil))
	log.With("static", 1).WithGroup("req").Info("hello", "id", "a")
	log.Info("plain", "n", 2)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	lines := decode(t, out.String())
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2: %q", len(lines), out.String())
	}
	if lines[0]["static"] != 1.0 || lines[0]["req"].(map[string]any)["id"] != "a" || lines[1]["n"] != 2.0 {
		t.Errorf("lines %v", lines)
	}
}

// Lines written by many goroutines are whole and in each one's order,
// whether this handler or slog's (a group) encodes them.
func TestJSONHandlerKeepsEveryLineInOrder(t *testing.T) {
	t.Parallel()
	var out lockedBuffer
	w := New(&out, time.Millisecond)
	log := slog.New(w.JSONHandler(nil))
	const goroutines, each = 8, 3000 // past maxBuffered: callers flush too
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				if i%3 == 0 {
					log.Info("line", "g", g, "i", i, "grp", slog.GroupValue(slog.Int("x", i)))
				} else {
					log.Info("line", "g", g, "i", i, "pad", strings.Repeat("p", 64))
				}
			}
		})
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	checkEveryLineInOrder(t, out.String(), goroutines*each)
}

func BenchmarkAccessLine(b *testing.B) {
	at := time.Now()
	asRecord := func(ctx context.Context, h slog.Handler) {
		r := slog.NewRecord(at, slog.LevelInfo, "request", 0)
		r.AddAttrs(slog.String("request_id", "QWERTYUIOPASD-1z"), slog.String("method", "/tokenbroker.v1.TokenService/GetToken"),
			slog.String("transport", "grpc"), slog.String("principal", "apikey:billing"), slog.String("vendor", "saasu"))
		r.AddAttrs(slog.String("profile", "default"), slog.String("cache", "hit"), slog.String("code", "OK"),
			slog.Float64("duration_ms", 0.042))
		_ = h.Handle(ctx, r)
	}
	asLine := func(ctx context.Context, h slog.Handler) {
		l := NewLine(at, slog.LevelInfo, "request")
		l.String("request_id", "QWERTYUIOPASD-1z")
		l.String("method", "/tokenbroker.v1.TokenService/GetToken")
		l.String("transport", "grpc")
		l.String("principal", "apikey:billing")
		l.String("vendor", "saasu")
		l.String("profile", "default")
		l.String("cache", "hit")
		l.String("code", "OK")
		l.Float64("duration_ms", 0.042)
		_ = Log(ctx, h, l)
	}
	for _, bc := range []struct {
		name string
		h    func(w *Writer) slog.Handler
		log  func(context.Context, slog.Handler)
	}{
		{"queued slog", func(w *Writer) slog.Handler { return w.Handler(slog.NewJSONHandler(w, nil)) }, asRecord},
		{"JSONHandler", func(w *Writer) slog.Handler { return w.JSONHandler(nil) }, asRecord},
		{"Line", func(w *Writer) slog.Handler { return w.JSONHandler(nil) }, asLine},
	} {
		b.Run(bc.name, func(b *testing.B) {
			w := New(discard{}, 10*time.Millisecond)
			defer w.Close()
			h := bc.h(w)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				bc.log(ctx, h)
				w.encodeQueued() // count the encoding, wherever it runs
			}
		})
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
