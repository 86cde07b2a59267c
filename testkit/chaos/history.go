package chaos

import (
	"sync"
	"time"

	"github.com/tokenbroker/tokenbroker/vendorsim"
)

// Call is one attempt of one caller: a GetToken or an InvalidateToken sent
// to one replica. A caller that retries on another replica makes a new
// Call with Attempt one higher.
type Call struct {
	ID        int           `json:"id"`
	Caller    int           `json:"caller"`
	Attempt   int           `json:"attempt"`
	Replica   int           `json:"replica"`
	Transport string        `json:"transport"` // "grpc" or "rest"
	Method    string        `json:"method"`    // MethodGetToken or MethodInvalidate
	Selector  string        `json:"selector"`  // "profile:<name>" or "inline:<vendor>"
	Vendor    string        `json:"vendor"`
	MinTTL    time.Duration `json:"min_ttl"`
	Force     bool          `json:"force_refresh,omitempty"`
	Start     time.Time     `json:"start"`
	End       time.Time     `json:"end"`
	// Code is the gRPC code's name ("OK" on success).
	Code    string `json:"code"`
	Message string `json:"message,omitempty"`
	// Token is the digest (vendorsim.Digest) of the token served, or of
	// the one an InvalidateToken named.
	Token       string    `json:"token,omitempty"`
	ExpiresAt   time.Time `json:"expires_at,omitzero"`
	CacheHit    bool      `json:"cache_hit,omitempty"`
	Invalidated bool      `json:"invalidated,omitempty"`
}

// The methods a Call records.
const (
	MethodGetToken   = "GetToken"
	MethodInvalidate = "InvalidateToken"
)

// OK reports whether the call succeeded.
func (c Call) OK() bool { return c.Code == "OK" }

// History is everything a run recorded. Calls and Faults are appended
// concurrently while the run goes on (Record, Begin, Finish); the checker
// reads them after it.
type History struct {
	mu     sync.Mutex
	Seed   int64         `json:"seed"`
	Length time.Duration `json:"duration"`
	Began  time.Time     `json:"began"`
	Calls  []Call        `json:"-"`
	Faults []Fault       `json:"faults"`
	// Journal is the vendor simulator's record; VendorRequests the
	// arrival times of every request at each vendor's token endpoint.
	Journal        []vendorsim.Event      `json:"-"`
	VendorRequests map[string][]time.Time `json:"-"`
	// Keys is how many distinct tokens (credential sets) each vendor is
	// asked for; Lifetimes their lifetime.
	Keys map[string]int `json:"keys"`
	// Stalls are the spans the test process stood still (WatchStalls).
	Stalls    []Stall                  `json:"stalls"`
	Lifetimes map[string]time.Duration `json:"lifetimes"`
	Replicas  int                      `json:"replicas"`
}

// Record appends c, giving it the next ID.
func (h *History) Record(c Call) {
	h.mu.Lock()
	defer h.mu.Unlock()
	c.ID = len(h.Calls)
	h.Calls = append(h.Calls, c)
}

// Begin records that the planned fault f starts now and returns its index
// for Finish.
func (h *History) Begin(f Fault) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	f.Start = time.Now()
	h.Faults = append(h.Faults, f)
	return len(h.Faults) - 1
}

// Finish records that fault i has ended now (the process answers again,
// the proxy passes traffic again).
func (h *History) Finish(i int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.Faults[i].End = time.Now()
}

// Annotate sets fault i's Note.
func (h *History) Annotate(i int, note string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.Faults[i].Note = note
}

// Snapshot returns copies of the calls and faults recorded so far.
func (h *History) Snapshot() ([]Call, []Fault) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Call(nil), h.Calls...), append([]Fault(nil), h.Faults...)
}
