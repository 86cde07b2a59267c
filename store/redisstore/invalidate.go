package redisstore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Subscription health: a quiet subscription is PINGed every watchPoll, and
// one that has said nothing (not even PONG) for watchSilence is rebuilt,
// so a frozen server or a half-open connection is noticed in seconds.
const (
	watchPoll    = time.Second
	watchSilence = 3 * time.Second
	// resubscribeBackoff spaces attempts to resubscribe while Redis is down.
	resubscribeBackoff = 250 * time.Millisecond
)

// Watcher is told about changes other replicas made.
type Watcher interface {
	// Forget drops key: another replica replaced or deleted its entry.
	Forget(key string)
	// Resync marks every entry for revalidation: messages may have been
	// missed while the subscription was down (it is also called when a
	// breaker closes: Redis answers again).
	Resync()
}

// Publish tells the other replicas that key changed (a new token, or a
// deletion), through the breaker.
func (b *Backend) Publish(ctx context.Context, key string) error {
	err := b.do(ctx, "", func(ctx context.Context) error {
		return b.client.Publish(ctx, b.opts.Channel, b.id+" "+key).Err()
	})
	if err != nil {
		return fmt.Errorf("redisstore: PUBLISH: %w", err)
	}
	return nil
}

// Watch subscribes to the invalidation and lease channels in a goroutine
// that Close stops, passes other replicas' invalidations to w (nil: a
// replica with no in-process level), and wakes Notify's waiters on every
// message. Each (re)subscription, and each loss of the subscription, calls
// w.Resync.
func (b *Backend) Watch(w Watcher) {
	if w == nil {
		w = nopWatcher{}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	b.watcher = w
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for b.ctx.Err() == nil {
			b.watchOnce(w)
			w.Resync()
			select {
			case <-b.ctx.Done():
			case <-time.After(resubscribeBackoff):
			}
		}
	}()
}

// watchOnce holds one subscription until it fails or goes silent.
func (b *Backend) watchOnce(w Watcher) {
	ctx := b.ctx
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	ps := b.client.Subscribe(ctx, b.opts.Channel, b.opts.LeaseChannel)
	b.pubsub = ps
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		if b.pubsub == ps {
			b.pubsub = nil
		}
		b.mu.Unlock()
		_ = ps.Close()
	}()
	lastHeard := time.Now()
	for ctx.Err() == nil {
		msg, err := ps.ReceiveTimeout(ctx, watchPoll)
		if err != nil {
			if !isTimeout(err) || time.Since(lastHeard) > watchSilence {
				return
			}
			pctx, cancel := context.WithTimeout(ctx, b.opts.OpTimeout)
			_ = ps.Ping(pctx)
			cancel()
			continue
		}
		lastHeard = time.Now()
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" && m.Channel == b.opts.Channel {
				b.resyncs.Add(1)
				w.Resync()
			}
		case *redis.Message:
			if m.Channel == b.opts.LeaseChannel {
				b.wake(m.Payload)
				continue
			}
			sender, key, ok := strings.Cut(m.Payload, " ")
			if !ok {
				continue
			}
			if sender != b.id {
				w.Forget(key)
			}
			// After Forget, so a woken waiter reads past the old copy.
			b.wake(key)
		}
	}
}

type nopWatcher struct{}

func (nopWatcher) Forget(string) {}
func (nopWatcher) Resync()       {}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}
