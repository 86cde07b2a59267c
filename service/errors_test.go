package service

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tokenbroker/tokenbroker/vendors/budget"
)

func TestBudgetExhaustedIsResourceExhaustedWithRetryInfo(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		retryAfter time.Duration
		want       time.Duration
	}{
		{"rounded up to the millisecond", 1234567 * time.Microsecond, 1235 * time.Millisecond},
		{"whole milliseconds kept", 200 * time.Millisecond, 200 * time.Millisecond},
		{"never zero", 0, time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := fmt.Errorf("fetch: %w", &budget.ExhaustedError{Vendor: "saasu", RetryAfter: tc.retryAfter})
			st, _ := status.FromError(toStatus(err))
			if st.Code() != codes.ResourceExhausted {
				t.Fatalf("code = %v, want RESOURCE_EXHAUSTED", st.Code())
			}
			var info *errdetails.ErrorInfo
			var retry *errdetails.RetryInfo
			for _, d := range st.Details() {
				switch d := d.(type) {
				case *errdetails.ErrorInfo:
					info = d
				case *errdetails.RetryInfo:
					retry = d
				}
			}
			if info == nil || info.Domain != ErrorDomain || info.Reason != ReasonBudgetExhausted || info.Metadata["vendor"] != "saasu" {
				t.Fatalf("ErrorInfo = %v, want domain %s, reason %s, vendor saasu", info, ErrorDomain, ReasonBudgetExhausted)
			}
			if retry == nil || retry.RetryDelay.AsDuration() != tc.want {
				t.Fatalf("RetryInfo = %v, want %v", retry, tc.want)
			}
		})
	}
}
