package redisstore_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokenbroker/tokenbroker/store"
	"github.com/tokenbroker/tokenbroker/store/redisstore"
	"github.com/tokenbroker/tokenbroker/testkit/redistest"
)

// statusStep is one recorded outcome and the event it must produce.
type statusStep struct {
	outcome string
	failure string
	event   string
	state   string
}

var statusCases = []struct {
	name  string
	steps []statusStep
}{
	{"first token: working, no event", []statusStep{
		{outcome: store.OutcomeFetched, state: store.StateWorking},
		{outcome: store.OutcomeFetched, state: store.StateWorking},
	}},
	{"working, rejected, rejected again, working", []statusStep{
		{outcome: store.OutcomeFetched, state: store.StateWorking},
		{outcome: store.OutcomeRejected, event: store.EventRejected, state: store.StateRejected},
		{outcome: store.OutcomeRejected, state: store.StateRejected},
		{outcome: store.OutcomeFetched, event: store.EventRecovered, state: store.StateWorking},
	}},
	{"rejected from the first request", []statusStep{
		{outcome: store.OutcomeRejected, event: store.EventRejected, state: store.StateRejected},
	}},
	{"three failures in a row: failing, then recovered", []statusStep{
		{outcome: store.OutcomeFetched, state: store.StateWorking},
		{outcome: store.OutcomeFailed, failure: "unavailable", state: store.StateWorking},
		{outcome: store.OutcomeFailed, failure: "unavailable", state: store.StateWorking},
		{outcome: store.OutcomeFailed, failure: "throttled", event: store.EventFailing, state: store.StateFailing},
		{outcome: store.OutcomeFailed, failure: "unavailable", state: store.StateFailing},
		{outcome: store.OutcomeFetched, event: store.EventRecovered, state: store.StateWorking},
	}},
	{"a success resets the failure count", []statusStep{
		{outcome: store.OutcomeFailed, failure: "unavailable", state: store.StateUnknown},
		{outcome: store.OutcomeFailed, failure: "unavailable", state: store.StateUnknown},
		{outcome: store.OutcomeFetched, state: store.StateWorking},
		{outcome: store.OutcomeFailed, failure: "unavailable", state: store.StateWorking},
		{outcome: store.OutcomeFailed, failure: "unavailable", state: store.StateWorking},
	}},
	{"failures of rejected credentials are no failing event", []statusStep{
		{outcome: store.OutcomeRejected, event: store.EventRejected, state: store.StateRejected},
		{outcome: store.OutcomeFailed, failure: "unavailable", state: store.StateRejected},
		{outcome: store.OutcomeFailed, failure: "unavailable", state: store.StateRejected},
		{outcome: store.OutcomeFailed, failure: "unavailable", state: store.StateRejected},
	}},
	{"budget exhausted once until a token is fetched", []statusStep{
		{outcome: store.OutcomeFetched, state: store.StateWorking},
		{outcome: store.OutcomeBudgetExhausted, event: store.EventBudgetExhausted, state: store.StateWorking},
		{outcome: store.OutcomeBudgetExhausted, state: store.StateWorking},
		{outcome: store.OutcomeFetched, state: store.StateWorking},
		{outcome: store.OutcomeBudgetExhausted, event: store.EventBudgetExhausted, state: store.StateWorking},
	}},
}

