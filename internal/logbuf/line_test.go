package logbuf

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"testing"
	"time"
)

// lineAttr is one attribute of a test line, added to a Line and to the
// slog.Record it must be written as.
type testAttr struct {
	key  string
	kind lineKind
	str  string
	u    uint64
	f    float64
}

func (a testAttr) addTo(l *Line) {
	switch a.kind {
	case lineUint64:
		l.Uint64(a.key, a.u)
	case lineFloat64:
		l.Float64(a.key, a.f)
	default:
		l.String(a.key, a.str)
	}
}

func (a testAttr) slog() slog.Attr {
	switch a.kind {
	case lineUint64:
		return slog.Uint64(a.key, a.u)
	case lineFloat64:
		return slog.Float64(a.key, a.f)
	}
	return slog.String(a.key, a.str)
}

type testLine struct {
	t     time.Time
	level slog.Level
	msg   string
	attrs []testAttr
}

func (tl testLine) line() *Line {
	l := NewLine(tl.t, tl.level, tl.msg)
	for _, a := range tl.attrs {
		a.addTo(l)
	}
	return l
}

func (tl testLine) record() slog.Record {
	r := slog.NewRecord(tl.t, tl.level, tl.msg, 0)
	for _, a := range tl.attrs {
		r.AddAttrs(a.slog())
	}
	return r
}

// lineHandlers are the handlers a Line is checked with: each is given
// the Writer its output goes to, and returns the handler and the slog
// handler that must write the same bytes to the given buffer.
var lineHandlers = []struct {
	name string
	make func(w *Writer, want *bytes.Buffer) (got, ref slog.Handler)
}{
	{"JSONHandler", func(w *Writer, want *bytes.Buffer) (slog.Handler, slog.Handler) {
		return w.JSONHandler(nil), slog.NewJSONHandler(want, nil)
	}},
	{"JSONHandler with ReplaceAttr", func(w *Writer, want *bytes.Buffer) (slog.Handler, slog.Handler) {
		opts := &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == "principal" {
				a.Value = slog.StringValue("***")
			}
			return a
		}}
		return w.JSONHandler(opts), slog.NewJSONHandler(want, opts)
	}},
	{"JSONHandler WithAttrs", func(w *Writer, want *bytes.Buffer) (slog.Handler, slog.Handler) {
		with := []slog.Attr{slog.String("svc", "tb")}
		return w.JSONHandler(nil).WithAttrs(with), slog.NewJSONHandler(want, nil).WithAttrs(with)
	}},
	{"Handler of a text handler", func(w *Writer, want *bytes.Buffer) (slog.Handler, slog.Handler) {
		return w.Handler(slog.NewTextHandler(w, nil)), slog.NewTextHandler(want, nil)
	}},
	{"not this package's", func(w *Writer, want *bytes.Buffer) (slog.Handler, slog.Handler) {
		return slog.NewJSONHandler(w, nil), slog.NewJSONHandler(want, nil)
	}},
}

