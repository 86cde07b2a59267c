package filewatch

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// TestSymlinkSwapIsAChange: a Kubernetes volume update re-points the
// "..data" symlink; the file reached through it changes.
func TestSymlinkSwapIsAChange(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, v := range []string{"v1", "v2"} {
		if err := os.MkdirAll(filepath.Join(dir, v), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, v, "config.yaml"), []byte("same size "+v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("v1", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join("..data", "config.yaml"), filepath.Join(dir, "config.yaml")); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "config.yaml")

	var calls atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	// Run stamps the files first: swap only after that (the second call
	// of Paths is the first poll).
	based := make(chan struct{})
	var polls atomic.Int32
	paths := func() []string {
		if polls.Add(1) == 2 {
			close(based)
		}
		return []string{path}
	}
	go func() {
		defer close(done)
		Run(ctx, Options{Paths: paths, Interval: 20 * time.Millisecond, Settle: 40 * time.Millisecond}, func() { calls.Add(1) })
	}()
	t.Cleanup(func() { cancel(); <-done })
	<-based

	// Swap the link the way the kubelet does: a new link renamed over.
	tmp := filepath.Join(dir, "..data_tmp")
	if err := os.Symlink("v2", tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for calls.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the symlink swap was not reported")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := calls.Load(); got != 1 {
		t.Fatalf("one swap reported %d times", got)
	}
}

func TestStampSame(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "f")
	missing := StampOf(path)
	if !missing.Same(StampOf(path)) {
		t.Error("two failed stats differ")
	}
	if err := os.WriteFile(path, []byte("a"), 0o600); err != nil {
		t.Fatal(err)
	}
	a := StampOf(path)
	if a.Same(missing) || !a.Same(StampOf(path)) {
		t.Error("stamps of a new file compare wrongly")
	}
	if err := os.WriteFile(path, []byte("ab"), 0o600); err != nil {
		t.Fatal(err)
	}
	if a.Same(StampOf(path)) {
		t.Error("a rewritten file has the same stamp")
	}
}
