package logbuf

import (
	"bytes"
	"fmt"
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
