package chaos

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/tokenbroker/tokenbroker/vendorsim"
)

// Bounds are the numbers the invariants are checked against; they come
// from docs/design.md (section 14 states them) and the run's
// configuration.
type Bounds struct {
	// Delivery is how much of a token's life the answer may lose between
	// the broker's last look at the clock and the caller's (encoding, the
	// loopback network, scheduling on a loaded machine).
	Delivery time.Duration
	// Spread is how long after an InvalidateToken returned another
	// replica may still serve the token while Redis is healthy: L1's
	// revalidation age (2 s) plus Delivery.
	Spread time.Duration
	// Grace is how long after a fault ends its effects may last
	// (reconnection, the breaker's probe, a resubscription).
	Grace time.Duration
	// NegativeTTL is the vendors' negative_ttl: a rejection is remembered
	// that long after the vendor accepts the credentials again.
	NegativeTTL time.Duration
	// ForceRefreshInterval and RefreshAhead are the service settings;
	// MaxMinTTL the largest min_ttl callers ask.
	ForceRefreshInterval time.Duration
	RefreshAhead         float64
	MaxMinTTL            time.Duration
	// Attempts is the most requests one fetch makes (vendors' retries)
	// and MinFlight the shortest a failing fetch of Attempts takes (its
	// backoffs, 100 ms and 200 ms less their 50% jitter).
	Attempts  int
	MinFlight time.Duration
}

// DefaultBounds are the bounds of docs/design.md, The chaos run for the
// settings the chaos run uses.
func DefaultBounds() Bounds {
	return Bounds{
		Delivery:             500 * time.Millisecond,
		Spread:               2500 * time.Millisecond,
		Grace:                3 * time.Second,
		NegativeTTL:          2 * time.Second,
		ForceRefreshInterval: 5 * time.Second,
		RefreshAhead:         0.8,
		MaxMinTTL:            time.Second,
		Attempts:             3,
		MinFlight:            150 * time.Millisecond,
	}
}

// Violation is one broken invariant with what shows it.
type Violation struct {
	Invariant int               `json:"invariant"`
	What      string            `json:"what"`
	Calls     []Call            `json:"calls,omitempty"`
	Faults    []Fault           `json:"faults,omitempty"`
	Events    []vendorsim.Event `json:"events,omitempty"`
}

// Invariants names the invariants by number.
var Invariants = map[int]string{
	1: "no token served past its expiry or below the call's min_ttl",
	2: "no token served after the vendor revoked it or after an InvalidateToken naming it returned",
	3: "no refresh token presented twice",
	4: "vendor requests within the bound",
	5: "every failed call explained by a fault",
}

// VendorBound is invariant 4's computation for one vendor.
type VendorBound struct {
	Requests int `json:"requests"`
	Bound    int `json:"bound"`
	// The terms of the bound.
	Steady        int `json:"steady"`
	Forced        int `json:"forced"`
	Invalidations int `json:"invalidations"`
	Faults        int `json:"faults"`
}

// Check proves the invariants over h and returns the violations, and the
// vendor request bounds it computed.
func Check(h *History, b Bounds) ([]Violation, map[string]VendorBound) {
	c := checker{h: h, b: b, issued: map[string]vendorsim.Event{}, revoked: map[string]time.Time{}}
	for _, e := range h.Journal {
		switch e.Kind {
		case vendorsim.EventIssued:
			c.issued[e.Token] = e
		case vendorsim.EventRevoked:
			if _, seen := c.revoked[e.Family]; !seen {
				c.revoked[e.Family] = e.Time
			}
		}
	}
	c.expiry()
	c.revocation()
	c.refreshReuse()
	bounds := c.vendorRequests()
	c.failures()
	return c.out, bounds
}

type checker struct {
	h       *History
	b       Bounds
	issued  map[string]vendorsim.Event // by token digest
	revoked map[string]time.Time       // family -> first revocation
	out     []Violation
}

func (c *checker) add(v Violation) { c.out = append(c.out, v) }

