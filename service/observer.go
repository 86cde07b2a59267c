package service

import "time"

// Observer receives the service's events, for metrics. Implementations must
// be cheap and safe for concurrent use; labels they derive must never carry
// a secret or token.
type Observer interface {
	// CacheResult: hit or miss for a GetToken.
	CacheResult(vendor string, hit bool)
	// Upstream: one vendor token request and its outcome ("ok" or a
	// vendors.Kind string).
	Upstream(vendor, outcome string, took time.Duration)
	// LeaseWait: a replica waited for another's fetch.
	LeaseWait(vendor string, waited time.Duration)
	// RefreshAhead: a background refresh started.
	RefreshAhead(vendor string)
	// NegativeHit: rejected credentials answered from the negative cache.
	NegativeHit(vendor string)
	// Invalidated: an InvalidateToken call and whether it deleted.
	Invalidated(vendor string, deleted bool)
	// StaleWrite: a fetched token was not stored because a later lease
	// holder had stored one (this holder had lost its lease).
	StaleWrite(vendor string)
	// Panic: a fetch flight panicked; it was recovered, logged with its
	// stack, and its callers answered INTERNAL.
	Panic()
}

type nopObserver struct{}

func (nopObserver) CacheResult(string, bool)               {}
func (nopObserver) Upstream(string, string, time.Duration) {}
func (nopObserver) LeaseWait(string, time.Duration)        {}
func (nopObserver) RefreshAhead(string)                    {}
func (nopObserver) NegativeHit(string)                     {}
func (nopObserver) Invalidated(string, bool)               {}
func (nopObserver) StaleWrite(string)                      {}
func (nopObserver) Panic()                                 {}
