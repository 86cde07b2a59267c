package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
)

func TestPrintStatus(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)
	resp := &tokenbrokerv1.ListCredentialStatusResponse{
		Replica: "host/7", FleetWide: false, BreakerOpen: true,
		Profiles: []*tokenbrokerv1.CredentialStatus{
			{Profile: "acme", Vendor: "saasu", State: tokenbrokerv1.CredentialState_CREDENTIAL_STATE_WORKING,
				StateSince: timestamppb.New(now.Add(-time.Minute)), ExpiresAt: timestamppb.New(now.Add(30 * time.Minute)), FetchedBy: "host/7",
				Budget: &tokenbrokerv1.BudgetState{MaxRequestsPerSecond: 2, Burst: 3, Exhausted: true}},
			{Profile: "broken", Vendor: "oauth2", State: tokenbrokerv1.CredentialState_CREDENTIAL_STATE_REJECTED,
				ExpiresAt: timestamppb.New(now.Add(-time.Hour)), ConsecutiveFailures: 4, LastFailure: "rejected",
				LastRejection: &tokenbrokerv1.VendorRejection{OauthError: "invalid_grant", HttpStatus: 400, At: timestamppb.New(now.Add(-5 * time.Second))}},
			{Profile: "idle", Vendor: "oauth2"},
		},
	}
	var out bytes.Buffer
	if err := printStatus(&out, resp, now); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 5 {
		t.Fatalf("%d lines:\n%s", len(lines), out.String())
	}
	for i, want := range [][]string{
		{"host/7", "this replica only", "Redis breaker open"},
		{"PROFILE", "STATE", "LAST REJECTION", "BUDGET"},
		{"acme", "working", "1m0s ago", "in 30m0s", "2/s burst 3 EXHAUSTED"},
		{"broken", "rejected", "expired 1h0m0s ago", "4 (rejected)", "invalid_grant (HTTP 400) 5s ago", "unlimited"},
		{"idle", "never fetched"},
	} {
		for _, w := range want {
			if !strings.Contains(lines[i], w) {
				t.Errorf("line %d lacks %q: %s", i, w, lines[i])
			}
		}
	}
}

func TestStatusArguments(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"extra argument", []string{"now"}, "unexpected arguments"},
		{"bad timeout", []string{"--addr", "127.0.0.1:1", "--timeout", "0s"}, "--timeout must be positive"},
		{"bad address", []string{"--addr", "nowhere"}, "missing port"},
		{"nothing listening", []string{"--addr", "127.0.0.1:1", "--timeout", "1s"}, "status:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			err := status(context.Background(), tc.args, &stdout, &stderr, noEnv)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}
