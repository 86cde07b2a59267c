package reqinfo

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

type otherKey struct{}

func TestWithCarriesInfoAndKeepsTheParent(t *testing.T) {
	t.Parallel()
	parent, cancel := context.WithTimeout(context.WithValue(context.Background(), otherKey{}, "outer"), time.Hour)
	ctx, info := With(parent, "req-1")

	if got := From(ctx); got != info {
		t.Fatalf("From = %p, want the Info With returned (%p)", got, info)
	}
	if got := info.RequestID(); got != "req-1" {
		t.Errorf("RequestID = %q", got)
	}
	if got := ctx.Value(otherKey{}); got != "outer" {
		t.Errorf("the parent's value = %v, want outer", got)
	}
	if d1, ok1 := ctx.Deadline(); !ok1 {
		t.Error("the parent's deadline is lost")
	} else if d2, _ := parent.Deadline(); !d1.Equal(d2) {
		t.Errorf("deadline %v, want the parent's %v", d1, d2)
	}
	if From(context.Background()) != nil {
		t.Error("From of a context without an Info is not nil")
	}

	// A nested With hides the outer Info; the outer context keeps its own.
	inner, innerInfo := With(ctx, "req-2")
	if From(inner) != innerInfo || From(ctx) != info {
		t.Error("nested Infos are mixed up")
	}

	// Cancellation reaches contexts derived below it, as through
	// context.WithValue.
	child, cancelChild := context.WithCancel(inner)
	defer cancelChild()
	stopped := make(chan struct{})
	stop := context.AfterFunc(inner, func() { close(stopped) })
	defer stop()
	cancel()
	select {
	case <-child.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("a context derived from With's was not cancelled with its parent")
	}
	<-stopped
	if ctx.Err() != context.Canceled || context.Cause(child) != context.Canceled {
		t.Errorf("Err %v, Cause %v", ctx.Err(), context.Cause(child))
	}
}

func TestWithKeepsTheCancelCause(t *testing.T) {
	t.Parallel()
	cause := errors.New("the caller went away")
	parent, cancel := context.WithCancelCause(context.Background())
	ctx, _ := With(parent, "req-4")
	child, cancelChild := context.WithCancel(ctx)
	defer cancelChild()
	detached := context.WithoutCancel(ctx)
	cancel(cause)
	<-child.Done()
	if got := context.Cause(child); got != cause {
		t.Errorf("Cause below With = %v, want %v", got, cause)
	}
	if detached.Err() != nil || From(detached) == nil {
		t.Errorf("WithoutCancel: Err %v, Info %v", detached.Err(), From(detached))
	}
}

func TestInfoSettersAndSnapshot(t *testing.T) {
	t.Parallel()
	ctx, info := With(context.Background(), "req-3")
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			SetPrincipal(ctx, "svc-a")
			SetTarget(ctx, "smartdocumentor", "bench")
			SetCache(ctx, "hit")
			_ = info.Snapshot()
			_ = Principal(ctx)
		})
	}
	wg.Wait()
	want := Snapshot{RequestID: "req-3", Principal: "svc-a", Vendor: "smartdocumentor", Profile: "bench", Cache: "hit"}
	if got := info.Snapshot(); got != want {
		t.Errorf("Snapshot = %+v, want %+v", got, want)
	}
	// The setters are no-ops on a context without an Info.
	SetPrincipal(context.Background(), "x")
	if Principal(context.Background()) != "" {
		t.Error("Principal of a context without an Info is not empty")
	}
}
