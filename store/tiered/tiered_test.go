package tiered_test

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/tokenbroker/tokenbroker/store"
	"github.com/tokenbroker/tokenbroker/store/redisstore"
	"github.com/tokenbroker/tokenbroker/store/sealed"
	"github.com/tokenbroker/tokenbroker/store/tiered"
	"github.com/tokenbroker/tokenbroker/testkit/brokertest"
	"github.com/tokenbroker/tokenbroker/testkit/redistest"
)

var key = store.TokenKey("0123abcd")

// shared is a real in-memory store standing for Redis; it counts calls and
// can be made to fail.
type shared struct {
	*store.Memory
	gets atomic.Int64
	down atomic.Bool
	// answerAfter delays each Get's answer after its read (nanoseconds).
	answerAfter atomic.Int64
}

var errDown = errors.New("shared level down")

func newShared() *shared { return &shared{Memory: store.NewMemory(0)} }

func (s *shared) Get(ctx context.Context, key string) (store.Entry, error) {
	s.gets.Add(1)
	if s.down.Load() {
		return store.Entry{}, errDown
	}
	e, err := s.Memory.Get(ctx, key)
	time.Sleep(time.Duration(s.answerAfter.Load()))
	return e, err
}

func (s *shared) Put(ctx context.Context, key string, e store.Entry) error {
	if s.down.Load() {
		return errDown
	}
	return s.Memory.Put(ctx, key, e)
}

func (s *shared) CompareAndDelete(ctx context.Context, key, token string) (bool, error) {
	if s.down.Load() {
		return false, errDown
	}
	return s.Memory.CompareAndDelete(ctx, key, token)
}

func entry(life time.Duration) store.Entry {
	now := time.Now()
	return store.Entry{AccessToken: "at-" + rand.Text(), TokenType: "Bearer", IssuedAt: now, ExpiresAt: now.Add(life), FetchedAt: now}
}

func newL1(t *testing.T, remote store.Store, opts tiered.Options) *tiered.Store {
	t.Helper()
	s := tiered.New(remote, opts)
	t.Cleanup(s.Close)
	return s
}

func TestHotPathStaysInProcess(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	remote := newShared()
	l1 := newL1(t, remote, tiered.Options{MaxStale: time.Hour})
	e := entry(time.Minute)
	if err := l1.Put(ctx, key, e); err != nil {
		t.Fatal(err)
	}
	for range 1000 {
		if got, err := l1.Get(ctx, key); err != nil || got.AccessToken != e.AccessToken {
			t.Fatalf("Get = %+v, %v", got, err)
		}
	}
	if n := remote.gets.Load(); n != 0 {
		t.Fatalf("1000 hits read the shared level %d times", n)
	}
	if st := l1.Stats(); st.Hits != 1000 || st.Misses != 0 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestMissFillsFromShared(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	remote := newShared()
	l1 := newL1(t, remote, tiered.Options{MaxStale: time.Hour})
	e := entry(time.Minute)
	_ = remote.Memory.Put(ctx, key, e)
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if got, err := l1.Get(ctx, key); err != nil || got.AccessToken != e.AccessToken {
				t.Errorf("Get = %+v, %v", got, err)
			}
		}()
	}
	wg.Wait()
	if _, err := l1.Get(ctx, key); err != nil {
		t.Fatal(err)
	}
	if n := remote.gets.Load(); n > 50 || n < 1 {
		t.Fatalf("shared reads = %d", n)
	}
	before := remote.gets.Load()
	_, _ = l1.Get(ctx, key)
	if remote.gets.Load() != before {
		t.Fatal("a filled entry was read from the shared level again")
	}
}

func TestEntryNeverOutlivesToken(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		remote := newShared()
		remote.down.Store(true) // L1 alone
		l1 := newL1(t, remote, tiered.Options{})
		_ = l1.Put(ctx, key, entry(30*time.Millisecond))
		if _, err := l1.Get(ctx, key); err != nil {
			t.Fatal(err)
		}
		time.Sleep(40 * time.Millisecond)
		if e, err := l1.Get(ctx, key); err == nil {
			t.Fatalf("served an expired token: %+v", e)
		}
	})
}

