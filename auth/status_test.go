package auth

import (
	"log/slog"
	"net"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
)

// TestStatusPermission: ListCredentialStatus needs admin:status in the
// caller's allow list, whatever profiles it may use, and each decision is
// audited with the permission as its target.
func TestStatusPermission(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	p, err := New(Config{
		Clients: map[string]Client{
			"ops":     {APIKeySHA256: []string{keyHash("ops-key")}, Allow: []string{PermissionStatus}},
			"billing": {APIKeySHA256: []string{keyHash("billing-key")}, Allow: []string{"acme", "vendor:oauth2"}},
		},
		Logger: slog.New(slog.NewJSONHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	tcp := &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 1}}
	bearer := func(k string) metadata.MD { return metadata.Pairs("authorization", "Bearer "+k) }
	listStatus := tokenbrokerv1.TokenService_ListCredentialStatus_FullMethodName
	tests := []struct {
		name   string
		method string
		req    any
		md     metadata.MD
		want   codes.Code
	}{
		{"status with the permission", listStatus, &tokenbrokerv1.ListCredentialStatusRequest{}, bearer("ops-key"), codes.OK},
		{"status without it", listStatus, &tokenbrokerv1.ListCredentialStatusRequest{}, bearer("billing-key"), codes.PermissionDenied},
		{"status without credentials", listStatus, &tokenbrokerv1.ListCredentialStatusRequest{}, nil, codes.Unauthenticated},
		{"the permission is no profile", tokenbrokerv1.TokenService_GetToken_FullMethodName, &tokenbrokerv1.GetTokenRequest{Profile: "acme"}, bearer("ops-key"), codes.PermissionDenied},
		{"nor a profile named like it", tokenbrokerv1.TokenService_GetToken_FullMethodName, &tokenbrokerv1.GetTokenRequest{Profile: PermissionStatus}, bearer("ops-key"), codes.PermissionDenied},
	}
	for _, tc := range tests {
		err := call(p, tc.method, tc.req, tcp, tc.md)
		if got := status.Code(err); got != tc.want {
			t.Errorf("%s: code = %v (%v), want %v", tc.name, got, err, tc.want)
		}
	}
	out := logs.String()
	if !strings.Contains(out, `"principal":"ops","auth":"api_key","method":"`+listStatus+`","target":"admin:status","decision":"allow"`) ||
		!strings.Contains(out, `"principal":"billing","auth":"api_key","method":"`+listStatus+`","target":"admin:status","decision":"deny"`) {
		t.Errorf("audit log lacks the status decisions:\n%s", out)
	}
	if strings.Contains(out, "ops-key") || strings.Contains(out, "billing-key") {
		t.Error("the audit log contains an API key")
	}
}

func TestStatusPermissionNames(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, entry, wantErr string
	}{
		{"a permission that does not exist", "admin:everything", `clients.a.allow[0]: "admin:everything" is not a permission`},
		{"the status permission", PermissionStatus, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := New(Config{Clients: map[string]Client{"a": {APIKeySHA256: []string{keyHash("k")}, Allow: []string{tc.entry}}}})
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}