// checkLine logs tl as a Line with every handler in lineHandlers and
// checks that each writes what its slog handler writes for the record.
func checkLine(t *testing.T, tl testLine) {
	t.Helper()
	for _, lh := range lineHandlers {
		var out lockedBuffer
		var want bytes.Buffer
		w := New(&out, time.Hour)
		got, ref := lh.make(w, &want)
		if err := Log(context.Background(), got, tl.line()); err != nil {
			t.Fatalf("%s: Log: %v", lh.name, err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if err := ref.Handle(context.Background(), tl.record()); err != nil {
			t.Fatal(err)
		}
		if out.String() != want.String() {
			t.Errorf("%s:\n got %q\nwant %q", lh.name, out.String(), want.String())
		}
	}
}

func TestLineWritesWhatSlogWrites(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 7, 16, 20, 1, 123456789, time.UTC)
	s := func(k, v string) testAttr { return testAttr{key: k, str: v} }
	u := func(k string, v uint64) testAttr { return testAttr{key: k, kind: lineUint64, u: v} }
	f := func(k string, v float64) testAttr { return testAttr{key: k, kind: lineFloat64, f: v} }
	var many []testAttr
	for i := range lineAttrs + 3 {
		many = append(many, u(fmt.Sprint("n", i), uint64(i)))
	}
	tests := []struct {
		name string
		tl   testLine
	}{
		{"access line", testLine{at, slog.LevelInfo, "request", []testAttr{
			s("request_id", "QWERTYUIOPASD-1z"), s("method", "/tokenbroker.v1.TokenService/GetToken"),
			s("transport", "grpc"), s("principal", "apikey:billing"), s("vendor", "saasu"),
			s("profile", "default"), s("cache", "hit"), s("code", "OK"),
			f("duration_ms", 0.042), u("sampled_one_in", 10), s("trace_id", "0af7651916cd43dd8448eb211c80319c")}}},
		{"no attributes, no time", testLine{time.Time{}, slog.LevelWarn, "w", nil}},
		{"levels between", testLine{at, slog.LevelError + 2, "e", []testAttr{u("max", math.MaxUint64)}}},
		{"more than a Line holds in place", testLine{at, slog.LevelDebug - 1, "m", many}},
		{"escapes", testLine{at, slog.LevelInfo, "m\"s\\g\n", []testAttr{
			s("k\"\t", "a\x00b\x1fc\x7f<>&\r\u2028\u2029é€𝄞"), s("bad utf-8", "a\xffb\xc3"), s("", "empty key"), s("after", "x")}}},
		{"floats", testLine{at, slog.LevelInfo, "f", []testAttr{
			f("zero", 0), f("neg zero", math.Copysign(0, -1)), f("tiny", 1.5e-7), f("big", 1e21), f("ms", 12.5), f("third", 1.0/3)}}},
		{"infinite float", testLine{at, slog.LevelInfo, "f", []testAttr{f("inf", math.Inf(-1)), f("nan", math.NaN())}}},
		{"year past 9999", testLine{time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), slog.LevelInfo, "y", []testAttr{s("k", "v")}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			checkLine(t, tt.tl)
		})
	}
}

func FuzzLineWritesWhatSlogWrites(f *testing.F) {
	f.Add("request", "request_id", "abc", 0.042, uint64(10), int64(1), 3)
	f.Add("m\"\\\n", "k\x00", "\xff\u2028é", 1e-7, uint64(math.MaxUint64), int64(-1), 14)
	f.Add("", "", "", 1e21, uint64(0), int64(0), 0)
	f.Fuzz(func(t *testing.T, msg, key, s string, fl float64, u uint64, nanos int64, n int) {
		tl := testLine{t: time.Unix(0, nanos).UTC(), level: slog.Level(nanos % 16), msg: msg}
		kinds := []testAttr{{key: key, str: s}, {key: "f", kind: lineFloat64, f: fl}, {key: s, kind: lineUint64, u: u},
			{key: "ms", kind: lineFloat64, f: float64(nanos%2e15) / 1000}}
		for i := range min(max(n, 0), 2*lineAttrs) {
			tl.attrs = append(tl.attrs, kinds[i%len(kinds)])
		}
		checkLine(t, tl)
	})
}

// Lines and records from many goroutines come out whole and in each
// goroutine's order, one queue for both, with the pool's Lines reused
// between them (a short line after a long one has only its own attributes).
func TestLinesAndRecordsKeepTheirOrder(t *testing.T) {
	t.Parallel()
	var out lockedBuffer
	w := New(&out, time.Millisecond)
	h := w.JSONHandler(nil)
	log := slog.New(h)
	const goroutines, each = 8, 3000 // past maxQueued: callers encode too
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				switch i % 3 {
				case 0:
					log.Info("record", "g", g, "i", i)
				case 1:
					l := NewLine(time.Now(), slog.LevelInfo, "long")
					l.Uint64("g", uint64(g))
					l.Uint64("i", uint64(i))
					for k := range lineAttrs + 2 {
						l.String(fmt.Sprint("pad", k), "p")
					}
					_ = Log(context.Background(), h, l)
				default:
					l := NewLine(time.Now(), slog.LevelInfo, "short")
					l.Uint64("g", uint64(g))
					l.Uint64("i", uint64(i))
					_ = Log(context.Background(), h, l)
				}
			}
		})
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	checkEveryLineInOrder(t, out.String(), goroutines*each)
	for _, l := range decode(t, out.String()) {
		if want := map[string]int{"record": 5, "long": 5 + lineAttrs + 2, "short": 5}[l["msg"].(string)]; len(l) != want {
			t.Fatalf("%d fields, want %d: %v", len(l), want, l)
		}
	}
}
