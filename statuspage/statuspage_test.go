package statuspage

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
)

// fakeLister answers with resp or err and keeps the metadata it got.
type fakeLister struct {
	resp *tokenbrokerv1.ListCredentialStatusResponse
	err  error
	md   metadata.MD
}

func (f *fakeLister) ListCredentialStatus(ctx context.Context, _ *tokenbrokerv1.ListCredentialStatusRequest, _ ...grpc.CallOption) (*tokenbrokerv1.ListCredentialStatusResponse, error) {
	f.md, _ = metadata.FromOutgoingContext(ctx)
	return f.resp, f.err
}

func TestPage(t *testing.T) {
	t.Parallel()
	now := time.Now()
	resp := &tokenbrokerv1.ListCredentialStatusResponse{
		Replica: "host-a/42", FleetWide: true,
		Profiles: []*tokenbrokerv1.CredentialStatus{
			{Profile: "acme", Vendor: "saasu", State: tokenbrokerv1.CredentialState_CREDENTIAL_STATE_WORKING,
				ExpiresAt: timestamppb.New(now.Add(time.Hour)), FetchedBy: "host-a/42", Budget: &tokenbrokerv1.BudgetState{}},
			{Profile: "<b>odd</b>", Vendor: "oauth2", State: tokenbrokerv1.CredentialState_CREDENTIAL_STATE_REJECTED,
				LastRejection:       &tokenbrokerv1.VendorRejection{OauthError: "invalid_client", HttpStatus: 401, At: timestamppb.New(now)},
				ConsecutiveFailures: 2, LastFailure: "rejected", Budget: &tokenbrokerv1.BudgetState{MaxRequestsPerSecond: 2, Burst: 1}},
		},
	}
	tests := []struct {
		name       string
		lister     *fakeLister
		wantCode   int
		wantBody   []string
		wantHeader map[string]string
	}{
		{"the table", &fakeLister{resp: resp}, http.StatusOK,
			[]string{`data-profile="acme"`, `<td class="state">working</td>`, `<td class="state">rejected</td>`, "invalid_client (HTTP 401)", "&lt;b&gt;odd&lt;/b&gt;", "2/s, burst 1", "fleet-wide"},
			map[string]string{"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store"}},
		{"not authenticated", &fakeLister{err: status.Error(codes.Unauthenticated, "tokenbroker: no credentials")}, http.StatusUnauthorized,
			[]string{"no credentials"}, map[string]string{"WWW-Authenticate": `Bearer realm="tokenbroker"`}},
		{"not allowed", &fakeLister{err: status.Error(codes.PermissionDenied, "tokenbroker: client x may not read credential status")}, http.StatusForbidden,
			[]string{"may not read credential status"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(Handler(tc.lister, []string{"X-Forwarded-Cert"}))
			t.Cleanup(srv.Close)
			req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
			req.Header.Set("Authorization", "Bearer page-key")
			req.Header.Set("X-Forwarded-Cert", "chain")
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			body, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
			if res.StatusCode != tc.wantCode {
				t.Fatalf("status %d, want %d: %s", res.StatusCode, tc.wantCode, body)
			}
			for _, want := range tc.wantBody {
				if !strings.Contains(string(body), want) {
					t.Errorf("body lacks %q:\n%s", want, body)
				}
			}
			for k, v := range tc.wantHeader {
				if res.Header.Get(k) != v {
					t.Errorf("header %s = %q, want %q", k, res.Header.Get(k), v)
				}
			}
			if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
				t.Errorf("CSP = %q", csp)
			}
			if strings.Contains(strings.ToLower(string(body)), "<script") || strings.Contains(string(body), "http://") || strings.Contains(string(body), "https://") {
				t.Errorf("the page loads or links something:\n%s", body)
			}
			if got := tc.lister.md.Get("authorization"); len(got) != 1 || got[0] != "Bearer page-key" {
				t.Errorf("authorization passed on as %v", got)
			}
			if got := tc.lister.md.Get("x-forwarded-cert"); len(got) != 1 || got[0] != "chain" {
				t.Errorf("forwarded header passed on as %v", got)
			}
		})
	}
}