func TestForgetAndResync(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		remote := newShared()
		l1 := newL1(t, remote, tiered.Options{MaxStale: time.Hour})
		old := entry(time.Minute)
		_ = l1.Put(ctx, key, old)
		// Another replica replaces the token and says so.
		fresh := entry(time.Minute)
		_ = remote.Memory.Put(ctx, key, fresh)
		if got, _ := l1.Get(ctx, key); got.AccessToken != old.AccessToken {
			t.Fatal("L1 should still hold its entry before the message")
		}
		l1.Forget(key)
		if got, _ := l1.Get(ctx, key); got.AccessToken != fresh.AccessToken {
			t.Fatal("Forget did not make L1 read the shared level")
		}
		// A lost subscription: Resync revalidates in the background.
		newer := entry(time.Minute)
		_ = remote.Memory.Put(ctx, key, newer)
		l1.Resync()
		_, _ = l1.Get(ctx, key) // served from L1, starts the revalidation
		synctest.Wait()         // the revalidation has ended
		if got, _ := l1.Get(ctx, key); got.AccessToken != newer.AccessToken {
			t.Fatal("Resync did not revalidate")
		}
	})
}

func TestStaleEntriesRevalidateWithinMaxStale(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		remote := newShared()
		l1 := newL1(t, remote, tiered.Options{MaxStale: 100 * time.Millisecond})
		e := entry(time.Minute)
		_ = l1.Put(ctx, key, e)
		time.Sleep(80 * time.Millisecond) // three quarters of MaxStale have passed
		if got, err := l1.Get(ctx, key); err != nil || got.AccessToken != e.AccessToken {
			t.Fatalf("before MaxStale: %+v, %v", got, err)
		}
		synctest.Wait() // the background revalidation has ended
		if n := remote.gets.Load(); n != 1 {
			t.Fatalf("%d reads of the shared level, want 1 background revalidation", n)
		}
		// Deleted elsewhere, and the message was lost: not one hit past
		// MaxStale serves the entry.
		remote.Memory.Delete(key)
		time.Sleep(100 * time.Millisecond)
		if got, err := l1.Get(ctx, key); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("a deleted entry was served past MaxStale: %+v, %v", got, err)
		}
	})
}

// A revalidation that read the entry just before another replica deleted
// it, and answered just after, confirms the entry as of its read, not its
// answer: the entry is not served past MaxStale from the read.
func TestRevalidationCountsFromItsRead(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		remote := newShared()
		l1 := newL1(t, remote, tiered.Options{MaxStale: 100 * time.Millisecond})
		_ = l1.Put(ctx, key, entry(time.Minute))
		time.Sleep(80 * time.Millisecond)
		remote.answerAfter.Store(int64(50 * time.Millisecond))
		_, _ = l1.Get(ctx, key) // starts the revalidation, which reads at 80 ms
		time.Sleep(20 * time.Millisecond)
		remote.Memory.Delete(key) // at 100 ms; the message is lost
		synctest.Wait()           // the revalidation answered at 130 ms
		remote.answerAfter.Store(0)
		time.Sleep(80 * time.Millisecond) // 180 ms: MaxStale after the read
		if got, err := l1.Get(ctx, key); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("served %+v, %v: MaxStale after the revalidation's read, not its answer, bounds the entry", got, err)
		}
	})
}

func TestSharedLevelDownServesL1(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		remote := newShared()
		l1 := newL1(t, remote, tiered.Options{MaxStale: time.Millisecond})
		e := entry(time.Minute)
		_ = l1.Put(ctx, key, e)
		remote.down.Store(true)
		for range 20 {
			if got, err := l1.Get(ctx, key); err != nil || got.AccessToken != e.AccessToken {
				t.Fatalf("with the shared level down: %+v, %v", got, err)
			}
			time.Sleep(2 * time.Millisecond)
		}
		// A token fetched during the outage is cached here and shared when
		// the shared level comes back empty.
		key2 := store.TokenKey("2")
		during := entry(time.Minute)
		if err := l1.Put(ctx, key2, during); err != nil {
			t.Fatal(err)
		}
		remote.down.Store(false)
		l1.Resync()
		if got, err := l1.Get(ctx, key2); err != nil || got.AccessToken != during.AccessToken {
			t.Fatalf("after the outage: %+v, %v", got, err)
		}
		synctest.Wait() // the revalidation and its write-back have ended
		if got, err := remote.Memory.Get(ctx, key2); err != nil || got.AccessToken != during.AccessToken {
			t.Fatalf("the token fetched during the outage was not written back: %+v, %v", got, err)
		}
	})
}