// served are the successful GetToken calls.
func (c *checker) served(yield func(Call) bool) {
	for _, call := range c.h.Calls {
		if call.Method == MethodGetToken && call.OK() && call.Token != "" {
			if !yield(call) {
				return
			}
		}
	}
}

// active returns the faults whose effect window (start to end plus
// grace) overlaps [from, to] and that match.
func (c *checker) active(from, to time.Time, grace time.Duration, match func(Fault) bool) []Fault {
	var out []Fault
	for _, f := range c.h.Faults {
		end := f.End
		if end.IsZero() {
			end = to // never finished: still on
		}
		if match(f) && !f.Start.After(to) && !end.Add(grace).Before(from) {
			out = append(out, f)
		}
	}
	return out
}

// paused is how long replica was paused during [from, to].
func (c *checker) paused(replica int, from, to time.Time) time.Duration {
	var total time.Duration
	for _, f := range c.active(from, to, 0, func(f Fault) bool {
		return f.Kind == ReplicaPause && f.Target == strconv.Itoa(replica)
	}) {
		end := f.End
		if end.IsZero() {
			end = to
		}
		total += overlap(f.Start, end, from, to)
	}
	return total
}

// expiry is invariant 1. A cache hit must have had min_ttl left when the
// call began (the broker looked after that); any token, when the caller
// received it, min_ttl (0 for a freshly fetched one) less what pauses of
// the serving replica and Delivery took.
func (c *checker) expiry() {
	for call := range c.served {
		if call.CacheHit && call.ExpiresAt.Sub(call.Start) < call.MinTTL {
			c.add(Violation{Invariant: 1, Calls: []Call{call}, What: fmt.Sprintf(
				"cache hit with %v left when the call began, min_ttl %v (force_refresh %v)",
				call.ExpiresAt.Sub(call.Start).Round(time.Millisecond), call.MinTTL, call.Force)})
			continue
		}
		want := call.MinTTL
		if !call.CacheHit {
			want = 0
		}
		// Lost to pauses: the serving replica's (a fault), and the
		// machine's (the test process itself stood still).
		pause := c.paused(call.Replica, call.Start, call.End)
		stall := c.stalled(call.Start, call.End)
		lost := pause + stall + c.b.Delivery
		if left := call.ExpiresAt.Sub(call.End); left < want-lost || left <= -lost {
			c.add(Violation{Invariant: 1, Calls: []Call{call}, Faults: c.active(call.Start, call.End, 0, func(Fault) bool { return true }),
				What: fmt.Sprintf("received with %v left, min_ttl %v (cache hit %v), replica paused %v and the test process stalled %v during the call",
					left.Round(time.Millisecond), call.MinTTL, call.CacheHit, pause.Round(time.Millisecond), stall.Round(time.Millisecond))})
		}
	}
}

