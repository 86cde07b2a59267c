package coalesce

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/tokenbroker/tokenbroker/store"
)

// gated is a store whose Gets block until released, counting them.
type gated struct {
	*store.Memory
	gets    atomic.Int32
	started chan struct{}
	release chan struct{}
}

func newGated() *gated {
	return &gated{Memory: store.NewMemory(0), started: make(chan struct{}, 100), release: make(chan struct{})}
}

func (g *gated) Get(ctx context.Context, key string) (store.Entry, error) {
	g.gets.Add(1)
	g.started <- struct{}{}
	<-g.release
	return g.Memory.Get(ctx, key)
}

func entry(token string) store.Entry {
	now := time.Now()
	return store.Entry{AccessToken: token, IssuedAt: now, FetchedAt: now, ExpiresAt: now.Add(time.Hour)}
}

// getAsync starts a Get and returns where its answer will arrive.
func getAsync(s *Store, ctx context.Context, key string) <-chan result {
	ch := make(chan result, 1)
	go func() {
		e, err := s.Get(ctx, key)
		ch <- result{e, err}
	}()
	return ch
}

type result struct {
	e   store.Entry
	err error
}

func TestConcurrentGetsShareOneRead(t *testing.T) {
	synctest.Test(t, testConcurrentGetsShareOneRead)
}

func testConcurrentGetsShareOneRead(t *testing.T) {
	g := newGated()
	ctx := context.Background()
	if err := g.Memory.Put(ctx, "k", entry("t1")); err != nil {
		t.Fatal(err)
	}
	s := New(g, Options{})
	first := getAsync(s, ctx, "k")
	<-g.started
	const n = 50
	var wg sync.WaitGroup
	answers := make([]result, n)
	for i := range n {
		wg.Go(func() {
			e, err := s.Get(ctx, "k")
			answers[i] = result{e, err}
		})
	}
	// Every caller is blocked once it waits on the flight in progress (a
	// caller that joined only after the release would rightly start a
	// read of its own).
	synctest.Wait()
	close(g.release)
	wg.Wait()
	if r := <-first; r.err != nil || r.e.AccessToken != "t1" {
		t.Fatalf("first caller: %+v", r)
	}
	for i, r := range answers {
		if r.err != nil || r.e.AccessToken != "t1" {
			t.Fatalf("caller %d: %+v", i, r)
		}
	}
	if got := g.gets.Load(); got != 1 {
		t.Errorf("%d reads of the wrapped store for %d concurrent callers, want 1", got, n+1)
	}
	if st := s.Stats(); st.Reads != 1 || st.Shared != n {
		t.Errorf("stats %+v, want 1 read and %d shared", st, n)
	}
}

// After a local change of a key, a Get must not take the result of a read
// that started before the change.
func TestNoSharingAcrossAChange(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name   string
		change func(s *Store) error
		want   string // token the later Get must see ("" for not found)
	}{
		{"Put", func(s *Store) error { return s.Put(ctx, "k", entry("new")) }, "new"},
		{"CompareAndDelete", func(s *Store) error {
			ok, err := s.CompareAndDelete(ctx, "k", "old")
			if err == nil && !ok {
				err = errors.New("not deleted")
			}
			return err
		}, ""},
		{"GetFresh", func(s *Store) error {
			// Another replica stored a token under its lease; this one
			// woke and read it afresh, and later reads must not go back
			// to what was read before.
			if err := s.inner.(*gated).Memory.Put(ctx, "k", entry("new")); err != nil {
				return err
			}
			go func() { _, _ = s.GetFresh(ctx, "k") }()
			<-s.inner.(*gated).started // its own read, released with the others
			return nil
		}, "new"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				g := newGated()
				if err := g.Memory.Put(ctx, "k", entry("old")); err != nil {
					t.Fatal(err)
				}
				s := New(g, Options{})
				before := getAsync(s, ctx, "k")
				<-g.started // a read is in flight; it will see what is stored when released
				if err := tt.change(s); err != nil {
					t.Fatal(err)
				}
				after := getAsync(s, ctx, "k")
				synctest.Wait() // the later Get is blocked: in a read of its own, or joined
				select {
				case <-g.started:
				default:
					t.Fatal("the Get after the change joined the earlier read")
				}
				close(g.release)
				<-before
				r := <-after
				switch {
				case tt.want == "" && !errors.Is(r.err, store.ErrNotFound):
					t.Fatalf("after %s: %+v, want not found", tt.name, r)
				case tt.want != "" && (r.err != nil || r.e.AccessToken != tt.want):
					t.Fatalf("after %s: %+v, want %q", tt.name, r, tt.want)
				}
			})
		})
	}
}

func TestCallerGivingUpLeavesTheReadToOthers(t *testing.T) {
	synctest.Test(t, testCallerGivingUpLeavesTheReadToOthers)
}

func testCallerGivingUpLeavesTheReadToOthers(t *testing.T) {
	g := newGated()
	ctx := context.Background()
	if err := g.Memory.Put(ctx, "k", entry("t1")); err != nil {
		t.Fatal(err)
	}
	s := New(g, Options{})
	cctx, cancel := context.WithCancel(ctx)
	first := getAsync(s, cctx, "k")
	<-g.started
	other := getAsync(s, ctx, "k")
	synctest.Wait() // the other caller has joined the read in flight
	cancel()
	if r := <-first; !errors.Is(r.err, context.Canceled) {
		t.Fatalf("cancelled caller: %+v, want context.Canceled", r)
	}
	close(g.release)
	if r := <-other; r.err != nil || r.e.AccessToken != "t1" {
		t.Fatalf("other caller: %+v", r)
	}
}

func TestMissesAndDifferentKeys(t *testing.T) {
	ctx := context.Background()
	mem := store.NewMemory(0)
	s := New(mem, Options{})
	if _, err := s.Get(ctx, "absent"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("absent key: %v, want ErrNotFound", err)
	}
	for _, k := range []string{"a", "b"} {
		if err := s.Put(ctx, k, entry("tok-"+k)); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range []string{"a", "b"} {
		if e, err := s.Get(ctx, k); err != nil || e.AccessToken != "tok-"+k {
			t.Fatalf("Get(%s) = %+v, %v", k, e, err)
		}
	}
}

// A Store with Publish tells other replicas of its Puts and of the
// CompareAndDeletes that deleted, and nothing else.
func TestPublishesChanges(t *testing.T) {
	ctx := context.Background()
	var told []string
	s := New(store.NewMemory(0), Options{Publish: func(_ context.Context, key string) error {
		told = append(told, key)
		return nil
	}})
	if err := s.Put(ctx, "a", entry("t1")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.CompareAndDelete(ctx, "a", "other"); ok {
		t.Fatal("deleted another token")
	}
	if ok, _ := s.CompareAndDelete(ctx, "a", "t1"); !ok {
		t.Fatal("did not delete")
	}
	if got := strings.Join(told, ","); got != "a,a" {
		t.Fatalf("published %q, want the Put and the delete (a,a)", got)
	}
	failing := New(store.NewMemory(0), Options{Publish: func(context.Context, string) error { return errors.New("down") }})
	if err := failing.Put(ctx, "b", entry("t2")); err != nil {
		t.Fatalf("a lost message failed the Put: %v", err)
	}
	if st := failing.Stats(); st.PublishErrors != 1 {
		t.Fatalf("stats %+v, want 1 publish error", st)
	}
}