func TestCompareAndDelete(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	remote := newShared()
	var published []string
	var mu sync.Mutex
	l1 := newL1(t, remote, tiered.Options{MaxStale: time.Hour, Publish: func(_ context.Context, k string) error {
		mu.Lock()
		published = append(published, k)
		mu.Unlock()
		return nil
	}})
	e := entry(time.Minute)
	_ = l1.Put(ctx, key, e)
	// Every compare-and-delete is told to the other replicas, deleted or
	// not: one of them may hold the named token in its L1 alone.
	for i, step := range []struct {
		name  string
		token string
		want  bool
	}{
		{"wrong token", "other", false},
		{"right token", e.AccessToken, true},
		{"nothing left", e.AccessToken, false},
	} {
		if ok, err := l1.CompareAndDelete(ctx, key, step.token); ok != step.want || err != nil {
			t.Fatalf("%s: %v, %v; want %v", step.name, ok, err, step.want)
		}
		mu.Lock()
		n := len(published)
		mu.Unlock()
		if want := 2 + i; n != want { // the Put, then each call
			t.Fatalf("%s: %d messages published, want %d", step.name, n, want)
		}
	}
	if _, err := l1.Get(ctx, key); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
}

func TestGetFreshReadsPastL1(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	remote := newShared()
	l1 := newL1(t, remote, tiered.Options{MaxStale: time.Hour})
	_ = l1.Put(ctx, key, entry(time.Minute))
	// Another replica stored a newer token; its message is not here yet.
	fresh := entry(time.Minute)
	_ = remote.Memory.Put(ctx, key, fresh)
	if got, _ := l1.GetFresh(ctx, key); got.AccessToken != fresh.AccessToken {
		t.Fatal("GetFresh answered from L1 instead of the shared level")
	}
	if got, _ := l1.Get(ctx, key); got.AccessToken != fresh.AccessToken {
		t.Fatal("after GetFresh, L1 still answers the older token")
	}
}

func TestBounded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	remote := newShared()
	remote.down.Store(true)
	l1 := newL1(t, remote, tiered.Options{MaxEntries: 100})
	for i := range 1000 {
		_ = l1.Put(ctx, "k"+string(rune('a'+i%26))+rand.Text(), entry(time.Minute))
	}
	if n := l1.Stats().Entries; n > 100 {
		t.Fatalf("L1 holds %d entries, bound 100", n)
	}
}

