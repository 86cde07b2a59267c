package budget_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/store/redisstore"
	"github.com/tokenbroker/tokenbroker/testkit/redistest"
	"github.com/tokenbroker/tokenbroker/vendors/budget"
)

var _ budget.Shared = (*redisstore.Backend)(nil)

// Two replicas on one Redis share the budget; with Redis gone each keeps
// it on its own.
func TestAcquireWithRedis(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	replica := func() *budget.Limiter {
		client, err := redisstore.NewClient(redisstore.ClientConfig{Addrs: []string{srv.Addr}})
		if err != nil {
			t.Fatal(err)
		}
		// A generous timeout: a timed-out command would fall back to the
		// process's budget, which is not what this test is about.
		b := redisstore.New(client, redisstore.Options{OpTimeout: 5 * time.Second})
		t.Cleanup(func() { _ = b.Close() })
		return budget.New(b, nil)
	}
	a, b := replica(), replica()
	lim := budget.Limits{RatePerSecond: 1} // one request a second, fleet-wide
	// acquireWithin asks for a slot, willing to wait up to d for it.
	acquireWithin := func(l *budget.Limiter, d time.Duration) error {
		ctx, cancel := context.WithTimeout(t.Context(), d)
		defer cancel()
		release, err := l.Acquire(ctx, "smartdocumentor", lim)
		if err == nil {
			release()
		}
		return err
	}
	acquire := func(l *budget.Limiter) error { return acquireWithin(l, 200*time.Millisecond) }

	if err := acquire(a); err != nil {
		t.Fatalf("first request: %v", err)
	}
	var exhausted *budget.ExhaustedError
	if err := acquire(b); !errors.As(err, &exhausted) || exhausted.RetryAfter <= 200*time.Millisecond || exhausted.RetryAfter > time.Second {
		t.Fatalf("another replica within the second: %v, want *ExhaustedError with RetryAfter in (200ms, 1s]", err)
	}

	srv.Kill()
	// The first request after the kill asks Redis again until b's breaker
	// opens, then takes the process's budget, which grants at once: the
	// deadline bounds the failing commands, not a wait for a slot. On a
	// loaded machine they can take longer than 200 ms.
	if err := acquireWithin(b, 10*time.Second); err != nil {
		t.Fatalf("Redis down, first request of this process: %v", err)
	}
	if err := acquire(b); !errors.As(err, &exhausted) {
		t.Fatalf("Redis down, second request within the second: %v, want *ExhaustedError from the process's budget", err)
	}
}

// While another client waits for a vendor's budget, one client gets at
// most its share of it (limits.max_client_share), however many requests
// it queues; alone, it may use the whole budget.
func TestClientShareWhileOthersWait(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	client, err := redisstore.NewClient(redisstore.ClientConfig{Addrs: []string{srv.Addr}})
	if err != nil {
		t.Fatal(err)
	}
	backend := redisstore.New(client, redisstore.Options{OpTimeout: 5 * time.Second})
	t.Cleanup(func() { _ = backend.Close() })
	l := budget.New(backend, nil)
	lim := budget.Limits{RatePerSecond: 20, MaxClientShare: 0.5}

	// run sends requests from workers goroutines of client for d, each
	// willing to wait 300 ms for a slot, and counts the ones granted and
	// the ones refused for the client's share.
	run := func(ctx context.Context, name string, workers int, granted, byShare *atomic.Int64) *sync.WaitGroup {
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for i := 0; ctx.Err() == nil && i < 1000; i++ {
					rctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
					release, err := l.AcquireFor(rctx, "abbyy_vantage", name, lim)
					cancel()
					var ex *budget.ExhaustedError
					switch {
					case err == nil:
						release()
						granted.Add(1)
					case errors.As(err, &ex) && ex.Client != "":
						byShare.Add(1)
						time.Sleep(10 * time.Millisecond)
					default:
						time.Sleep(10 * time.Millisecond)
					}
				}
			})
		}
		return &wg
	}

	// Alone: the greedy client is never held to a share (it applies only
	// while others wait): it gets aloneSlots slots without one refusal for
	// its share. Counted, not timed: a loaded machine slows the workers,
	// not the rule.
	const aloneSlots = 12
	var aloneGranted, aloneByShare atomic.Int64
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	alone := run(ctx, "greedy", 8, &aloneGranted, &aloneByShare)
	for aloneGranted.Load() < aloneSlots && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	alone.Wait()
	if aloneByShare.Load() != 0 || aloneGranted.Load() < aloneSlots {
		t.Fatalf("alone: %d granted, %d refused for its share; want %d granted and no share refusal", aloneGranted.Load(), aloneByShare.Load(), aloneSlots)
	}

	// With another client waiting: greedy's 8 workers against polite's 2.
	var greedy, greedyShare, polite, politeShare atomic.Int64
	ctx, cancel = context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	g := run(ctx, "greedy", 8, &greedy, &greedyShare)
	p := run(ctx, "polite", 2, &polite, &politeShare)
	g.Wait()
	p.Wait()
	total := greedy.Load() + polite.Load()
	t.Logf("greedy %d granted (%d refused for its share), polite %d granted (%d refused)", greedy.Load(), greedyShare.Load(), polite.Load(), politeShare.Load())
	if greedyShare.Load() == 0 {
		t.Fatal("the greedy client was never held to its share")
	}
	// 3 s at 20/s is about 60 slots: half of them, plus the slots the
	// greedy workers had queued (300 ms of the budget, 6) before the
	// polite client first asked, and one per worker at the end.
	if float64(greedy.Load()) > 0.5*float64(total)+14 {
		t.Fatalf("greedy took %d of %d slots while polite waited; share 0.5", greedy.Load(), total)
	}
	if 3*polite.Load() < total {
		t.Fatalf("polite got %d slots of %d", polite.Load(), total)
	}
}
