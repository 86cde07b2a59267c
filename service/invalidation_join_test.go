package service

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
	"github.com/tokenbroker/tokenbroker/store"
)

// gatedStore is a memory store whose reads of one key can be held: once
// armed, the first read of the key answers not found (a caller's miss),
// the second reads the entry, reports it on read and waits for release
// before returning it (a flight that read just before an invalidation).
type gatedStore struct {
	*store.Memory
	key     string
	armed   atomic.Bool
	n       atomic.Int64
	read    chan struct{}
	after   chan struct{} // the third read has happened
	release chan struct{}
}

func (g *gatedStore) Get(ctx context.Context, key string) (store.Entry, error) {
	if key != g.key || !g.armed.Load() {
		return g.Memory.Get(ctx, key)
	}
	switch g.n.Add(1) {
	case 1:
		return store.Entry{}, store.ErrNotFound
	case 2:
		e, err := g.Memory.Get(ctx, key)
		close(g.read)
		<-g.release
		return e, err
	case 3:
		defer close(g.after)
	}
	return g.Memory.Get(ctx, key)
}

// TestJoinAfterInvalidationGetsAnotherToken: a flight that read the
// cached token before an InvalidateToken of it completed answers the
// caller that was waiting for it, but not a caller that joined it after
// the invalidation returned: that one gets another token (docs/design.md,
// Token semantics, InvalidateToken).
func TestJoinAfterInvalidationGetsAnotherToken(t *testing.T) {
	t.Parallel()
	g := &gatedStore{Memory: store.NewMemory(0), read: make(chan struct{}), after: make(chan struct{}), release: make(chan struct{})}
	s, _ := newTestService(t, 3600, func(c *Config) { c.Store = g })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req := &tokenbrokerv1.GetTokenRequest{Profile: "p"}
	first, err := s.GetToken(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.resolveFor(ctx, s.current(ctx), req)
	if err != nil {
		t.Fatal(err)
	}
	g.key = r.key
	g.armed.Store(true)

	var wg sync.WaitGroup
	var early, late *tokenbrokerv1.GetTokenResponse
	var earlyErr, lateErr error
	wg.Go(func() { early, earlyErr = s.GetToken(ctx, req) })
	<-g.read // the flight holds the token it read
	inv, err := s.InvalidateToken(ctx, &tokenbrokerv1.InvalidateTokenRequest{Profile: "p", AccessToken: first.AccessToken})
	if err != nil || !inv.Invalidated {
		t.Fatalf("InvalidateToken = %v, %v; want invalidated", inv, err)
	}
	wg.Go(func() { late, lateErr = s.GetToken(ctx, req) })
	<-g.after
	time.Sleep(100 * time.Millisecond) // the late caller joins the flight
	close(g.release)
	wg.Wait()
	if earlyErr != nil || lateErr != nil {
		t.Fatalf("GetToken: %v, %v", earlyErr, lateErr)
	}
	if late.AccessToken == first.AccessToken {
		t.Fatalf("a caller that started after InvalidateToken returned got the invalidated token %q", first.AccessToken)
	}
	t.Logf("waiting caller got %q, the later caller %q", early.AccessToken, late.AccessToken)
}