// TestReplicasOverRedis runs two full stacks (L1, sealing, Redis) as two
// replicas and measures how fast one's invalidation reaches the other's L1.
func TestReplicasOverRedis(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	k := make([]byte, sealed.KeySize)
	_, _ = rand.Read(k)
	ring, err := sealed.NewKeyring(k)
	if err != nil {
		t.Fatal(err)
	}
	replica := func() (*tiered.Store, *redisstore.Backend) {
		client, err := redisstore.NewClient(redisstore.ClientConfig{Addrs: []string{srv.Addr}})
		if err != nil {
			t.Fatal(err)
		}
		b := redisstore.New(client, redisstore.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		wctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := b.Warm(wctx); err != nil {
			t.Fatal(err)
		}
		l1 := tiered.New(sealed.New(b, ring), tiered.Options{MaxStale: time.Hour, Publish: b.Publish})
		b.Watch(l1)
		t.Cleanup(func() { l1.Close(); _ = b.Close() })
		return l1, b
	}
	a, ba := replica()
	b, bb := replica()
	ctx := context.Background()
	brokertest.Eventually(t, "subscribed", 5*time.Second, brokertest.Holds(func() bool { return ba.Stats().Resyncs > 0 && bb.Stats().Resyncs > 0 }))
	first := entry(time.Minute)
	if err := a.Put(ctx, key, first); err != nil {
		t.Fatal(err)
	}
	if got, err := b.Get(ctx, key); err != nil || got.AccessToken != first.AccessToken {
		t.Fatalf("replica b: %+v, %v", got, err)
	}
	// Replaced on a: b's L1 follows.
	second := entry(time.Minute)
	_ = a.Put(ctx, key, second)
	took := brokertest.Eventually(t, "refresh seen by b", 10*time.Second, brokertest.Holds(func() bool { got, _ := b.Get(ctx, key); return got.AccessToken == second.AccessToken }))
	t.Logf("a refresh on one replica reached the other's L1 in %v", took)
	// Invalidated on a: b's L1 drops it.
	if ok, err := a.CompareAndDelete(ctx, key, second.AccessToken); !ok || err != nil {
		t.Fatal(ok, err)
	}
	took = brokertest.Eventually(t, "invalidation seen by b", 10*time.Second, brokertest.Holds(func() bool { _, err := b.Get(ctx, key); return errors.Is(err, store.ErrNotFound) }))
	t.Logf("an invalidation on one replica reached the other's L1 in %v", took)
}

// slowDeletes delays and counts compare-and-deletes.
type slowDeletes struct {
	*shared
	calls atomic.Int64
}

func (s *slowDeletes) CompareAndDelete(ctx context.Context, key, token string) (bool, error) {
	s.calls.Add(1)
	time.Sleep(20 * time.Millisecond)
	return s.shared.CompareAndDelete(ctx, key, token)
}

func TestInvalidationStormIsCoalesced(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		remote := &slowDeletes{shared: newShared()}
		l1 := newL1(t, remote, tiered.Options{})
		e := entry(time.Minute)
		_ = l1.Put(ctx, key, e)
		const callers = 100
		var deleted atomic.Int64
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range callers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				ok, err := l1.CompareAndDelete(ctx, key, e.AccessToken)
				if err != nil {
					t.Error(err)
				}
				if ok {
					deleted.Add(1)
				}
			}()
		}
		close(start)
		wg.Wait()
		if deleted.Load() != 1 {
			t.Fatalf("%d callers were told they deleted the token, want 1", deleted.Load())
		}
		if n := remote.calls.Load(); n >= callers/2 {
			t.Fatalf("%d concurrent invalidations made %d calls to the shared level", callers, n)
		}
		t.Logf("%d concurrent invalidations, %d call(s) to the shared level", callers, remote.calls.Load())
	})
}

// TestInvalidationMissedByTheSharedLevelIsRetried: a CompareAndDelete
// while the shared level is down deletes in L1 at once, and in the shared
// level once it answers again (other replicas read it there), without
// waiting for a read of the key.
func TestInvalidationMissedByTheSharedLevelIsRetried(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		remote := newShared()
		l1 := newL1(t, remote, tiered.Options{MaxStale: time.Hour})
		e := entry(time.Minute)
		if err := l1.Put(ctx, key, e); err != nil {
			t.Fatal(err)
		}
		remote.down.Store(true)
		if ok, err := l1.CompareAndDelete(ctx, key, e.AccessToken); !ok || err != nil {
			t.Fatalf("CompareAndDelete while down = %v, %v; want true (deleted here)", ok, err)
		}
		if got := l1.PendingDeletes(); got != 1 {
			t.Fatalf("PendingDeletes = %d, want 1", got)
		}
		remote.down.Store(false)
		time.Sleep(10 * time.Second) // bubble time: many retry intervals
		synctest.Wait()              // the retries due have ended
		if got := l1.PendingDeletes(); got != 0 {
			t.Fatalf("the missed deletion was not retried within 10s: PendingDeletes = %d", got)
		}
		if _, err := remote.Memory.Get(ctx, key); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("the shared level still holds the invalidated token: %v", err)
		}
	})
}

