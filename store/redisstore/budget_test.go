package redisstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/store"
	"github.com/tokenbroker/tokenbroker/store/redisstore"
	"github.com/tokenbroker/tokenbroker/testkit/redistest"
)

// newBudgetBackend is newBackend with a generous operation timeout: these
// tests are about the script, not about a loaded machine's latency.
func newBudgetBackend(t *testing.T, addrs ...string) *redisstore.Backend {
	t.Helper()
	client, err := redisstore.NewClient(redisstore.ClientConfig{Addrs: addrs})
	if err != nil {
		t.Fatal(err)
	}
	b := redisstore.New(client, redisstore.Options{Logger: quiet, OpTimeout: 5 * time.Second})
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func TestBudgetIsSharedByReplicas(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	replicaA, replicaB := newBudgetBackend(t, srv.Addr), newBudgetBackend(t, srv.Addr)
	raw := rawClient(t, srv.Addr)
	ctx := context.Background()

	// 1 request a second, bursts of 3: three replicas' worth of requests
	// at once get 3 in all, whichever replica asks.
	for i, b := range []*redisstore.Backend{replicaA, replicaB, replicaA} {
		if ok, _, err := b.TakeBudget(ctx, "saasu", 1, 3); !ok || err != nil {
			t.Fatalf("request %d within the burst: %v, %v", i+1, ok, err)
		}
	}
	ok, retryAfter, err := replicaB.TakeBudget(ctx, "saasu", 1, 3)
	if ok || err != nil {
		t.Fatalf("request beyond the burst: %v, %v; want refused", ok, err)
	}
	if retryAfter <= 0 || retryAfter > time.Second {
		t.Fatalf("retryAfter = %v, want at most one emission interval (1s)", retryAfter)
	}
	// Another vendor's budget is its own.
	if ok, _, err := replicaB.TakeBudget(ctx, "hotdocs_advance", 1, 1); !ok || err != nil {
		t.Fatalf("another vendor: %v, %v", ok, err)
	}

	pttl, err := raw.PTTL(ctx, store.BudgetKey("saasu")).Result()
	if err != nil || pttl <= 0 || pttl > 3*time.Second+time.Millisecond {
		t.Fatalf("budget key PTTL = %v, %v; want until the bucket is full again (<= 3s)", pttl, err)
	}
}

func TestBudgetReservationsQueue(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	b := newBudgetBackend(t, srv.Addr)
	ctx := context.Background()

	// 10 a second, no burst: each reservation is 100 ms after the one
	// before, so the waits grow by the interval less the time that passed
	// between the commands.
	var waits []time.Duration
	for range 5 {
		wait, reserved, err := b.ReserveBudget(ctx, "abbyy_vantage", 10, 1, time.Minute)
		if err != nil || !reserved {
			t.Fatalf("ReserveBudget: %v, %v", reserved, err)
		}
		waits = append(waits, wait)
	}
	if waits[0] != 0 {
		t.Fatalf("first wait = %v, want 0", waits[0])
	}
	for i := 1; i < len(waits); i++ {
		if d := waits[i] - waits[i-1]; d <= 0 || d > 100*time.Millisecond {
			t.Fatalf("waits %v: step %d is %v, want about the 100ms interval", waits, i, d)
		}
	}
	// A caller that cannot wait that long takes nothing.
	wait, reserved, err := b.ReserveBudget(ctx, "abbyy_vantage", 10, 1, 100*time.Millisecond)
	if err != nil || reserved {
		t.Fatalf("reservation beyond maxWait: %v, %v; want refused", reserved, err)
	}
	if wait <= 100*time.Millisecond {
		t.Fatalf("refused wait = %v, want the queue's length (more than maxWait)", wait)
	}
	next, reserved, err := b.ReserveBudget(ctx, "abbyy_vantage", 10, 1, time.Minute)
	if err != nil || !reserved || next-waits[4] > 100*time.Millisecond {
		t.Fatalf("after a refusal: wait %v (last was %v), %v, %v; want the refusal to have taken nothing", next, waits[4], reserved, err)
	}
}

func TestBudgetRefusesNonsense(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	b := newBudgetBackend(t, srv.Addr)
	for _, rate := range []float64{0, -1} {
		if _, _, err := b.TakeBudget(context.Background(), "saasu", rate, 1); err == nil {
			t.Errorf("rate %v: no error", rate)
		}
	}
	if _, _, err := b.TakeBudget(context.Background(), "", 1, 1); err == nil {
		t.Error("empty vendor: no error")
	}
}

func TestBudgetErrsWhileRedisIsDown(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	b := newBackend(t, srv.Addr)
	srv.Kill()
	for range 10 {
		_, _, err := b.TakeBudget(context.Background(), "saasu", 1, 1)
		if err == nil {
			t.Fatal("TakeBudget succeeded with Redis down")
		}
		if errors.Is(err, redisstore.ErrUnavailable) {
			return // the breaker opened: later calls fail at once
		}
	}
	t.Fatal("the breaker did not open")
}

func TestBudgetKeySlotPerVendor(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t)
	b := newBudgetBackend(t, c.Addrs...)
	raw := rawClient(t, c.Addrs...)
	ctx := context.Background()
	if ok, _, err := b.TakeBudget(ctx, "brightpattern", 5, 5); !ok || err != nil {
		t.Fatalf("TakeBudget on a Cluster: %v, %v", ok, err)
	}
	if got, want := raw.ClusterKeySlot(ctx, store.BudgetKey("brightpattern")).Val(), raw.ClusterKeySlot(ctx, "budget:brightpattern").Val(); got != want {
		t.Fatalf("budget key on slot %d, want the hash tag's slot %d", got, want)
	}
}
