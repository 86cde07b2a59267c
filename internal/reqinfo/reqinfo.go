// Package reqinfo carries what one request learned about itself (request
// id, authenticated principal, vendor, profile, cache outcome) from the
// layer that learns it to the access log that prints it, through the
// request context.
package reqinfo

import (
	"context"
	"sync"
)

// Info is filled in as the request is handled. Safe for concurrent use.
type Info struct {
	// requestID is set once, by With, and never changes: it is read
	// without the lock.
	requestID string
	mu        sync.Mutex
	principal string
	vendor    string
	profile   string
	cache     string
}

type ctxKey struct{}

// infoCtx is a context carrying an Info, both in one allocation (where
// context.WithValue and a separate Info are two, on every call).
type infoCtx struct {
	context.Context
	info Info
}

// Value is the Info for ctxKey, and the parent's value for any other key
// (cancellation and deadlines come from the parent as they would through
// context.WithValue).
func (c *infoCtx) Value(key any) any {
	if _, ok := key.(ctxKey); ok {
		return &c.info
	}
	return c.Context.Value(key)
}

// With returns ctx carrying a new Info with the given request id.
func With(ctx context.Context, requestID string) (context.Context, *Info) {
	c := &infoCtx{Context: ctx, info: Info{requestID: requestID}}
	return c, &c.info
}

// From returns the request's Info, or nil.
func From(ctx context.Context) *Info {
	i, _ := ctx.Value(ctxKey{}).(*Info)
	return i
}

// RequestID returns the request's id.
func (i *Info) RequestID() string { return i.requestID }

// SetPrincipal records the authenticated caller (a client name, never a
// credential).
func SetPrincipal(ctx context.Context, principal string) {
	if i := From(ctx); i != nil {
		i.mu.Lock()
		i.principal = principal
		i.mu.Unlock()
	}
}

// SetTarget records the vendor and profile the request resolved to.
func SetTarget(ctx context.Context, vendor, profile string) {
	if i := From(ctx); i != nil {
		i.mu.Lock()
		i.vendor, i.profile = vendor, profile
		i.mu.Unlock()
	}
}

// SetCache records the cache outcome ("hit", "miss", "negative", ...).
func SetCache(ctx context.Context, outcome string) {
	if i := From(ctx); i != nil {
		i.mu.Lock()
		i.cache = outcome
		i.mu.Unlock()
	}
}

// Snapshot is a copy of an Info's fields.
type Snapshot struct {
	RequestID, Principal, Vendor, Profile, Cache string
}

// Snapshot copies the fields.
func (i *Info) Snapshot() Snapshot {
	i.mu.Lock()
	defer i.mu.Unlock()
	return Snapshot{RequestID: i.requestID, Principal: i.principal, Vendor: i.vendor, Profile: i.profile, Cache: i.cache}
}

// Principal returns the authenticated caller recorded so far.
func Principal(ctx context.Context) string {
	if i := From(ctx); i != nil {
		i.mu.Lock()
		defer i.mu.Unlock()
		return i.principal
	}
	return ""
}
