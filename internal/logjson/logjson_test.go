package logjson

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"testing"
	"time"
)

// marshalingError is an error that also marshals itself: slog encodes it
// with encoding/json, not as its message.
type marshalingError struct{}

func (marshalingError) Error() string                { return "plain" }
func (marshalingError) MarshalJSON() ([]byte, error) { return []byte(`{"custom":true}`), nil }

// nilPointerError's Error dereferences its receiver: a typed nil panics.
type nilPointerError struct{ msg string }

func (e *nilPointerError) Error() string { return e.msg }

// panickingError's Error always panics.
type panickingError struct{}

func (panickingError) Error() string { panic("broken Error method") }

type valuer struct{}

func (valuer) LogValue() slog.Value { return slog.StringValue("resolved") }

var when = time.Date(2026, 11, 24, 20, 31, 5, 123456789, time.FixedZone("X", 3600))

// both logs the same calls through this package's handler and through
// slog.JSONHandler and returns both outputs.
func both(opts *slog.HandlerOptions, log func(l *slog.Logger)) (fast, std string) {
	var a, b bytes.Buffer
	log(slog.New(NewHandler(&a, opts)))
	log(slog.New(slog.NewJSONHandler(&b, opts)))
	return a.String(), b.String()
}

// record logs one record with a fixed time (Logger methods would stamp
// time.Now, and the two handlers must see the same instant).
func record(l *slog.Logger, t time.Time, level slog.Level, msg string, attrs ...slog.Attr) {
	r := slog.NewRecord(t, level, msg, 0)
	r.AddAttrs(attrs...)
	if l.Handler().Enabled(context.Background(), level) {
		_ = l.Handler().Handle(context.Background(), r)
	}
}

func TestMatchesSlog(t *testing.T) {
	tests := []struct {
		name  string
		opts  *slog.HandlerOptions
		attrs []slog.Attr
		with  []slog.Attr
		group string
		t     time.Time
		level slog.Level
		msg   string
	}{
		{name: "access line", attrs: []slog.Attr{
			slog.String("request_id", "S7VC7FA6RORQO-2"), slog.String("method", "/tokenbroker.v1.TokenService/GetToken"),
			slog.String("principal", ""), slog.String("code", "OK"), slog.Float64("duration_ms", 0.042),
		}},
		{name: "every plain kind", attrs: []slog.Attr{
			slog.Int64("i", -42), slog.Uint64("u", math.MaxUint64), slog.Bool("b", true),
			slog.Duration("d", 1500*time.Millisecond), slog.Time("t", when), slog.Any("err", errors.New("boom \"x\"")),
			slog.Int("int", 7),
		}},
		{name: "floats as encoding/json writes them", attrs: []slog.Attr{
			slog.Float64("a", 0), slog.Float64("b", 1e-7), slog.Float64("c", 1e21), slog.Float64("d", 123456.789),
			slog.Float64("e", -2.5e-300), slog.Float64("f", 1e20), slog.Float64("g", 0.000001), slog.Float64("h", math.Copysign(0, -1)),
		}},
		{name: "escaping", msg: "line\nbreak\t\"q\" \\ \x01 \x7f <html>&", attrs: []slog.Attr{
			slog.String("ctl", "\x00\x1f\r"), slog.String("utf8", "héllo ✓ \u2028\u2029"), slog.String("bad", "a\xffb\xc3"),
			slog.String("key \"quoted\"\n", "v"),
		}},
		{name: "levels", level: slog.LevelWarn + 2, msg: "odd level"},
		{name: "below the level", opts: &slog.HandlerOptions{Level: slog.LevelWarn}, level: slog.LevelInfo},
		{name: "zero time", t: time.Time{}, attrs: []slog.Attr{slog.String("k", "v")}},
		{name: "WithAttrs", with: []slog.Attr{slog.String("service", "tokenbroker"), slog.Int("pid", 1)}, attrs: []slog.Attr{slog.String("k", "v")}},
		// What the fast path hands to slog must come out the same.
		{name: "group", attrs: []slog.Attr{slog.Group("g", slog.String("a", "b")), slog.String("k", "v")}},
		{name: "empty key", attrs: []slog.Attr{{}, slog.String("", "x"), slog.String("k", "v")}},
		{name: "LogValuer", attrs: []slog.Attr{slog.Any("v", valuer{})}},
		{name: "any value", attrs: []slog.Attr{slog.Any("m", map[string]int{"a": 1}), slog.Any("nil", nil)}},
		{name: "marshaling error", attrs: []slog.Attr{slog.Any("err", marshalingError{})}},
		{name: "typed nil error", attrs: []slog.Attr{slog.Any("err", error((*nilPointerError)(nil)))}},
		{name: "panicking error", attrs: []slog.Attr{slog.Any("err", panickingError{})}},
		{name: "WithAttrs typed nil error", with: []slog.Attr{slog.Any("err", error((*nilPointerError)(nil)))}, attrs: []slog.Attr{slog.String("k", "v")}},
		{name: "NaN and infinity", attrs: []slog.Attr{slog.Float64("nan", math.NaN()), slog.Float64("inf", math.Inf(1))}},
		{name: "year out of range", attrs: []slog.Attr{slog.Time("t", time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC))}},
		{name: "record year out of range", t: time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)},
		{name: "WithAttrs not plain", with: []slog.Attr{slog.Group("g", slog.Int("a", 1))}, attrs: []slog.Attr{slog.String("k", "v")}},
		{name: "WithGroup", group: "req", attrs: []slog.Attr{slog.String("k", "v")}},
		{name: "AddSource", opts: &slog.HandlerOptions{AddSource: true}, attrs: []slog.Attr{slog.String("k", "v")}},
		{name: "ReplaceAttr", opts: &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == "k" {
				a.Value = slog.StringValue("replaced")
			}
			return a
		}}, attrs: []slog.Attr{slog.String("k", "v")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			at := when
			if tt.t != (time.Time{}) || tt.name == "zero time" {
				at = tt.t
			}
			msg := tt.msg
			if msg == "" {
				msg = "request"
			}
			fast, std := both(tt.opts, func(l *slog.Logger) {
				if tt.with != nil {
					l = l.With(attrsToArgs(tt.with)...)
				}
				if tt.group != "" {
					l = l.WithGroup(tt.group)
				}
				record(l, at, tt.level, msg, tt.attrs...)
				record(l, at, tt.level, msg+" again", tt.attrs...) // pooled buffers reused
			})
			if fast != std {
				t.Errorf("output differs from slog.JSONHandler:\nfast: %s\nslog: %s", fast, std)
			}
		})
	}
}