// TestStatusBooks runs the state machine's cases against the process's
// book and the Redis script: both must agree, field for field.
func TestStatusBooks(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	backend := newBudgetBackend(t, srv.Addr)
	for _, tc := range statusCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			profile := strings.NewReplacer(" ", "-", ",", "", ":", "").Replace(tc.name)
			books := map[string]store.StatusBook{"memory": store.NewMemoryStatus(), "redis": backend}
			recs := map[string]store.CredentialStatus{}
			for name, book := range books {
				at := time.UnixMilli(1_700_000_000_000)
				var seq uint64
				for i, st := range tc.steps {
					at = at.Add(time.Second)
					ch, err := book.RecordStatus(context.Background(), store.StatusUpdate{
						Profile: profile, Vendor: "saasu", Outcome: st.outcome, At: at, Replica: "replica-a",
						ExpiresAt: at.Add(time.Hour), OAuthError: "invalid_grant", HTTPStatus: 400,
						RememberedUntil: at.Add(10 * time.Second), Failure: st.failure,
					})
					if err != nil {
						t.Fatalf("%s: step %d: %v", name, i, err)
					}
					if ch.Event != st.event || ch.To != st.state {
						t.Fatalf("%s: step %d (%s): event %q, state %q; want %q, %q", name, i, st.outcome, ch.Event, ch.To, st.event, st.state)
					}
					if ch.Event != "" {
						seq++
						if ch.Seq != seq {
							t.Fatalf("%s: step %d: seq %d, want %d", name, i, ch.Seq, seq)
						}
					}
				}
				list, err := book.ListStatus(context.Background(), []string{profile, "never-recorded"})
				if err != nil || len(list) != 1 {
					t.Fatalf("%s: ListStatus = %v, %v; want the one record", name, list, err)
				}
				recs[name] = list[0]
			}
			if recs["memory"] != recs["redis"] {
				t.Fatalf("the books disagree:\nmemory %+v\nredis  %+v", recs["memory"], recs["redis"])
			}
		})
	}
}

// TestStatusEventOncePerFleet: replicas recording the same rejection at
// once produce one event between them.
func TestStatusEventOncePerFleet(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	replicas := []*redisstore.Backend{newBudgetBackend(t, srv.Addr), newBudgetBackend(t, srv.Addr), newBudgetBackend(t, srv.Addr)}
	raw := rawClient(t, srv.Addr)
	ctx := context.Background()
	// Connections open before the race, as in a running fleet (a loaded
	// test machine may not dial within the dial timeout).
	for _, b := range replicas {
		if err := b.Warm(ctx); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	events := map[string]int{}
	var wg sync.WaitGroup
	for round, outcome := range []string{store.OutcomeRejected, store.OutcomeFetched} {
		// Each replica records in order, from one goroutine, as the
		// service does; the replicas race each other.
		for _, b := range replicas {
			wg.Go(func() {
				for range 5 {
					ch, err := b.RecordStatus(ctx, store.StatusUpdate{
						Profile: "acme", Vendor: "saasu", Outcome: outcome, At: time.Now(), Replica: "r",
					})
					if err != nil {
						t.Errorf("round %d: %v", round, err)
						return
					}
					if ch.Event != "" {
						mu.Lock()
						events[ch.Event]++
						mu.Unlock()
					}
				}
			})
		}
		wg.Wait()
	}
	if events[store.EventRejected] != 1 || events[store.EventRecovered] != 1 || len(events) != 2 {
		t.Fatalf("events = %v; want one rejected and one recovered", events)
	}
	ttl, err := raw.PTTL(ctx, store.StatusKey("acme")).Result()
	if err != nil || ttl <= 0 || ttl > redisstore.StatusTTL {
		t.Fatalf("record PTTL = %v, %v; want at most %v", ttl, err, redisstore.StatusTTL)
	}
}

// testStatusInCluster: every status record is on one slot, so one
// pipeline reads them all from a Cluster.
func testStatusInCluster(t *testing.T, b *redisstore.Backend, raw redis.UniversalClient) {
	t.Helper()
	ctx := context.Background()
	profiles := []string{"a", "b-2", "c.3", "d:4", "e_5"}
	for _, p := range profiles {
		if _, err := b.RecordStatus(ctx, store.StatusUpdate{Profile: p, Vendor: "saasu", Outcome: store.OutcomeFetched, At: time.Now(), ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
			t.Fatalf("record %s: %v", p, err)
		}
		if a, z := raw.ClusterKeySlot(ctx, store.StatusKey(profiles[0])).Val(), raw.ClusterKeySlot(ctx, store.StatusKey(p)).Val(); a != z {
			t.Fatalf("status records on slots %d and %d", a, z)
		}
	}
	list, err := b.ListStatus(ctx, profiles)
	if err != nil || len(list) != len(profiles) {
		t.Fatalf("ListStatus = %d records, %v; want %d", len(list), err, len(profiles))
	}
	for _, rec := range list {
		if rec.State != store.StateWorking {
			t.Fatalf("record %+v", rec)
		}
	}
}
