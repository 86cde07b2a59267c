package chaos

import (
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/vendorsim"
)

var t0 = time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

// history is a small run around the hand-made calls, faults and journal.
func history(calls []Call, faults []Fault, journal []vendorsim.Event) *History {
	h := &History{Seed: 1, Length: 20 * time.Second, Began: t0, Faults: faults, Journal: journal,
		Keys: map[string]int{"saasu": 1}, Lifetimes: map[string]time.Duration{"saasu": 3 * time.Second},
		VendorRequests: map[string][]time.Time{"saasu": {at(0)}}, Replicas: 3}
	for _, c := range calls {
		h.Record(c)
	}
	return h
}

// get is an answered GetToken.
func get(replica, start, end int, token string, expires int, minTTL time.Duration, hit bool) Call {
	return Call{Method: MethodGetToken, Replica: replica, Vendor: "saasu", Selector: "profile:saasu", Transport: "grpc",
		Start: at(start), End: at(end), Code: "OK", Token: token, ExpiresAt: at(expires), MinTTL: minTTL, CacheHit: hit}
}

func TestCheckerCatchesEachInvariant(t *testing.T) {
	t.Parallel()
	issued := func(ms int, token, family string) vendorsim.Event {
		return vendorsim.Event{Time: at(ms), Kind: vendorsim.EventIssued, Vendor: "saasu", Token: token, Family: family, Expires: at(ms + 3000)}
	}
	tests := []struct {
		name    string
		calls   []Call
		faults  []Fault
		journal []vendorsim.Event
		stalls  []Stall
		want    []int // the invariants violated, in order
		what    string
	}{
		{
			name:  "a clean history",
			calls: []Call{get(0, 1000, 1010, "a", 3000, time.Second, true), get(1, 1000, 1020, "a", 3000, 500*time.Millisecond, false)},
		},
		{
			name:  "a force_refresh served from the cache below its min_ttl",
			calls: []Call{func() Call { c := get(0, 2300, 2301, "a", 3000, time.Second, true); c.Force = true; return c }()},
			want:  []int{1},
			what:  "cache hit with 700ms left",
		},
		{
			name:  "a token expired when received",
			calls: []Call{get(0, 2900, 3600, "a", 3000, 0, false)},
			want:  []int{1},
			what:  "received with -600ms left",
		},
		{
			name:   "a pause of the serving replica during the call excuses the lost life",
			calls:  []Call{get(0, 1000, 4600, "a", 5000, time.Second, true)},
			faults: []Fault{{Kind: ReplicaPause, Target: "0", Start: at(1100), End: at(4100)}},
		},
		{
			name:   "a stall of the test process during the call excuses the lost life",
			calls:  []Call{get(0, 1000, 4600, "a", 4500, time.Second, true)},
			stalls: []Stall{{Start: at(2000), End: at(3700)}},
		},
		{
			name:   "a stall outside the call does not",
			calls:  []Call{get(0, 1000, 4600, "a", 4500, time.Second, true)},
			stalls: []Stall{{Start: at(4700), End: at(6400)}},
			want:   []int{1},
			what:   "received with -100ms left",
		},
		{
			name:   "a pause of another replica does not",
			calls:  []Call{get(0, 1000, 4600, "a", 5000, time.Second, true)},
			faults: []Fault{{Kind: ReplicaPause, Target: "1", Start: at(1100), End: at(4100)}},
			want:   []int{1},
			what:   "received with 400ms left",
		},
		{
			name: "served by the replica that invalidated it",
			calls: []Call{
				{Method: MethodInvalidate, Replica: 0, Vendor: "saasu", Start: at(1000), End: at(1005), Code: "OK", Token: "a", Invalidated: true},
				get(0, 1010, 1011, "a", 3000, 0, true),
			},
			want: []int{2},
			what: "served by the replica that invalidated it",
		},
		{
			name: "served by the invalidating replica after its restart, while Redis was slow: allowed",
			calls: []Call{
				{Method: MethodInvalidate, Replica: 0, Vendor: "saasu", Start: at(1000), End: at(1005), Code: "OK", Token: "a", Invalidated: true},
				get(0, 4000, 4001, "a", 9000, 0, true),
			},
			faults: []Fault{{Kind: NetLatency, Start: at(500), End: at(3900)}, {Kind: ReplicaKill, Target: "0", Start: at(2000), End: at(3800)}},
		},
		{
			name: "served by the invalidating replica after its restart, Redis healthy",
			calls: []Call{
				{Method: MethodInvalidate, Replica: 0, Vendor: "saasu", Start: at(1000), End: at(1005), Code: "OK", Token: "a", Invalidated: true},
				get(0, 4000, 4001, "a", 9000, 0, true),
			},
			faults: []Fault{{Kind: ReplicaKill, Target: "0", Start: at(2000), End: at(2800)}},
			want:   []int{2},
			what:   "served by replica 0",
		},
		{
			name: "served by another replica beyond the bound, Redis healthy",
			calls: []Call{
				{Method: MethodInvalidate, Replica: 0, Vendor: "saasu", Start: at(1000), End: at(1005), Code: "OK", Token: "a", Invalidated: true},
				get(1, 2000, 2001, "a", 9000, 0, true),
				get(2, 4000, 4001, "a", 9000, 0, true),
			},
			want: []int{2},
			what: "served by replica 2",
		},
		{
			name: "another replica beyond the bound while Redis was paused: allowed",
			calls: []Call{
				{Method: MethodInvalidate, Replica: 0, Vendor: "saasu", Start: at(1000), End: at(1005), Code: "OK", Token: "a", Invalidated: true},
				get(2, 4000, 4001, "a", 9000, 0, true),
			},
			faults: []Fault{{Kind: RedisPause, Start: at(1500), End: at(2500)}},
		},
		{
			name:    "served after the vendor revoked its grant, after a reuse",
			calls:   []Call{get(0, 2000, 2001, "a", 3000, 0, true)},
			journal: []vendorsim.Event{issued(0, "a", "f"), {Time: at(500), Kind: vendorsim.EventRefreshRedeemed, Vendor: "saasu", Token: "r", Family: "f"}, {Time: at(1500), Kind: vendorsim.EventRefreshReused, Vendor: "saasu", Token: "r", Family: "f"}, {Time: at(1500), Kind: vendorsim.EventRevoked, Vendor: "saasu", Family: "f"}},
			want:    []int{2, 3},
			what:    "after the vendor revoked",
		},
		{
			name: "more vendor requests than the bound",
			calls: func() []Call {
				return nil
			}(),
			want: []int{4},
			what: "vendor requests, bound",
		},
		{
			name:  "a failure with no fault",
			calls: []Call{{Method: MethodGetToken, Replica: 1, Vendor: "saasu", Start: at(1000), End: at(4000), Code: "DeadlineExceeded"}},
			want:  []int{5},
			what:  "no fault explains it",
		},
		{
			name:   "a failure while the vendor answered 5xx",
			calls:  []Call{{Method: MethodGetToken, Replica: 1, Vendor: "saasu", Start: at(1000), End: at(1400), Code: "Unavailable"}},
			faults: []Fault{{Kind: Vendor5xx, Target: "saasu", Start: at(900), End: at(1200)}},
		},
		{
			name:   "a rejection after the vendor accepts again but within negative_ttl",
			calls:  []Call{{Method: MethodGetToken, Replica: 1, Vendor: "saasu", Start: at(2500), End: at(2510), Code: "FailedPrecondition"}},
			faults: []Fault{{Kind: VendorReject, Target: "saasu", Start: at(900), End: at(1200)}},
		},
		{
			name:   "a 5xx burst does not explain a rejection",
			calls:  []Call{{Method: MethodGetToken, Replica: 1, Vendor: "saasu", Start: at(1000), End: at(1010), Code: "FailedPrecondition"}},
			faults: []Fault{{Kind: Vendor5xx, Target: "saasu", Start: at(900), End: at(1200)}},
			want:   []int{5},
		},
		{
			name:   "a Redis pause does not explain a failed GetToken",
			calls:  []Call{{Method: MethodGetToken, Replica: 1, Vendor: "saasu", Start: at(1000), End: at(4000), Code: "DeadlineExceeded"}},
			faults: []Fault{{Kind: RedisPause, Start: at(900), End: at(3000)}},
			want:   []int{5},
		},
		{
			name:   "a killed replica explains a refused connection",
			calls:  []Call{{Method: MethodGetToken, Replica: 2, Vendor: "saasu", Start: at(1000), End: at(1001), Code: "Unavailable"}},
			faults: []Fault{{Kind: ReplicaKill, Target: "2", Start: at(900), End: at(1800)}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := history(tc.calls, tc.faults, tc.journal)
			h.Stalls = tc.stalls
			if tc.name == "more vendor requests than the bound" {
				for i := range 100 {
					h.VendorRequests["saasu"] = append(h.VendorRequests["saasu"], at(i*100))
				}
			}
			got, _ := Check(h, DefaultBounds())
			var inv []int
			for _, v := range got {
				inv = append(inv, v.Invariant)
			}
			if len(inv) != len(tc.want) {
				t.Fatalf("violations %v, want invariants %v: %+v", inv, tc.want, got)
			}
			for i := range inv {
				if inv[i] != tc.want[i] {
					t.Fatalf("violations %v, want invariants %v: %+v", inv, tc.want, got)
				}
			}
			if tc.what != "" && !strings.Contains(got[0].What, tc.what) {
				t.Errorf("violation %q, want it to say %q", got[0].What, tc.what)
			}
			if len(got) > 0 && got[0].Invariant != 4 && len(got[0].Calls) == 0 && len(got[0].Events) == 0 {
				t.Errorf("violation %q shows no call or event", got[0].What)
			}
		})
	}
}

