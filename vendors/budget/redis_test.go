package budget_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/internal/testing/redistest"
	"github.com/tokenbroker/tokenbroker/store/redisstore"
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
	acquire := func(l *budget.Limiter) error {
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		defer cancel()
		release, err := l.Acquire(ctx, "smartdocumentor", lim)
		if err == nil {
			release()
		}
		return err
	}

	if err := acquire(a); err != nil {
		t.Fatalf("first request: %v", err)
	}
	var exhausted *budget.ExhaustedError
	if err := acquire(b); !errors.As(err, &exhausted) || exhausted.RetryAfter <= 200*time.Millisecond || exhausted.RetryAfter > time.Second {
		t.Fatalf("another replica within the second: %v, want *ExhaustedError with RetryAfter in (200ms, 1s]", err)
	}

	srv.Kill()
	if err := acquire(b); err != nil {
		t.Fatalf("Redis down, first request of this process: %v", err)
	}
	if err := acquire(b); !errors.As(err, &exhausted) {
		t.Fatalf("Redis down, second request within the second: %v, want *ExhaustedError from the process's budget", err)
	}
}