// revocation is invariant 2.
func (c *checker) revocation() {
	byToken := map[string][]Call{}
	for _, call := range c.h.Calls {
		if call.Method == MethodInvalidate && call.OK() && call.Invalidated {
			byToken[call.Token] = append(byToken[call.Token], call)
		}
	}
	redisSide := func(f Fault) bool {
		switch f.Kind {
		case RedisPause, Failover, RedisRestart, NetLatency, NetReset, NetBlackhole:
			return true
		}
		return false
	}
	for call := range c.served {
		if ev, ok := c.issued[call.Token]; ok && ev.Family != "" {
			if at, revoked := c.revoked[ev.Family]; revoked && call.Start.After(at) {
				c.add(Violation{Invariant: 2, Calls: []Call{call}, Events: []vendorsim.Event{ev},
					What: fmt.Sprintf("served %v after the vendor revoked its grant", call.Start.Sub(at).Round(time.Millisecond))})
			}
		}
		for _, inv := range byToken[call.Token] {
			if !call.Start.After(inv.End) {
				continue
			}
			after := call.Start.Sub(inv.End)
			// A replica killed since is a new process: it remembers no
			// deletion, and counts as another replica.
			restarted := len(c.active(inv.End, call.Start, 0, func(f Fault) bool {
				return f.Kind == ReplicaKill && f.Target == strconv.Itoa(call.Replica) && f.Start.After(inv.End)
			})) > 0
			if inv.Replica == call.Replica && !restarted {
				c.add(Violation{Invariant: 2, Calls: []Call{inv, call},
					What: fmt.Sprintf("served by the replica that invalidated it, %v after InvalidateToken returned", after.Round(time.Millisecond))})
				continue
			}
			if after <= c.b.Spread {
				continue
			}
			excuse := c.active(inv.End.Add(-time.Second), call.Start, c.b.Grace, func(f Fault) bool {
				// A restarted replica starts empty: it serves only what
				// Redis holds, so its kill excuses nothing.
				return redisSide(f) || (f.Kind == ReplicaPause && f.Target == strconv.Itoa(call.Replica))
			})
			if len(excuse) == 0 {
				c.add(Violation{Invariant: 2, Calls: []Call{inv, call},
					What: fmt.Sprintf("served by replica %d %v after InvalidateToken returned on replica %d (bound %v, no Redis fault)",
						call.Replica, after.Round(time.Millisecond), inv.Replica, c.b.Spread)})
			}
		}
	}
}

// refreshReuse is invariant 3: the simulator saw no refresh token twice.
func (c *checker) refreshReuse() {
	redeemed := map[string]vendorsim.Event{}
	for _, e := range c.h.Journal {
		switch e.Kind {
		case vendorsim.EventRefreshRedeemed:
			redeemed[e.Token] = e
		case vendorsim.EventRefreshReused:
			first := redeemed[e.Token]
			c.add(Violation{Invariant: 3, Events: []vendorsim.Event{first, e},
				Faults: c.active(first.Time.Add(-2*time.Second), e.Time, 0, func(Fault) bool { return true }),
				What:   fmt.Sprintf("%s refresh token presented again %v after it was spent", e.Vendor, e.Time.Sub(first.Time).Round(time.Millisecond))})
		}
	}
}

// vendorRequests is invariant 4. For each vendor v with K keys of
// lifetime L, over a run of length D with R replicas:
//
//	bound = K × (⌈D / P⌉ + 1)                          steady state, P = min(ahead×L, L − max min_ttl), ahead = refresh_ahead − 0.05
//	      + K × R × ⌈D / force_refresh_interval⌉          force_refresh
//	      + I                                            InvalidateToken calls that invalidated (v)
//	      + Σ Redis-side faults  R × K × (⌈(d + grace) / P⌉ + 1)
//	      + Σ replica faults     2 × K
//	      + Σ 5xx bursts on v    R × K × attempts × ⌈(d + grace) / min flight⌉
//	      + Σ rejections of v    R × K × (⌈(d + grace) / negative_ttl⌉ + 1)
//	      + Σ slow vendor        R × K × (⌈(d + grace) / min flight⌉ + 1)
func (c *checker) vendorRequests() map[string]VendorBound {
	out := map[string]VendorBound{}
	R := c.h.Replicas
	D := c.h.Length
	for v, k := range c.h.Keys {
		L := c.h.Lifetimes[v]
		period := min(time.Duration(float64(L)*(c.b.RefreshAhead-0.05)), L-c.b.MaxMinTTL)
		period = max(period, 100*time.Millisecond)
		per := func(d time.Duration, p time.Duration) int { return int(math.Ceil(float64(d) / float64(p))) }
		vb := VendorBound{Requests: len(c.h.VendorRequests[v])}
		vb.Steady = k * (per(D, period) + 1)
		if c.b.ForceRefreshInterval > 0 {
			vb.Forced = k * R * per(D, c.b.ForceRefreshInterval)
		}
		for _, call := range c.h.Calls {
			if call.Method == MethodInvalidate && call.Vendor == v && call.OK() && call.Invalidated {
				vb.Invalidations++
			}
		}
		for _, f := range c.h.Faults {
			d := f.End.Sub(f.Start)
			switch f.Kind {
			case RedisPause, Failover, RedisRestart, NetLatency, NetReset, NetBlackhole:
				vb.Faults += R * k * (per(d+c.b.Grace, period) + 1)
			case ReplicaKill, ReplicaPause:
				vb.Faults += 2 * k
			case Vendor5xx:
				if f.Target == v {
					vb.Faults += R * k * c.b.Attempts * per(d+c.b.Grace, c.b.MinFlight)
				}
			case VendorReject:
				if f.Target == v {
					vb.Faults += R * k * (per(d+c.b.Grace, c.b.NegativeTTL) + 1)
				}
			case VendorSlow:
				vb.Faults += R * k * (per(d+c.b.Grace, c.b.MinFlight) + 1)
			}
		}
		vb.Bound = vb.Steady + vb.Forced + vb.Invalidations + vb.Faults
		if vb.Requests > vb.Bound {
			c.add(Violation{Invariant: 4, What: fmt.Sprintf("%s: %d vendor requests, bound %d (steady %d, force_refresh %d, invalidations %d, faults %d)",
				v, vb.Requests, vb.Bound, vb.Steady, vb.Forced, vb.Invalidations, vb.Faults)})
		}
		out[v] = vb
	}
	return out
}