// TestVendorBoundFormula: the bound of a quiet run is the steady state
// and the force_refresh term, as docs/design.md, The chaos run states.
func TestVendorBoundFormula(t *testing.T) {
	t.Parallel()
	h := history(nil, nil, nil)
	_, vb := Check(h, DefaultBounds())
	// L = 3s: P = min(0.75*3s, 3s-1s) = 2s; D = 20s: 1*(10+1) = 11;
	// force: 1*3*ceil(20/5) = 12.
	if got := vb["saasu"]; got.Steady != 11 || got.Forced != 12 || got.Bound != 23 || got.Requests != 1 {
		t.Fatalf("bound %+v, want steady 11, forced 12, bound 23, 1 request", got)
	}
}

// TestReportNamesSeedFaultsAndViolations: the text and JSON reports carry
// the seed, the replay command, the faults and each violation's calls.
func TestReportNamesSeedFaultsAndViolations(t *testing.T) {
	t.Parallel()
	h := history([]Call{{Method: MethodGetToken, Replica: 1, Vendor: "saasu", Start: at(1000), End: at(4000), Code: "DeadlineExceeded"}},
		[]Fault{{Kind: NetBlackhole, At: time.Second, For: time.Second, Start: at(1000), End: at(2000)}}, nil)
	h.Seed = 42
	r := NewReport(h, DefaultBounds(), "make chaos SEED=42")
	text := r.Text(t0)
	for _, want := range []string{"seed 42", "make chaos SEED=42", "net_blackhole", "violations: 1", "call 0:", "DeadlineExceeded", "unexplained:1"} {
		if !strings.Contains(text, want) {
			t.Errorf("text report lacks %q:\n%s", want, text)
		}
	}
	js, err := r.JSON()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"seed": 42`, `"net_blackhole"`, `"invariant": 5`} {
		if !strings.Contains(string(js), want) {
			t.Errorf("JSON report lacks %s:\n%s", want, js)
		}
	}
}

// TestPlanReplaysFromTheSeed: one seed, one schedule; faults of one
// resource never overlap; the end of the run is quiet.
func TestPlanReplaysFromTheSeed(t *testing.T) {
	t.Parallel()
	o := PlanOptions{Replicas: 3, Vendors: []string{"saasu", "smartdocumentor"}, LeaseTTL: time.Second}
	a, b := Plan(7, 2*time.Minute, o), Plan(7, 2*time.Minute, o)
	if len(a) < 10 {
		t.Fatalf("%d faults in 2 minutes", len(a))
	}
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("fault %d differs between two plans of one seed: %v, %v", i, a[i], b[i])
		}
	}
	if c := Plan(8, 2*time.Minute, o); len(c) == len(a) && c[0] == a[0] && c[1] == a[1] {
		t.Error("seeds 7 and 8 plan the same faults")
	}
	kinds := map[Kind]bool{}
	for i, f := range a {
		kinds[f.Kind] = true
		if f.At+f.For > 2*time.Minute-4*time.Second {
			t.Errorf("%v ends in the quiet tail", f)
		}
		if f.Kind == ReplicaPause && f.For <= time.Second {
			t.Errorf("%v is not longer than the lease TTL", f)
		}
		for _, g := range a[:i] {
			if g.resource() == f.resource() && g.At+g.For > f.At {
				t.Errorf("%v overlaps %v on one resource", g, f)
			}
		}
	}
	if len(kinds) < 6 {
		t.Errorf("only %d kinds of fault in 2 minutes: %v", len(kinds), kinds)
	}
}
