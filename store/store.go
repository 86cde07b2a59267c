// Package store keeps issued tokens until they expire. The service needs a
// Store (and, across replicas, a Leaser); implementations are the
// in-process Memory store (the default) and the Redis store. Caching levels
// and encryption are wrappers with the same interface as what they wrap.
//
// Keys are strings the service builds with TokenKey and NegativeKey (an
// HMAC fingerprint in a Redis hash tag); a store never sees a credential.
// keys.go builds every Redis key and channel name, the ones beside a
// token's (its fetch lease, fence generation, ...) included.
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
	// Fence is the fence generation of the fetch lease the entry was
	// written under (0: none). A shared store refuses a write whose Fence is older
	// than the key's current generation (ErrStale), so a holder that lost
	// its lease never overwrites a newer token or refresh token.
	Fence uint64
	// Rejected, when set, makes the entry a remembered vendor rejection
	// (the fleet-wide negative cache) instead of a token: AccessToken and
	// RefreshToken are empty.
	Rejected *Rejection
}

// Rejection is what the negative cache keeps of a vendor's rejection:
// enough to answer callers as the vendor did, never a secret.
type Rejection struct {
	Status      int    `json:"status,omitempty"`
	OAuthError  string `json:"error,omitempty"`
	Description string `json:"description,omitempty"`
}

// ErrStale is returned by Put when the store holds a newer generation for
// the key than the entry's Fence: the write was refused.
var ErrStale = errors.New("store: write refused: a newer generation is stored")

// ErrRevoked is returned by Put when the entry's access token was
// reported rejected (CompareAndDelete named it) and is remembered as such:
// the write was refused, so a copy kept somewhere during an outage never
// comes back for the whole fleet.
var ErrRevoked = errors.New("store: write refused: the token was reported rejected")

// Store is a token cache. Implementations are safe for concurrent use.
type Store interface {
	// Get returns the live entry for key, or ErrNotFound.
	Get(ctx context.Context, key string) (Entry, error)
	// Put stores e under key until e.ExpiresAt. An entry already expired
	// is not stored.
	Put(ctx context.Context, key string, e Entry) error
	// CompareAndDelete deletes key's entry only if its access token is
	// accessToken, atomically, and reports whether it did. A shared store
	// also remembers accessToken as rejected, whether or not it deleted
	// anything, and refuses to store it again (ErrRevoked).
	CompareAndDelete(ctx context.Context, key, accessToken string) (bool, error)
}

// DefaultLeaseTTL is how long a fetch lease outlives its holder's last
// renewal when nothing else is configured (config cache.lease_ttl): the
// longest a crashed holder delays the others.
const DefaultLeaseTTL = 2 * time.Second

// Leaser hands out the cross-process fetch lease of a key: one holder at
// a time asks the vendor, the others wait to be told it is done.
type Leaser interface {
	// TryLease takes key's lease. It returns nil, nil when another process
	// holds it. The lease stays held, renewed in the background, until
	// Release; a holder that dies loses it within the lease TTL.
	TryLease(ctx context.Context, key string) (Lease, error)
	// Notify returns a channel that is closed when key's lease is
	// released or a token is stored under key, and a function that stops
	// the notification. Subscribe before TryLease, so that a release
	// between the two is not missed. Delivery is best effort: a waiter
	// must also re-check after PollInterval.
	Notify(key string) (changed <-chan struct{}, stop func())
	// PollInterval is how long a waiter waits for a notification before
	// it looks again anyway (a lost message, a dead holder).
	PollInterval() time.Duration
}

// Lease is a held fetch lease.
type Lease interface {
	// Fence is the lease's fence generation: entries written under the lease carry
	// it (Entry.Fence), and the store refuses older ones.
	Fence() uint64
	// Extend renews the lease now and reports whether this holder still
	// owns it (a holder that stalled past its TTL may not).
	Extend(ctx context.Context) (held bool, err error)
	// ClaimRefreshToken records, while this holder still owns the lease,
	// that it is about to present refreshToken, and reports whether it
	// may: false when it lost the lease, or when an earlier holder claimed
	// the same token and never stored its successor (its lease expired
	// mid-request: the token may be spent, and presenting it again would
	// revoke the grant where servers detect reuse).
	ClaimRefreshToken(ctx context.Context, refreshToken string) (bool, error)
	// Release ends the lease if this holder still owns it, and wakes the
	// waiters. It is safe to call more than once.
	Release()
}

// FreshReader is implemented by caching levels that can read past
// themselves: GetFresh answers what the shared level holds now, never a
// copy read before the call.
type FreshReader interface {
	GetFresh(ctx context.Context, key string) (Entry, error)
}

// GetFresh reads key from s past any caching level (FreshReader), else
// with s.Get.
func GetFresh(ctx context.Context, s Store, key string) (Entry, error) {
	if f, ok := s.(FreshReader); ok {
		return f.GetFresh(ctx, key)
	}
	return s.Get(ctx, key)
}