// TestWriteBackOfAnOlderGenerationIsDropped: an entry L1 kept while the
// shared level was down is not written back over a newer generation, nor
// served.
func TestWriteBackOfAnOlderGenerationIsDropped(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	remote := &fencedShared{shared: newShared()}
	l1 := newL1(t, remote, tiered.Options{MaxStale: time.Nanosecond})
	remote.down.Store(true)
	old := entry(time.Minute)
	old.Fence = 3
	_ = l1.Put(ctx, key, old) // kept in L1 only
	remote.down.Store(false)
	remote.fence.Store(4) // another replica leased the key since
	got, err := l1.GetFresh(ctx, key)
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetFresh = %+v, %v; want not found (the stale entry dropped)", got, err)
	}
	if _, err := remote.Memory.Get(ctx, key); !errors.Is(err, store.ErrNotFound) {
		t.Fatal("the stale entry was written back")
	}
}

// fencedShared refuses writes older than fence, as the Redis script does.
type fencedShared struct {
	*shared
	fence atomic.Uint64
}

func (s *fencedShared) Put(ctx context.Context, key string, e store.Entry) error {
	if e.Fence < s.fence.Load() {
		return store.ErrStale
	}
	return s.shared.Put(ctx, key, e)
}

// TestCountersForTheMetrics: what tokenbroker_redis_invalidation_publish_errors_total
// and tokenbroker_cache_l1_invalidations_received_total report.
func TestCountersForTheMetrics(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l1 := newL1(t, newShared(), tiered.Options{Publish: func(context.Context, string) error { return errors.New("down") }})
	if err := l1.Put(ctx, key, entry(time.Minute)); err != nil {
		t.Fatalf("a lost message failed the Put: %v", err)
	}
	l1.Forget(key)
	if st := l1.Stats(); st.PublishErrors != 1 || st.Forgotten != 1 {
		t.Fatalf("stats %+v, want 1 publish error and 1 forgotten", st)
	}
}

// blocking is a shared level whose Gets wait for release, counting them.
type blocking struct {
	*shared
	started chan struct{}
	release chan struct{}
}

func newBlocking() *blocking {
	return &blocking{shared: newShared(), started: make(chan struct{}, 100), release: make(chan struct{})}
}

// newBlockingNoL1 is a store without L1 (cache.l1_disabled) over remote,
// which holds a token of the given life under key.
func newBlockingNoL1(t *testing.T, remote store.Store, stored *shared, life time.Duration) (*tiered.Store, store.Entry) {
	t.Helper()
	e := entry(life)
	_ = stored.Memory.Put(context.Background(), key, e)
	return newL1(t, remote, tiered.Options{NoL1: true}), e
}

func (b *blocking) Get(ctx context.Context, key string) (store.Entry, error) {
	b.started <- struct{}{}
	<-b.release
	return b.shared.Get(ctx, key)
}

// TestNoL1SharesConcurrentReadsAndKeepsNothing: without L1
// (cache.l1_disabled) concurrent Gets of a key share one read of the
// shared level, nothing is kept between reads, and a Get after a Put of
// the key reads afresh rather than joining an older read; whether the
// callers' deadlines let the first of them read in its own goroutine or
// not.
func TestNoL1SharesConcurrentReadsAndKeepsNothing(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		timeout time.Duration // 0: no deadline
	}{
		{"no deadline", 0},
		{"a far deadline", time.Hour},
		{"a near deadline", 500 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				callCtx := func() (context.Context, context.CancelFunc) {
					if tc.timeout == 0 {
						return context.WithCancel(context.Background())
					}
					return context.WithTimeout(context.Background(), tc.timeout)
				}
				ctx := context.Background()
				remote := newBlocking()
				s, old := newBlockingNoL1(t, remote, remote.shared, time.Minute)

				const callers = 10
				got := make(chan string, callers+1)
				get := func() {
					cctx, cancel := callCtx()
					defer cancel()
					e, _ := s.Get(cctx, key)
					got <- e.AccessToken
				}
				for range callers {
					go get()
				}
				<-remote.started
				synctest.Wait() // every caller is waiting on the one read
				// A Put while that read is in flight: the next Get must not join it.
				fresh := entry(time.Minute)
				if err := s.Put(ctx, key, fresh); err != nil {
					t.Fatal(err)
				}
				go get()
				<-remote.started // a read of its own
				close(remote.release)
				for range callers + 1 {
					if tok := <-got; tok != old.AccessToken && tok != fresh.AccessToken {
						t.Errorf("a caller got %q, neither token", tok)
					}
				}
				st := s.Stats()
				if st.Reads != 2 || st.Shared != callers-1 || st.Entries != 0 {
					t.Fatalf("stats %+v: want 2 reads of the shared level, %d shared, nothing kept", st, callers-1)
				}
				if e, _ := s.Get(ctx, key); e.AccessToken != fresh.AccessToken {
					t.Fatal("a Get after the Put did not read the new token")
				}
			})
		})
	}
}

