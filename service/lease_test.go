package service

import (
	"context"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
	"github.com/tokenbroker/tokenbroker/store"
	"github.com/tokenbroker/tokenbroker/vendors"
	"github.com/tokenbroker/tokenbroker/vendors/budget"
)

// heldElsewhere is a Leaser whose leases another process always holds,
// and which never wakes anyone.
type heldElsewhere struct{ tries chan struct{} }

func (l heldElsewhere) TryLease(context.Context, string) (store.Lease, error) {
	select {
	case l.tries <- struct{}{}:
	default:
	}
	return nil, nil
}
func (heldElsewhere) Notify(string) (<-chan struct{}, func()) { return make(chan struct{}), func() {} }
func (heldElsewhere) PollInterval() time.Duration             { return time.Hour }

// TestCallerDeadlineEndsTheWaitForAnotherReplica: a caller waiting on
// another replica's lease gets DEADLINE_EXCEEDED when its deadline
// passes; the vendor is not asked.
func TestCallerDeadlineEndsTheWaitForAnotherReplica(t *testing.T) {
	t.Parallel()
	leases := heldElsewhere{tries: make(chan struct{}, 1)}
	s, v := newTestService(t, 3600, func(c *Config) { c.Leases = leases })
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := s.GetToken(ctx, &tokenbrokerv1.GetTokenRequest{Profile: "p"})
		errc <- err
	}()
	<-leases.tries // waiting on the lease now
	cancel()
	if err := <-errc; status.Code(err) != codes.Canceled && status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("GetToken = %v, want the caller's context error", err)
	}
	if v.calls.Load() != 0 {
		t.Fatalf("%d vendor calls while another replica held the lease", v.calls.Load())
	}
}

// TestRememberedRejectionOnlyOnAMiss: a valid cached token is served even
// when a rejection is remembered for its credentials (a background
// refresh was rejected); a miss gets the rejection without asking the
// vendor.
func TestRememberedRejectionOnlyOnAMiss(t *testing.T) {
	t.Parallel()
	s, v := newTestService(t, 3600, nil)
	ctx := context.Background()
	first, err := s.GetToken(ctx, &tokenbrokerv1.GetTokenRequest{Profile: "p"})
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.resolve(s.snapshot.Load(), selector{profile: "p"})
	if err != nil {
		t.Fatal(err)
	}
	s.rememberRejection(ctx, r, &vendors.Error{Vendor: "smartdocumentor", Kind: vendors.KindRejected, OAuthError: "invalid_client"}, 0)
	again, err := s.GetToken(ctx, &tokenbrokerv1.GetTokenRequest{Profile: "p"})
	if err != nil || again.AccessToken != first.AccessToken || !again.CacheHit {
		t.Fatalf("with a rejection remembered, the cached token was not served: %v, %v", again, err)
	}
	// A min_ttl longer than the cached token's life makes a miss.
	_, err = s.GetToken(ctx, &tokenbrokerv1.GetTokenRequest{Profile: "p", MinTtl: durationpb.New(2 * time.Hour)})
	if st := status.Convert(err); st.Code() != codes.FailedPrecondition {
		t.Fatalf("a miss with a rejection remembered: %v, want FAILED_PRECONDITION", err)
	}
	if v.calls.Load() != 1 {
		t.Fatalf("%d vendor calls, want 1 (the rejection answered the miss)", v.calls.Load())
	}
}

// TestBudgetExhaustedWithinTheCallersDeadline: a caller whose deadline
// comes before the vendor budget's next slot gets RESOURCE_EXHAUSTED with
// RetryInfo at once, not DEADLINE_EXCEEDED after waiting.
func TestBudgetExhaustedWithinTheCallersDeadline(t *testing.T) {
	t.Parallel()
	s, v := newTestService(t, 3600, func(c *Config) {
		c.Budget = budget.New(nil, nil)
		c.VendorSettings["smartdocumentor"]["max_requests_per_second"] = "0.1" // one per 10 s: before the fetch's own deadline (15 s)
	})
	ctx := context.Background()
	if _, err := s.GetToken(ctx, &tokenbrokerv1.GetTokenRequest{Profile: "p"}); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err := s.GetToken(cctx, &tokenbrokerv1.GetTokenRequest{Profile: "p2"})
	st := status.Convert(err)
	if st.Code() != codes.ResourceExhausted {
		t.Fatalf("second credential set over the budget: %v, want RESOURCE_EXHAUSTED", err)
	}
	if cctx.Err() != nil {
		t.Fatal("the answer came only when the caller's deadline had passed")
	}
	var retry *errdetails.RetryInfo
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			retry = ri
		}
	}
	if retry == nil || retry.RetryDelay.AsDuration() <= 2*time.Second {
		t.Fatalf("details %v, want RetryInfo beyond the caller's deadline", st.Details())
	}
	if v.calls.Load() != 1 {
		t.Fatalf("%d vendor calls, want 1", v.calls.Load())
	}
}
