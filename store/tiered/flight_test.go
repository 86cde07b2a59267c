package tiered_test

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/tokenbroker/tokenbroker/store"
	"github.com/tokenbroker/tokenbroker/store/tiered"
)

// panicsOnce is a shared level whose first Get waits for release and
// then panics.
type panicsOnce struct {
	*blocking
	panicked bool
}

func (p *panicsOnce) Get(ctx context.Context, key string) (store.Entry, error) {
	if !p.panicked {
		p.panicked = true
		p.started <- struct{}{}
		<-p.release
		panic("shared level bug")
	}
	return p.shared.Get(ctx, key)
}

// TestReadThatPanicsReleasesItsSharers: a read of the shared level that
// panics goes on panicking in the caller that made it, the caller that
// shared it gets an error instead of waiting for ever, and the next Get
// reads afresh.
func TestReadThatPanicsReleasesItsSharers(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		remote := &panicsOnce{blocking: &blocking{shared: newShared(), started: make(chan struct{}, 1), release: make(chan struct{})}}
		want := entry(time.Hour)
		_ = remote.Memory.Put(ctx, key, want)
		s := newL1(t, remote, tiered.Options{NoL1: true})

		leaderPanic := make(chan any, 1)
		go func() {
			defer func() { leaderPanic <- recover() }()
			_, _ = s.Get(ctx, key)
		}()
		<-remote.started
		sharerErr := make(chan error, 1)
		go func() {
			_, err := s.Get(ctx, key)
			sharerErr <- err
		}()
		synctest.Wait() // the second caller waits on the first one's read
		close(remote.release)
		if v := <-leaderPanic; v != "shared level bug" {
			t.Fatalf("the reading caller recovered %v, want the read's panic", v)
		}
		if err := <-sharerErr; err == nil {
			t.Fatal("the caller that shared the panicked read got no error")
		}
		e, err := s.Get(ctx, key)
		if err != nil || e.AccessToken != want.AccessToken {
			t.Fatalf("the next Get: %q, %v; want the token", e.AccessToken, err)
		}
		if st := s.Stats(); st.Reads != 2 || st.Shared != 1 {
			t.Fatalf("stats %+v: want 2 reads, 1 shared", st)
		}
	})
}