// TestGetLeavesAtItsDeadline: a caller whose deadline comes before a
// slow read of the shared level ends leaves at it, whether it started
// the read or joined one a caller without a deadline started, and the
// read still answers the callers that wait for it.
func TestGetLeavesAtItsDeadline(t *testing.T) {
	t.Parallel()
	for _, first := range []string{"near deadline", "no deadline"} {
		t.Run("first caller with "+first, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				ctx := context.Background()
				remote := newBlocking()
				s, want := newBlockingNoL1(t, remote, remote.shared, time.Hour)

				type result struct {
					tok string
					err error
					at  time.Time
				}
				near, patient := make(chan result, 1), make(chan result, 1)
				getNear := func() {
					cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
					defer cancel()
					e, err := s.Get(cctx, key)
					near <- result{e.AccessToken, err, time.Now()}
				}
				getPatient := func() {
					e, err := s.Get(ctx, key)
					patient <- result{e.AccessToken, err, time.Now()}
				}
				start := time.Now()
				if first == "near deadline" {
					go getNear()
					<-remote.started
					go getPatient()
				} else {
					go getPatient()
					<-remote.started
					go getNear()
				}
				synctest.Wait()
				time.Sleep(time.Second) // the read is still blocked
				r := <-near
				if !errors.Is(r.err, context.DeadlineExceeded) || r.at.Sub(start) != 100*time.Millisecond {
					t.Fatalf("the caller with a 100ms deadline got %v after %v: want it to leave at its deadline", r.err, r.at.Sub(start))
				}
				close(remote.release)
				if r := <-patient; r.err != nil || r.tok != want.AccessToken {
					t.Fatalf("the caller without a deadline got %q, %v: want the read's token", r.tok, r.err)
				}
				if st := s.Stats(); st.Reads != 1 {
					t.Fatalf("%d reads of the shared level: want the one both callers shared", st.Reads)
				}
			})
		})
	}
}

// TestLostDeletionIsNotServedHere: the shared level loses a deletion (a
// failover promoted a replica that had not seen it, Redis restarted from
// older data): the replica that deleted the token never serves it again,
// and deletes it once more.
func TestLostDeletionIsNotServedHere(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	remote := newShared()
	l1 := newL1(t, remote, tiered.Options{MaxStale: time.Hour})
	e := entry(time.Minute)
	_ = l1.Put(ctx, key, e)
	if ok, err := l1.CompareAndDelete(ctx, key, e.AccessToken); !ok || err != nil {
		t.Fatalf("delete: %v, %v", ok, err)
	}
	_ = remote.Memory.Put(ctx, key, e) // the deletion is lost
	if got, err := l1.Get(ctx, key); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("after the lost deletion: %v, %v; want not found", got.AccessToken, err)
	}
	if _, err := remote.Memory.Get(ctx, key); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the shared level still holds the token: %v", err)
	}
	// A newer token under the key is served as usual.
	next := entry(time.Minute)
	_ = remote.Memory.Put(ctx, key, next)
	if got, err := l1.GetFresh(ctx, key); err != nil || got.AccessToken != next.AccessToken {
		t.Fatalf("the next token: %v, %v", got.AccessToken, err)
	}
}

// TestLostRetriedDeletionIsNotServedHere: a deletion first missed by the
// shared level (queued), then done by a retry, and then lost there (a
// failover) is not served here either.
func TestLostRetriedDeletionIsNotServedHere(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		remote := newShared()
		l1 := newL1(t, remote, tiered.Options{MaxStale: time.Hour})
		e := entry(time.Minute)
		_ = l1.Put(ctx, key, e)
		remote.down.Store(true)
		if ok, err := l1.CompareAndDelete(ctx, key, e.AccessToken); !ok || err != nil {
			t.Fatalf("delete while the shared level is down: %v, %v", ok, err)
		}
		remote.down.Store(false)
		for l1.PendingDeletes() != 0 { // the retry (every 250 ms)
			time.Sleep(10 * time.Millisecond)
		}
		_ = remote.Memory.Put(ctx, key, e) // the deletion is lost
		if got, err := l1.Get(ctx, key); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("after the lost deletion: %v, %v; want not found", got.AccessToken, err)
		}
	})
}

