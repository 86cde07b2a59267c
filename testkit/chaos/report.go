package chaos

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/tokenbroker/tokenbroker/vendorsim"
)

// Report is a run's result: what ran, what was injected, the counts, the
// vendor request bounds and the violations.
type Report struct {
	Seed     int64                  `json:"seed"`
	Duration time.Duration          `json:"duration"`
	Replay   string                 `json:"replay"`
	Faults   []Fault                `json:"faults"`
	Counts   Counts                 `json:"counts"`
	Vendors  map[string]VendorBound `json:"vendors"`
	// Violations by invariant, then each with what shows it.
	Violations []Violation `json:"violations"`
}

// Counts summarise the history.
type Counts struct {
	Calls        int            `json:"calls"`
	ByMethod     map[string]int `json:"by_method"`
	ByCode       map[string]int `json:"by_code"`
	ByTransport  map[string]int `json:"by_transport"`
	CacheHits    int            `json:"cache_hits"`
	ForceRefresh int            `json:"force_refresh"`
	Invalidated  int            `json:"invalidated"`
	Issued       int            `json:"tokens_issued"`
	Redeemed     int            `json:"refresh_tokens_redeemed"`
	Reused       int            `json:"refresh_tokens_reused"`
	Revoked      int            `json:"grants_revoked"`
	ByInvariant  map[int]int    `json:"violations_by_invariant"`
	// Failures counts the failed calls by the kind of the first fault
	// that explains each ("unexplained" when none does).
	Failures map[string]int `json:"failures_by_fault"`
	// Stalls of the test process (WatchStalls): how many, the longest,
	// and their total.
	Stalls       int           `json:"stalls"`
	LongestStall time.Duration `json:"longest_stall"`
	Stalled      time.Duration `json:"stalled"`
}

// NewReport checks h and builds its report; replay is the command that
// runs the same schedule again.
func NewReport(h *History, b Bounds, replay string) *Report {
	violations, vendors := Check(h, b)
	r := &Report{Seed: h.Seed, Duration: h.Length, Replay: replay, Faults: h.Faults, Vendors: vendors, Violations: violations}
	if r.Violations == nil {
		r.Violations = []Violation{}
	}
	c := Counts{ByMethod: map[string]int{}, ByCode: map[string]int{}, ByTransport: map[string]int{}, ByInvariant: map[int]int{},
		Failures: map[string]int{}}
	for _, call := range h.Calls {
		c.Calls++
		if !call.OK() {
			why := "unexplained"
			if fs := Explain(h, b, call); len(fs) > 0 {
				why = string(fs[0].Kind)
			}
			c.Failures[why]++
		}
		c.ByMethod[call.Method]++
		c.ByCode[call.Code]++
		c.ByTransport[call.Transport]++
		if call.CacheHit {
			c.CacheHits++
		}
		if call.Force {
			c.ForceRefresh++
		}
		if call.Invalidated {
			c.Invalidated++
		}
	}
	for _, e := range h.Journal {
		switch e.Kind {
		case vendorsim.EventIssued:
			c.Issued++
		case vendorsim.EventRefreshRedeemed:
			c.Redeemed++
		case vendorsim.EventRefreshReused:
			c.Reused++
		case vendorsim.EventRevoked:
			c.Revoked++
		}
	}
	for _, v := range violations {
		c.ByInvariant[v.Invariant]++
	}
	for _, st := range h.Stalls {
		d := st.End.Sub(st.Start)
		c.Stalls++
		c.Stalled += d
		c.LongestStall = max(c.LongestStall, d)
	}
	r.Counts = c
	return r
}

// JSON is the report as indented JSON.
func (r *Report) JSON() ([]byte, error) { return json.MarshalIndent(r, "", "  ") }

// maxShown bounds the violations the text prints per invariant (the JSON
// has them all).
const maxShown = 10

// Text is the report for people: the seed and how to replay it, the
// faults with their times, the counts, and each violation with the calls
// that show it.
func (r *Report) Text(began time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "chaos run: seed %d, %v; replay: %s\n", r.Seed, r.Duration, r.Replay)
	fmt.Fprintf(&b, "faults (%d):\n", len(r.Faults))
	for _, f := range r.Faults {
		fmt.Fprintf(&b, "  %8s-%-8s %s\n", offset(began, f.Start), offset(began, f.End), f)
	}
	c := r.Counts
	fmt.Fprintf(&b, "calls: %d %v; by code %v; by transport %v; cache hits %d, force_refresh %d, invalidated %d\n",
		c.Calls, c.ByMethod, c.ByCode, c.ByTransport, c.CacheHits, c.ForceRefresh, c.Invalidated)
	fmt.Fprintf(&b, "failed calls by the fault that explains them: %v\n", c.Failures)
	fmt.Fprintf(&b, "the test process stalled %d times (longest %v, %v in all)\n", c.Stalls, c.LongestStall.Round(time.Millisecond), c.Stalled.Round(time.Millisecond))
	fmt.Fprintf(&b, "vendor: %d tokens issued, %d refresh tokens redeemed, %d reused, %d grants revoked\n", c.Issued, c.Redeemed, c.Reused, c.Revoked)
	names := make([]string, 0, len(r.Vendors))
	for v := range r.Vendors {
		names = append(names, v)
	}
	sort.Strings(names)
	for _, v := range names {
		vb := r.Vendors[v]
		fmt.Fprintf(&b, "  %s: %d requests, bound %d (steady %d + force_refresh %d + invalidations %d + faults %d)\n",
			v, vb.Requests, vb.Bound, vb.Steady, vb.Forced, vb.Invalidations, vb.Faults)
	}
	fmt.Fprintf(&b, "violations: %d\n", len(r.Violations))
	shown := map[int]int{}
	for _, v := range r.Violations {
		if shown[v.Invariant]++; shown[v.Invariant] > maxShown {
			continue
		}
		fmt.Fprintf(&b, "  [%d %s] %s\n", v.Invariant, Invariants[v.Invariant], v.What)
		for _, call := range v.Calls {
			fmt.Fprintf(&b, "      call %d: %s-%s replica %d %s %s %s min_ttl %v force %v -> %s %q token %s expires %s hit %v invalidated %v\n",
				call.ID, offset(began, call.Start), offset(began, call.End), call.Replica, call.Transport, call.Method, call.Selector,
				call.MinTTL, call.Force, call.Code, call.Message, short(call.Token), offset(began, call.ExpiresAt), call.CacheHit, call.Invalidated)
		}
		for _, f := range v.Faults {
			fmt.Fprintf(&b, "      fault %s-%s %s\n", offset(began, f.Start), offset(began, f.End), f)
		}
		for _, e := range v.Events {
			fmt.Fprintf(&b, "      vendor %s %s %s token %s family %s\n", offset(began, e.Time), e.Vendor, e.Kind, short(e.Token), short(e.Family))
		}
	}
	for inv, n := range shown {
		if n > maxShown {
			fmt.Fprintf(&b, "  (%d more of invariant %d in the JSON report)\n", n-maxShown, inv)
		}
	}
	return b.String()
}

func offset(began, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return fmt.Sprintf("%.3fs", t.Sub(began).Seconds())
}

func short(digest string) string {
	if len(digest) > 8 {
		return digest[:8]
	}
	return digest
}
