// Package store keeps issued tokens until they expire. The service needs a
// Store (and, across replicas, a Locker); implementations are the
// in-process Memory store (the default) and the Redis store. Caching levels
// and encryption are wrappers with the same interface as what they wrap.
//
// Keys are opaque strings chosen by the service (design section 7: an HMAC
// fingerprint in a Redis hash tag); a store never sees a credential.
package store

import (
	"context"
	"errors"
	"time"
)

// ErrNotFound is returned by Get when the key holds no live entry.
var ErrNotFound = errors.New("store: not found")

// Entry is a cached token.
type Entry struct {
	AccessToken  string
	TokenType    string
	Scope        string
	RefreshToken string
	// IssuedAt is when the vendor request was sent; ExpiresAt when the
	// token stops being valid. A store keeps an entry no longer than
	// ExpiresAt.
	IssuedAt  time.Time
	ExpiresAt time.Time
	// FetchedAt is when the broker stored the token (force_refresh
	// compares it with force_refresh_interval).
	FetchedAt time.Time
}

// TTL is how long the entry may stay in a store at now.
func (e *Entry) TTL(now time.Time) time.Duration { return e.ExpiresAt.Sub(now) }

// Store is a token cache. Implementations are safe for concurrent use.
type Store interface {
	// Get returns the live entry for key, or ErrNotFound.
	Get(ctx context.Context, key string) (Entry, error)
	// Put stores e under key until e.ExpiresAt. An entry already expired
	// is not stored.
	Put(ctx context.Context, key string, e Entry) error
	// CompareAndDelete deletes key's entry only if its access token is
	// accessToken, atomically, and reports whether it did.
	CompareAndDelete(ctx context.Context, key, accessToken string) (bool, error)
}

// Locker serialises token fetches for one key across processes.
type Locker interface {
	// TryLock takes key's fetch lock for at most ttl. acquired is false
	// when another holder has it. release frees the lock only if this
	// holder still owns it; it is never nil when acquired is true.
	TryLock(ctx context.Context, key string, ttl time.Duration) (release func(), acquired bool, err error)
}

// AfterTryLock wraps a Locker: after each TryLock returns, then(key, err)
// runs. Caching levels use it to read afresh after a lock attempt, so that
// a replica that waited on another's fetch sees the token stored under the
// lock rather than what it read before.
func AfterTryLock(inner Locker, then func(key string, err error)) Locker {
	return &hookedLocker{inner: inner, then: then}
}

type hookedLocker struct {
	inner Locker
	then  func(key string, err error)
}

func (l *hookedLocker) TryLock(ctx context.Context, key string, ttl time.Duration) (func(), bool, error) {
	release, acquired, err := l.inner.TryLock(ctx, key, ttl)
	l.then(key, err)
	return release, acquired, err
}