// TestTwoMissedDeletionsOfOneKey: while the shared level is away a replica
// invalidates the token it holds, fetches another (without the shared
// level) and invalidates that one too. When the shared level is back and
// still holds the first token, the first is not served here: the second
// invalidation must not make the replica forget the first (the chaos run
// found it, seeds 166261015 and 621123713).
func TestTwoMissedDeletionsOfOneKey(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	remote := newShared()
	l1 := newL1(t, remote, tiered.Options{MaxStale: time.Hour})
	first := entry(time.Minute)
	_ = l1.Put(ctx, key, first)
	remote.down.Store(true)
	if ok, err := l1.CompareAndDelete(ctx, key, first.AccessToken); !ok || err != nil {
		t.Fatalf("delete the first while down: %v, %v", ok, err)
	}
	second := entry(time.Minute)
	_ = l1.Put(ctx, key, second) // fetched while down: L1 alone
	if ok, err := l1.CompareAndDelete(ctx, key, second.AccessToken); !ok || err != nil {
		t.Fatalf("delete the second while down: %v, %v", ok, err)
	}
	if got := l1.PendingDeletes(); got != 2 {
		t.Fatalf("PendingDeletes = %d, want 2", got)
	}
	remote.down.Store(false)
	if got, err := l1.Get(ctx, key); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("after the outage: %v (first %v, second %v), %v; want not found", got.AccessToken, got.AccessToken == first.AccessToken, got.AccessToken == second.AccessToken, err)
	}
	if _, err := remote.Memory.Get(ctx, key); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the shared level still holds the first token: %v", err)
	}
}

// TestMissedDeletionIsNotServedBeforeItsRetry: a deletion the shared level
// missed is honoured by the very next read that finds the token there,
// before the background retry has run (nothing but the read itself
// looks at the missed deletions).
func TestMissedDeletionIsNotServedBeforeItsRetry(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		remote := newShared()
		l1 := newL1(t, remote, tiered.Options{MaxStale: time.Hour})
		e := entry(time.Minute)
		_ = l1.Put(ctx, key, e)
		remote.down.Store(true)
		if ok, err := l1.CompareAndDelete(ctx, key, e.AccessToken); !ok || err != nil {
			t.Fatalf("delete while the shared level is down: %v, %v", ok, err)
		}
		remote.down.Store(false) // the token is still there; no retry has run (the clock stands still)
		if got, err := l1.Get(ctx, key); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("after the missed deletion: %v, %v; want not found", got.AccessToken, err)
		}
		if _, err := remote.Memory.Get(ctx, key); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("the read did not finish the deletion: %v", err)
		}
	})
}

// TestReadOverlappingAnInvalidationLeavesL1Alone: a read of the shared
// level that an invalidation of its key overtakes does not put what it
// read into L1, so the next Get reads again and finds what replaced it.
func TestReadOverlappingAnInvalidationLeavesL1Alone(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		remote := newShared()
		l1 := newL1(t, remote, tiered.Options{MaxStale: time.Hour})
		old, next := entry(time.Minute), entry(time.Minute)
		_ = remote.Memory.Put(ctx, key, old)
		remote.answerAfter.Store(int64(100 * time.Millisecond))
		done := make(chan struct{})
		go func() { _, _ = l1.Get(ctx, key); close(done) }() // reads old, answers at 100 ms
		time.Sleep(50 * time.Millisecond)
		_ = remote.Memory.Put(ctx, key, next)
		l1.Forget(key) // another replica's change, told at 50 ms
		<-done
		remote.answerAfter.Store(0)
		if got, err := l1.Get(ctx, key); err != nil || got.AccessToken != next.AccessToken {
			t.Fatalf("after the overtaken read: %v, %v; want the replacement", got.AccessToken, err)
		}
	})
}