// failures is invariant 5: each failed call needs a fault that explains
// it (explains below).
func (c *checker) failures() {
	for _, call := range c.h.Calls {
		if call.OK() {
			continue
		}
		if len(c.explain(call)) == 0 {
			c.add(Violation{Invariant: 5, Calls: []Call{call}, Faults: c.active(call.Start.Add(-c.b.Grace), call.End, c.b.Grace, func(Fault) bool { return true }),
				What: fmt.Sprintf("%s failed with %s on replica %d, no fault explains it", call.Method, call.Code, call.Replica)})
		}
	}
}

// Explain returns the faults of h that explain the failed call (Check's
// invariant 5), in the order they began.
func Explain(h *History, b Bounds, call Call) []Fault {
	c := checker{h: h, b: b}
	return c.explain(call)
}

// explain returns the faults that explain a failed call:
//   - the call's replica killed or paused (until it answers again);
//   - its vendor answering 5xx, or every vendor slow (UNAVAILABLE,
//     DEADLINE_EXCEEDED), until Grace after;
//   - its vendor rejecting credentials (FAILED_PRECONDITION), until
//     NegativeTTL and Grace after;
//   - for InvalidateToken only (it waits for Redis up to its command
//     timeout), a Redis-side fault.
func (c *checker) explain(call Call) []Fault {
	var out []Fault
	for _, f := range c.h.Faults {
		if c.explains(f, call) {
			out = append(out, f)
		}
	}
	return out
}

func (c *checker) explains(f Fault, call Call) bool {
	end := f.End
	if end.IsZero() {
		end = call.End
	}
	within := func(grace time.Duration) bool {
		return !f.Start.After(call.End) && !end.Add(grace).Before(call.Start)
	}
	code := call.Code
	switch f.Kind {
	case ReplicaKill, ReplicaPause:
		return f.Target == strconv.Itoa(call.Replica) && within(c.b.Delivery)
	case Vendor5xx:
		return f.Target == call.Vendor && within(c.b.Grace) && slices.Contains([]string{"Unavailable", "DeadlineExceeded"}, code)
	case VendorSlow:
		return within(c.b.Grace) && slices.Contains([]string{"Unavailable", "DeadlineExceeded"}, code)
	case VendorReject:
		return f.Target == call.Vendor && within(c.b.NegativeTTL+c.b.Grace) && code == "FailedPrecondition"
	case RedisPause, Failover, RedisRestart, NetLatency, NetReset, NetBlackhole:
		return call.Method == MethodInvalidate && within(c.b.Grace) && slices.Contains([]string{"Unavailable", "DeadlineExceeded"}, code)
	}
	return false
}
