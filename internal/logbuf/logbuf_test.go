package logbuf

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuffer records writes.
type lockedBuffer struct {
	mu     sync.Mutex
	b      bytes.Buffer
	writes int
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.writes++
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestWriterKeepsEveryLineInOrderAndBatches(t *testing.T) {
	t.Parallel()
	var out lockedBuffer
	w := New(&out, time.Hour)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 1000 {
				fmt.Fprintf(w, "g%d line %04d\n", g, i)
			}
		}()
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 8000 {
		t.Fatalf("%d lines, want 8000", len(lines))
	}
	last := map[string]string{}
	for _, l := range lines {
		g, n, ok := strings.Cut(l, " line ")
		if !ok {
			t.Fatalf("line split or interleaved: %q", l)
		}
		if n <= last[g] {
			t.Fatalf("goroutine %s out of order: %s after %s", g, n, last[g])
		}
		last[g] = n
	}
	if out.writes >= 8000/10 {
		t.Fatalf("%d writes for 8000 lines: not batched", out.writes)
	}
}

func TestWriterFlushesOnInterval(t *testing.T) {
	t.Parallel()
	var out lockedBuffer
	w := New(&out, 10*time.Millisecond)
	defer w.Close()
	fmt.Fprintln(w, "hello")
	// Polled here rather than with testkit/brokertest, which imports the
	// app and so this package.
	for deadline := time.Now().Add(5 * time.Second); out.String() == ""; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no write 5 s after the interval")
		}
	}
	if out.String() != "hello\n" {
		t.Fatalf("after the interval: %q", out.String())
	}
}

// After Close no flusher runs: a line logged then is written by the call
// that logs it, whichever way it comes (a plain Write, a queued record, a
// Line).
func TestLinesAfterCloseAreWrittenAtOnce(t *testing.T) {
	t.Parallel()
	var out lockedBuffer
	w := New(&out, time.Hour)
	text := slog.New(w.Handler(slog.NewTextHandler(w, nil)))
	h := w.JSONHandler(nil)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name string
		log  func()
		want string
	}{
		{"Write", func() { fmt.Fprintln(w, "plain line") }, "plain line\n"},
		{"Handler", func() { text.Info("text record") }, "msg=\"text record\""},
		{"JSONHandler", func() { slog.New(h).Info("json record") }, `"msg":"json record"`},
		{"Line", func() {
			_ = Log(context.Background(), h, NewLine(time.Now(), slog.LevelInfo, "a line"))
		}, `"msg":"a line"`},
	}
	for _, s := range steps {
		s.log()
		if !strings.Contains(out.String(), s.want) {
			t.Errorf("%s after Close: %q not written by the time the call returned; out: %q", s.name, s.want, out.String())
		}
	}
	if err := w.Close(); err != nil {
		t.Errorf("a second Close: %v", err)
	}
}

// Lines logged while Close runs are all written: before Close's last
// flush, or by their callers after it.
func TestNoLineIsLostAroundClose(t *testing.T) {
	t.Parallel()
	for range 20 {
		var out lockedBuffer
		w := New(&out, time.Hour)
		h := w.JSONHandler(nil)
		const goroutines, each = 4, 300
		var wg sync.WaitGroup
		start := make(chan struct{})
		for g := range goroutines {
			wg.Go(func() {
				<-start
				for i := range each {
					l := NewLine(time.Now(), slog.LevelInfo, "x")
					l.Uint64("g", uint64(g))
					l.Uint64("i", uint64(i))
					_ = Log(context.Background(), h, l)
				}
			})
		}
		close(start)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		checkEveryLineInOrder(t, out.String(), goroutines*each)
	}
}
