package tiered_test

import (
	"context"
	"errors"
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
// panics releases the caller that shared it with an error instead of
// leaving it waiting for ever, and the next Get reads afresh. A read in
// its caller's goroutine (no deadline) goes on panicking there, for the
// server's recovery; a read in a goroutine of its own (a near deadline)
// is recovered there, and its caller gets the error too.
func TestReadThatPanicsReleasesItsSharers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		timeout time.Duration // the first caller's; 0: none
	}{
		{"read in the caller's goroutine", 0},
		{"read in a goroutine of its own", 500 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				ctx := context.Background()
				remote := &panicsOnce{blocking: newBlocking()}
				s, want := newBlockingNoL1(t, remote, remote.shared, time.Hour)

				type outcome struct {
					err       error
					recovered any
				}
				first := make(chan outcome, 1)
				go func() {
					var o outcome
					defer func() { o.recovered = recover(); first <- o }()
					cctx := ctx
					if tc.timeout > 0 {
						var cancel context.CancelFunc
						cctx, cancel = context.WithTimeout(ctx, tc.timeout)
						defer cancel()
					}
					_, o.err = s.Get(cctx, key)
				}()
				<-remote.started
				sharerErr := make(chan error, 1)
				go func() {
					_, err := s.Get(ctx, key)
					sharerErr <- err
				}()
				synctest.Wait() // the second caller waits on the first one's read
				close(remote.release)
				o := <-first
				if tc.timeout == 0 && o.recovered != "shared level bug" {
					t.Fatalf("the reading caller recovered %v (error %v), want the read's panic", o.recovered, o.err)
				}
				if tc.timeout > 0 && (o.recovered != nil || !errors.Is(o.err, tiered.ErrReadPanicked)) {
					t.Fatalf("the first caller got %v and recovered %v, want the panic's error", o.err, o.recovered)
				}
				if err := <-sharerErr; !errors.Is(err, tiered.ErrReadPanicked) {
					t.Fatalf("the caller that shared the panicked read got %v, want the panic's error", err)
				}
				e, err := s.Get(ctx, key)
				if err != nil || e.AccessToken != want.AccessToken {
					t.Fatalf("the next Get: %q, %v; want the token", e.AccessToken, err)
				}
				if st := s.Stats(); st.Reads != 2 || st.Shared != 1 {
					t.Fatalf("stats %+v: want 2 reads, 1 shared", st)
				}
			})
		})
	}
}

// TestSharedCountsAnswersOnly: a caller that joins a read and leaves at
// its deadline before the read answers was not answered by it.
func TestSharedCountsAnswersOnly(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		remote := newBlocking()
		s, _ := newBlockingNoL1(t, remote, remote.shared, time.Hour)
		done := make(chan struct{})
		go func() {
			_, _ = s.Get(ctx, key)
			close(done)
		}()
		<-remote.started
		cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		if _, err := s.Get(cctx, key); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("the joining caller got %v, want its deadline", err)
		}
		close(remote.release)
		<-done
		if st := s.Stats(); st.Shared != 0 || st.Reads != 1 {
			t.Fatalf("stats %+v: want 1 read, none shared", st)
		}
	})
}