func attrsToArgs(as []slog.Attr) []any {
	out := make([]any, len(as))
	for i, a := range as {
		out[i] = a
	}
	return out
}

// FuzzMatchesSlog: for any strings and numbers, the output is slog's.
func FuzzMatchesSlog(f *testing.F) {
	f.Add("request", "request_id", "S7VC7FA6RORQO-2", 0.042, int64(-1), true, int64(0))
	f.Add("a\nb\"c\\", "k\x00", "\xff\u2028\xc3", 1e-7, int64(math.MinInt64), false, int64(1<<62))
	f.Add("", "", "", 1e21, int64(0), false, int64(-1))
	f.Fuzz(func(t *testing.T, msg, key, value string, fl float64, n int64, b bool, nanos int64) {
		at := time.Unix(0, nanos).In(time.FixedZone("Z", int(n%50000)))
		fast, std := both(nil, func(l *slog.Logger) {
			record(l.With(key, value), at, slog.Level(n%13), msg,
				slog.String(key, value), slog.Float64("f", fl), slog.Int64("n", n), slog.Bool("b", b),
				slog.Duration("d", time.Duration(nanos)), slog.Time("t", at), slog.Any("err", errors.New(value)))
		})
		if fast != std {
			t.Fatalf("output differs from slog.JSONHandler:\nfast: %s\nslog: %s", fast, std)
		}
	})
}

// TestLinesDoNotInterleave: fast and delegated records written from many
// goroutines come out as whole lines.
func TestLinesDoNotInterleave(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(NewHandler(&buf, nil))
	done := make(chan struct{})
	for g := range 8 {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range 200 {
				if i%2 == 0 {
					l.Info("fast", "g", g, "i", i)
				} else {
					l.Info("slow", "g", g, "m", map[string]int{"i": i})
				}
			}
		}()
	}
	for range 8 {
		<-done
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 1600 {
		t.Fatalf("%d lines, want 1600", len(lines))
	}
	for _, line := range lines {
		if !strings.HasPrefix(line, `{"time":`) || !strings.HasSuffix(line, "}") || strings.Count(line, `"time":`) != 1 {
			t.Fatalf("mangled line %q", line)
		}
	}
}

func BenchmarkAccessLine(b *testing.B) {
	for _, h := range []struct {
		name string
		h    slog.Handler
	}{{"logjson", NewHandler(discard{}, nil)}, {"slog.JSONHandler", slog.NewJSONHandler(discard{}, nil)}} {
		b.Run(h.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				r := slog.NewRecord(time.Now(), slog.LevelInfo, "request", 0)
				r.AddAttrs(slog.String("request_id", "S7VC7FA6RORQO-"+fmt.Sprint(i%10)), slog.String("method", "/tokenbroker.v1.TokenService/GetToken"),
					slog.String("transport", "grpc"), slog.String("principal", ""), slog.String("vendor", "smartdocumentor"),
					slog.String("profile", "bench"), slog.String("cache", "hit"), slog.String("code", "OK"), slog.Float64("duration_ms", 0.042))
				_ = h.h.Handle(context.Background(), r)
			}
		})
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
