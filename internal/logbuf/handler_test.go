package logbuf

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// decode returns out's JSON lines.
func decode(t *testing.T, out string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		lines = append(lines, m)
	}
	return lines
}

func TestHandlerKeepsEveryRecordInOrder(t *testing.T) {
	t.Parallel()
	var out lockedBuffer
	w := New(&out, time.Hour)
	log := slog.New(w.Handler(slog.NewJSONHandler(w, nil)))
	const goroutines, each = 8, 2000 // past maxQueued: callers encode too
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := log.With("g", g)
			for i := range each {
				l.Info("line", "i", i)
			}
		}()
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	checkEveryLineInOrder(t, out.String(), goroutines*each)
}

// changing is a value whose text changes after it is logged.
type changing struct{ v *string }

func (c changing) LogValue() slog.Value { return slog.StringValue(*c.v) }

func TestHandlerEncodesWhatWasLogged(t *testing.T) {
	t.Parallel()
	var out lockedBuffer
	w := New(&out, time.Hour)
	log := slog.New(w.Handler(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo})))
	v := "at log time"
	logged := time.Now()
	log.WithGroup("req").With("static", 1).Info("hello", "valuer", changing{&v}, "n", 7)
	afterLog := time.Now()
	log.Debug("below the level")
	v = "later"
	time.Sleep(2 * time.Millisecond) // the record keeps its own time
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	lines := decode(t, out.String())
	if len(lines) != 1 {
		t.Fatalf("%d lines, want 1 (the debug line is below the level): %s", len(lines), out.String())
	}
	got := fmt.Sprint(lines[0]["req"])
	if want := "map[n:7 static:1 valuer:at log time]"; got != want {
		t.Errorf("req group %s, want %s", got, want)
	}
	when, err := time.Parse(time.RFC3339Nano, lines[0]["time"].(string))
	if err != nil || when.Before(logged.Round(0)) || when.After(afterLog.Round(0)) {
		t.Errorf("time %v, logged between %v and %v (%v)", when, logged, afterLog, err)
	}
}

// The flusher encodes a batch as soon as wakeAt records wait, without
// waiting for the interval.
func TestHandlerWakesTheFlusherForABatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var out lockedBuffer
		w := New(&out, time.Hour)
		defer w.Close()
		h := w.Handler(slog.NewJSONHandler(w, nil))
		ctx := context.Background()
		for i := range wakeAt - 1 {
			_ = h.Handle(ctx, slog.NewRecord(time.Now(), slog.LevelInfo, fmt.Sprint(i), 0))
		}
		synctest.Wait()
		if err := w.Flush(); err != nil || out.String() != "" {
			t.Fatalf("before a batch waits: %q, %v", out.String(), err)
		}
		_ = h.Handle(ctx, slog.NewRecord(time.Now(), slog.LevelInfo, "last", 0))
		synctest.Wait() // the flusher has encoded the batch
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		if n := len(decode(t, out.String())); n != wakeAt {
			t.Fatalf("%d lines after a batch was queued, want %d", n, wakeAt)
		}
	})
}

// A queued record shares no attributes with the caller's: attributes the
// caller adds after Handle (past the record's inline ones) are not in the
// queued line.
func TestHandlerKeepsTheRecordAsHandled(t *testing.T) {
	t.Parallel()
	var out lockedBuffer
	w := New(&out, time.Hour)
	h := w.Handler(slog.NewJSONHandler(w, nil))
	r := slog.NewRecord(time.Now(), slog.LevelInfo, "line", 0)
	for i := range 7 { // past the inline attributes
		r.AddAttrs(slog.Int(fmt.Sprint("a", i), i))
	}
	_ = h.Handle(context.Background(), r)
	r.AddAttrs(slog.String("added", "after Handle"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	lines := decode(t, out.String())
	if len(lines) != 1 {
		t.Fatalf("%d lines, want 1", len(lines))
	}
	if _, ok := lines[0]["added"]; ok || lines[0]["a6"] != 6.0 {
		t.Errorf("queued line %v: want a0..a6 and no attribute added after Handle", lines[0])
	}
}

// checkEveryLineInOrder checks that out holds want JSON lines, and that
// each goroutine's ("g") lines come in the order it logged them ("i").
func checkEveryLineInOrder(t *testing.T, out string, want int) {
	t.Helper()
	lines := decode(t, out)
	if len(lines) != want {
		t.Fatalf("%d lines, want %d", len(lines), want)
	}
	next := map[float64]float64{}
	for _, l := range lines {
		g, i := l["g"].(float64), l["i"].(float64)
		if i != next[g] {
			t.Fatalf("goroutine %v: line %v where %v was due", g, i, next[g])
		}
		next[g]++
	}
}
