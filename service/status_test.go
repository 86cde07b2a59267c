package service

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/tokenbroker/tokenbroker/events"
	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
	"github.com/tokenbroker/tokenbroker/secret"
	"github.com/tokenbroker/tokenbroker/vendors"
	"github.com/tokenbroker/tokenbroker/vendors/budget"
)

// switchingVendor issues tokens of life seconds, or rejects the client
// (401 invalid_client) while rejecting is set.
type switchingVendor struct {
	calls     atomic.Int64
	rejecting atomic.Bool
	life      int
}

func (v *switchingVendor) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	n := v.calls.Add(1)
	w.Header().Set("Content-Type", "application/json")
	if v.rejecting.Load() {
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"error":"invalid_client"}`)
		return
	}
	fmt.Fprintf(w, `{"access_token":"status-secret-token-%d","token_type":"Bearer","expires_in":%d}`, n, v.life)
}

// eventRecorder is an EventPublisher that keeps what it is given.
type eventRecorder struct {
	mu  sync.Mutex
	got []events.Event
}

func (r *eventRecorder) Publish(e events.Event) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, e)
	return true
}

func (r *eventRecorder) types() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.got {
		out = append(out, e.Type)
	}
	return out
}

// eventually polls cond every 10 ms for at most 10 s: a bound, not a
// measurement. (The package's tests cannot use testkit/brokertest's
// Eventually: the kit imports app, which imports service.)
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 1000 {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("not within 10s: %s", what)
}

func TestCredentialStatusAndEvents(t *testing.T) {
	t.Parallel()
	v := &switchingVendor{life: 3600}
	srv := httptest.NewServer(v)
	t.Cleanup(srv.Close)
	rec := &eventRecorder{}
	s := New(Config{
		VendorSettings: map[string]vendors.Settings{"smartdocumentor": {"token_url": srv.URL + "/connect/token", "negative_ttl": "0s", "max_requests_per_second": "5"}},
		Profiles: map[string]Profile{
			"acme":  {Vendor: "smartdocumentor", Credentials: secret.Map{"client_id": secret.New("id"), "client_secret": secret.New("status-secret-1")}},
			"quiet": {Vendor: "smartdocumentor", Credentials: secret.Map{"client_id": secret.New("id"), "client_secret": secret.New("status-secret-2")}, KeepWarm: false},
		},
		FingerprintKey:       []byte("k"),
		ForceRefreshInterval: 0, // every force_refresh asks the vendor
		Health:               Health{Replica: "replica-1", Events: rec},
	})
	t.Cleanup(s.Close)
	ctx := context.Background()
	get := func(force bool) error {
		_, err := s.GetToken(ctx, &tokenbrokerv1.GetTokenRequest{Profile: "acme", ForceRefresh: force, MinTtl: durationpb.New(0)})
		return err
	}
	state := func(profile string) *tokenbrokerv1.CredentialStatus {
		resp, err := s.ListCredentialStatus(ctx, &tokenbrokerv1.ListCredentialStatusRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if resp.FleetWide || resp.Replica != "replica-1" || len(resp.Profiles) != 2 {
			t.Fatalf("response = %v; want both profiles, this replica's records", resp)
		}
		for _, p := range resp.Profiles {
			if strings.Contains(p.String(), "status-secret") {
				t.Fatalf("status carries a token or secret: %v", p)
			}
			if p.Profile == profile {
				return p
			}
		}
		t.Fatalf("no %s in %v", profile, resp)
		return nil
	}

	if got := state("quiet"); got.State != tokenbrokerv1.CredentialState_CREDENTIAL_STATE_UNSPECIFIED || got.Budget.GetMaxRequestsPerSecond() != 5 {
		t.Fatalf("never fetched: %v", got)
	}
	if err := get(false); err != nil {
		t.Fatal(err)
	}
	eventually(t, "working", func() bool { return state("acme").State == tokenbrokerv1.CredentialState_CREDENTIAL_STATE_WORKING })
	if got := state("acme"); got.FetchedBy != "replica-1" || got.ExpiresAt == nil || time.Until(got.ExpiresAt.AsTime()) < 59*time.Minute {
		t.Fatalf("after a fetch: %v", got)
	}

	v.rejecting.Store(true)
	for range 3 {
		if err := get(true); err == nil {
			t.Fatal("a rejected fetch succeeded")
		}
	}
	eventually(t, "rejected", func() bool { return state("acme").ConsecutiveFailures == 3 })
	got := state("acme")
	if got.State != tokenbrokerv1.CredentialState_CREDENTIAL_STATE_REJECTED || got.LastRejection.GetOauthError() != "invalid_client" || got.LastRejection.GetHttpStatus() != 401 {
		t.Fatalf("after rejections: %v", got)
	}

	v.rejecting.Store(false)
	if err := get(true); err != nil {
		t.Fatal(err)
	}
	eventually(t, "recovered", func() bool { return len(rec.types()) == 2 })
	if got := rec.types(); got[0] != events.TypeRejected || got[1] != events.TypeRecovered {
		t.Fatalf("events = %v; want one rejected, one recovered", got)
	}
	rec.mu.Lock()
	first := rec.got[0]
	rec.mu.Unlock()
	if first.Profile != "acme" || first.Vendor != "smartdocumentor" || first.Reason != "invalid_client" || first.State != "rejected" || first.PreviousState != "working" {
		t.Fatalf("rejected event = %+v", first)
	}
}

// TestBudgetExhaustedEvent: a fetch that finds the vendor's budget spent
// is recorded and told once, until a token is fetched again.
func TestBudgetExhaustedEvent(t *testing.T) {
	t.Parallel()
	v := &switchingVendor{life: 3600}
	srv := httptest.NewServer(v)
	t.Cleanup(srv.Close)
	rec := &eventRecorder{}
	s := New(Config{
		// One request every 1000 s: the second fetch finds no slot.
		VendorSettings: map[string]vendors.Settings{"smartdocumentor": {"token_url": srv.URL + "/connect/token", "max_requests_per_second": "0.001"}},
		Profiles: map[string]Profile{
			"acme": {Vendor: "smartdocumentor", Credentials: secret.Map{"client_id": secret.New("id"), "client_secret": secret.New("s")}},
		},
		FingerprintKey:       []byte("k"),
		ForceRefreshInterval: 0, // every force_refresh asks the vendor
		Budget:               budget.New(nil, nil),
		Health:               Health{Replica: "replica-1", Events: rec},
	})
	t.Cleanup(s.Close)
	get := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := s.GetToken(ctx, &tokenbrokerv1.GetTokenRequest{Profile: "acme", ForceRefresh: true})
		return err
	}
	if err := get(); err != nil {
		t.Fatal(err)
	}
	var lastTry time.Time
	for range 3 {
		lastTry = time.Now()
		if err := get(); status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("err = %v, want the budget exhausted", err)
		}
	}
	var got *tokenbrokerv1.CredentialStatus
	eventually(t, "three exhaustions recorded", func() bool {
		resp, err := s.ListCredentialStatus(context.Background(), &tokenbrokerv1.ListCredentialStatusRequest{})
		if err != nil || len(resp.Profiles) != 1 {
			return false
		}
		got = resp.Profiles[0]
		// The recorder works in order: once the last try is recorded,
		// every event there will be has been published.
		return got.Budget.GetExhausted() && !got.Budget.GetExhaustedAt().AsTime().Before(lastTry)
	})
	if types := rec.types(); len(types) != 1 {
		t.Fatalf("events = %v, want one budget_exhausted", types)
	}
	if got.State != tokenbrokerv1.CredentialState_CREDENTIAL_STATE_WORKING || got.Budget.GetMaxRequestsPerSecond() != 0.001 || got.Budget.GetExhaustedAt() == nil {
		t.Fatalf("status = %v", got)
	}
	if types := rec.types(); types[0] != events.TypeBudgetExhausted || got.LastFailure != "budget_exhausted" {
		t.Fatalf("events = %v, want one budget_exhausted", types)
	}
}
