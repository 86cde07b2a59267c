package test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
	"github.com/tokenbroker/tokenbroker/testkit/brokertest"
)

// TestRequestLimits checks the bounds on what one request may make the
// broker read: message and body sizes, map entries and value lengths,
// metadata size.
func TestRequestLimits(t *testing.T) {
	t.Parallel()
	sim := brokertest.StartSim(t)
	b := brokertest.StartBroker(t, sim, brokertest.SimConfig(t, sim, sdProfile))
	ctx := ctxT(t)

	many := map[string]string{}
	for i := range 33 {
		many[fmt.Sprintf("k%d", i)] = "v"
	}
	tests := []struct {
		name string
		req  *tokenbrokerv1.GetTokenRequest
		md   metadata.MD
		code codes.Code
	}{
		{"33 credentials", &tokenbrokerv1.GetTokenRequest{Vendor: "smartdocumentor", Credentials: many}, nil, codes.InvalidArgument},
		{"33 params", &tokenbrokerv1.GetTokenRequest{Profile: "acme-sd", Params: many}, nil, codes.InvalidArgument},
		{"a value of 8 KiB + 1", &tokenbrokerv1.GetTokenRequest{Vendor: "smartdocumentor", Credentials: map[string]string{"client_id": "x", "client_secret": strings.Repeat("s", 8193)}}, nil, codes.InvalidArgument},
		{"a message over 256 KiB", &tokenbrokerv1.GetTokenRequest{Profile: strings.Repeat("p", 300<<10)}, nil, codes.ResourceExhausted},
		{"metadata over 64 KiB", &tokenbrokerv1.GetTokenRequest{Profile: "acme-sd"}, metadata.Pairs("x-padding", strings.Repeat("m", 100<<10)), codes.Internal},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := ctx
			if tc.md != nil {
				c = metadata.NewOutgoingContext(ctx, tc.md)
			}
			_, err := b.Client.GetToken(c, tc.req)
			if got := status.Code(err); got != tc.code {
				t.Fatalf("code = %v (%v), want %v", got, err, tc.code)
			}
			if n := sim.Requests("smartdocumentor"); n != 0 {
				t.Fatalf("a refused request reached the vendor (%d requests)", n)
			}
		})
	}

	code, _, body := postJSON(t, b.HTTP+"/v1/token", `{"profile":"`+strings.Repeat("p", 300<<10)+`"}`)
	if code < 400 || code >= 500 {
		t.Errorf("REST body over 256 KiB: status %d (%.200s), want a 4xx", code, body)
	}
}

// TestHTTPHeaderTimeout: a caller that never finishes its headers is cut
// off after the read-header timeout (5s), so it cannot hold connections
// open (slowloris).
func TestHTTPHeaderTimeout(t *testing.T) {
	t.Parallel()
	sim := brokertest.StartSim(t)
	b := brokertest.StartBroker(t, sim, brokertest.SimConfig(t, sim, ""))
	conn, err := net.Dial("tcp", strings.TrimPrefix(b.HTTP, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	if _, err := io.WriteString(conn, "POST /v1/token HTTP/1.1\r\nHost: broker\r\nX-Slow: "); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	_, err = io.ReadAll(conn)
	took := time.Since(start)
	if err != nil {
		t.Fatalf("the server kept the connection for %v: %v", took, err)
	}
	if took < 4*time.Second || took > 10*time.Second {
		t.Fatalf("connection closed after %v, want about the 5s read-header timeout", took)
	}

	// A request that does finish is served (the timeouts leave room).
	resp, err := http.Get(b.HTTP + "/v1/vendors")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET /v1/vendors = %d", resp.StatusCode)
	}
}
