package test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
	"github.com/tokenbroker/tokenbroker/testkit/brokertest"
	"github.com/tokenbroker/tokenbroker/testkit/redistest"
	"github.com/tokenbroker/tokenbroker/vendorsim"
)

// The isolation suite (docs/design.md, Security model): two tenants, each
// with its own profiles, against two real server processes on one real
// Redis. Every path from one caller to another's token, secret or budget
// is tried, over gRPC and over REST, by the caller who must not have it;
// each is answered with the right code, audited, and where the call must
// never reach the vendor, reaches it 0 times.

const (
	tenantAKey = "tenantAkey0123456789abcdefABCDEF-_"
	tenantBKey = "tenantBkey0123456789abcdefABCDEF-_"
)

// isolationFleet is the two-tenant fleet of the suite.
type isolationFleet struct {
	*fleet
	seq atomic.Int64
}

func startIsolationFleet(t *testing.T) *isolationFleet {
	t.Helper()
	redistest.Binary(t, "redis-server")
	srv := redistest.Start(t)
	sim := brokertest.StartSim(t)
	sim.AddAccount("smartdocumentor", map[string]string{"client_id": "tenant-a", "client_secret": "tenant-a-secret"})
	sim.AddAccount("smartdocumentor", map[string]string{"client_id": "tenant-b", "client_secret": "tenant-b-secret"})
	demo := vendorsim.DemoAccounts()
	hd, oa := demo["hotdocs_advance"], demo["oauth2"]
	yaml := strings.ReplaceAll(`grpc_addr: 127.0.0.1:{grpc}
http_addr: 127.0.0.1:{http}
shutdown_delay: 0s
`+redisCacheYAML(cacheKey(), srv.Addr)+`limits:
  misses_per_minute: 60
  miss_burst: 4
vendors:
  smartdocumentor:
    token_url: {sim}/smartdocumentor/connect/token
  hotdocs_advance:
    token_url: "{sim}/hotdocs_advance/{tenancy}/auth/Authorize/ServicePrincipalLogIn"
  oauth2:
    token_url: {sim}/oauth2/token
    extra_params: {operator_api_key: operator-extra-secret}
profiles:
  a-sd:
    vendor: smartdocumentor
    credentials: {client_id: tenant-a, client_secret: tenant-a-secret}
  a-hotdocs:
    vendor: hotdocs_advance
    credentials: {client_name: `+hd["client_name"]+`, principal_name: `+hd["principal_name"]+`, principal_password: `+hd["principal_password"]+`}
    allow_params: {tenancy: [`+hd["tenancy"]+`]}
  a-oauth:
    vendor: oauth2
    credentials: {client_id: `+oa["client_id"]+`, client_secret: `+oa["client_secret"]+`}
  b-sd:
    vendor: smartdocumentor
    credentials: {client_id: tenant-b, client_secret: tenant-b-secret}
clients:
  tenant-a:
    api_key_sha256: `+sha256Hex(tenantAKey)+`
    allow: [a-sd, a-hotdocs, a-oauth]
  tenant-b:
    api_key_sha256: `+sha256Hex(tenantBKey)+`
    allow: [b-sd, "vendor:smartdocumentor", "vendor:oauth2"]
`, "{sim}", sim.URL())
	return &isolationFleet{fleet: startFleet(t, brokertest.ServerBinary(t), sim, 2, yaml)}
}

// outcome is what one call was answered, over either transport.
type outcome struct {
	code      codes.Code
	field     string // BadRequest field, if any
	retry     bool   // RetryInfo present
	token     string
	cacheHit  bool
	requestID string
}

// call sends req (a GetTokenRequest or InvalidateTokenRequest) as the
// holder of key, over gRPC (rest false) or REST, to replica i.
func (f *isolationFleet) call(t *testing.T, i int, rest bool, key string, req proto.Message) outcome {
	t.Helper()
	id := fmt.Sprintf("iso-%d", f.seq.Add(1))
	r := f.replicas[i%len(f.replicas)]
	if rest {
		return f.callREST(t, r, id, key, req)
	}
	conn, err := grpc.NewClient(r.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := tokenbrokerv1.NewTokenServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+key, "x-request-id", id)
	out := outcome{requestID: id}
	switch m := req.(type) {
	case *tokenbrokerv1.GetTokenRequest:
		resp, err := c.GetToken(ctx, m)
		out.fill(err)
		out.token, out.cacheHit = resp.GetAccessToken(), resp.GetCacheHit()
	case *tokenbrokerv1.InvalidateTokenRequest:
		_, err := c.InvalidateToken(ctx, m)
		out.fill(err)
	}
	return out
}

func (o *outcome) fill(err error) {
	st := status.Convert(err)
	o.code = st.Code()
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.BadRequest:
			if len(d.FieldViolations) > 0 {
				o.field = d.FieldViolations[0].Field
			}
		case *errdetails.RetryInfo:
			o.retry = true
		}
	}
}

func (f *isolationFleet) callREST(t *testing.T, r *replica, id, key string, req proto.Message) outcome {
	t.Helper()
	path := "/v1/token"
	if _, ok := req.(*tokenbrokerv1.InvalidateTokenRequest); ok {
		path = "/v1/token:invalidate"
	}
	body, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	hreq, err := http.NewRequest(http.MethodPost, "http://"+r.HTTPAddr+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Authorization", "Bearer "+key)
	hreq.Header.Set("X-Request-Id", id)
	// A forged client certificate header: whatever it holds, it must not
	// change who the caller is.
	hreq.Header.Set("X-Tokenbroker-Client-Cert", "MIIforged")
	resp, err := http.DefaultClient.Do(hreq)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	out := outcome{requestID: id}
	if resp.StatusCode == http.StatusOK {
		var got struct {
			AccessToken string `json:"access_token"`
			CacheHit    bool   `json:"cache_hit"`
		}
		if err := json.Unmarshal(raw, &got); err != nil {
			t.Fatalf("REST answer %s: %v", raw, err)
		}
		out.token, out.cacheHit = got.AccessToken, got.CacheHit
		return out
	}
	var st struct {
		Code    int `json:"code"`
		Details []struct {
			Type            string `json:"@type"`
			FieldViolations []struct {
				Field string `json:"field"`
			} `json:"field_violations"`
		} `json:"details"`
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		t.Fatalf("REST error %d %s: %v", resp.StatusCode, raw, err)
	}
	out.code = codes.Code(st.Code)
	for _, d := range st.Details {
		if strings.HasSuffix(d.Type, "BadRequest") && len(d.FieldViolations) > 0 {
			out.field = d.FieldViolations[0].Field
		}
		if strings.HasSuffix(d.Type, "RetryInfo") {
			out.retry = true
		}
	}
	return out
}

// audited reports whether a replica's log holds a deny audit line for the
// request id, waiting for the log's batched writes (about 100 ms).
func (f *isolationFleet) audited(t *testing.T, requestID string) bool {
	t.Helper()
	return brokertest.Poll(5*time.Second, brokertest.Holds(func() bool { return f.auditedNow(t, requestID) })) == nil
}

func (f *isolationFleet) auditedNow(t *testing.T, requestID string) bool {
	t.Helper()
	for _, r := range f.replicas {
		raw, err := os.ReadFile(r.LogFile())
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range bytes.Split(raw, []byte("\n")) {
			if bytes.Contains(line, []byte(`"request_id":"`+requestID+`"`)) &&
				bytes.Contains(line, []byte(`"audit":"authorization"`)) &&
				bytes.Contains(line, []byte(`"decision":"deny"`)) {
				return true
			}
		}
	}
	return false
}

// requests is the simulator's count of token requests, every vendor.
func (f *isolationFleet) requests() int {
	n := 0
	for _, v := range []string{"smartdocumentor", "hotdocs_advance", "oauth2"} {
		n += f.sim.Requests(v)
	}
	return n
}

func TestIsolationBetweenCallers(t *testing.T) {
	f := startIsolationFleet(t)
	hd := vendorsim.DemoAccounts()["hotdocs_advance"]

	// Tenant A's tokens are cached before the attacks.
	warm := map[string]string{}
	for _, p := range []string{"a-sd", "a-hotdocs", "a-oauth"} {
		req := &tokenbrokerv1.GetTokenRequest{Profile: p}
		if p == "a-hotdocs" {
			req.Params = map[string]string{"tenancy": hd["tenancy"]}
		}
		o := f.call(t, 0, false, tenantAKey, req)
		if o.code != codes.OK {
			t.Fatalf("tenant A's own profile %s: %v", p, o.code)
		}
		warm[p] = o.token
	}

	type attack struct {
		name  string
		key   string
		req   proto.Message
		code  codes.Code
		field string
	}
	attacks := []attack{
		{"another tenant's profile", tenantBKey, &tokenbrokerv1.GetTokenRequest{Profile: "a-sd"}, codes.PermissionDenied, ""},
		{"force_refresh of another tenant's profile", tenantBKey, &tokenbrokerv1.GetTokenRequest{Profile: "a-sd", ForceRefresh: true}, codes.PermissionDenied, ""},
		{"InvalidateToken of another tenant's token", tenantBKey, &tokenbrokerv1.InvalidateTokenRequest{Profile: "a-sd", AccessToken: warm["a-sd"]}, codes.PermissionDenied, ""},
		{"inline client_id of another tenant, no secret", tenantBKey, &tokenbrokerv1.GetTokenRequest{Vendor: "smartdocumentor", Credentials: map[string]string{"client_id": "tenant-a"}}, codes.InvalidArgument, "credentials.client_secret"},
		{"inline oauth2 client_id, the operator's extra_params as the only secret", tenantBKey, &tokenbrokerv1.GetTokenRequest{Vendor: "oauth2", Credentials: map[string]string{"client_id": vendorsim.DemoAccounts()["oauth2"]["client_id"]}}, codes.InvalidArgument, "credentials"},
		{"tenancy steering on a profile that lists its tenancy", tenantAKey, &tokenbrokerv1.GetTokenRequest{Profile: "a-hotdocs", Params: map[string]string{"tenancy": "attacker"}}, codes.InvalidArgument, "params.tenancy"},
		{"scope escalation on a profile without allow_params", tenantAKey, &tokenbrokerv1.GetTokenRequest{Profile: "a-oauth", Params: map[string]string{"scope": "admin:all"}}, codes.InvalidArgument, "params.scope"},
		{"a vendor the caller may not use inline", tenantAKey, &tokenbrokerv1.GetTokenRequest{Vendor: "smartdocumentor", Credentials: map[string]string{"client_id": "tenant-b", "client_secret": "tenant-b-secret"}}, codes.PermissionDenied, ""},
	}
	before := f.requests()
	for _, a := range attacks {
		for _, rest := range []bool{false, true} {
			transport := map[bool]string{false: "gRPC", true: "REST"}[rest]
			t.Run(a.name+" ("+transport+")", func(t *testing.T) {
				o := f.call(t, int(f.seq.Load()), rest, a.key, a.req)
				if o.code != a.code || o.field != a.field {
					t.Fatalf("answered %v (field %q), want %v (field %q)", o.code, o.field, a.code, a.field)
				}
				if o.token != "" {
					t.Fatal("a refused call carried a token")
				}
				if !f.audited(t, o.requestID) {
					t.Errorf("no deny audit line for request %s", o.requestID)
				}
			})
		}
	}
	if got := f.requests(); got != before {
		t.Fatalf("refused calls reached the vendors %d times", got-before)
	}

	t.Run("the allowed tenancy still works", func(t *testing.T) {
		o := f.call(t, 1, true, tenantAKey, &tokenbrokerv1.GetTokenRequest{Profile: "a-hotdocs", Params: map[string]string{"tenancy": hd["tenancy"]}})
		if o.code != codes.OK || o.token != warm["a-hotdocs"] {
			t.Fatalf("answered %v, token shared with the profile: %v", o.code, o.token == warm["a-hotdocs"])
		}
	})

	t.Run("tenant A's token survived the invalidation attempts", func(t *testing.T) {
		for i := range 2 {
			o := f.call(t, i, i == 1, tenantAKey, &tokenbrokerv1.GetTokenRequest{Profile: "a-sd"})
			if o.code != codes.OK || o.token != warm["a-sd"] || !o.cacheHit {
				t.Fatalf("replica %d: %v, hit %v, same token %v", i, o.code, o.cacheHit, o.token == warm["a-sd"])
			}
		}
	})

	t.Run("inline credentials equal to a profile's never reach its cache entry", func(t *testing.T) {
		// Tenant B knows tenant A's secret (say it leaked): it gets a token
		// of its own from the vendor, never tenant A's cached one.
		o := f.call(t, 0, false, tenantBKey, &tokenbrokerv1.GetTokenRequest{Vendor: "smartdocumentor", Credentials: map[string]string{"client_id": "tenant-a", "client_secret": "tenant-a-secret"}})
		if o.code != codes.OK || o.cacheHit || o.token == warm["a-sd"] {
			t.Fatalf("answered %v, cache hit %v, same token as profile a-sd %v", o.code, o.cacheHit, o.token == warm["a-sd"])
		}
	})

	t.Run("one tenant's misses do not spend another's", func(t *testing.T) {
		// miss_burst 4: tenant B's fifth distinct credential set in a
		// row is refused without asking the vendor. The call above was
		// one of tenant B's misses.
		start := f.requests()
		var refused outcome
		for i := range 8 {
			o := f.call(t, i, i%2 == 1, tenantBKey, &tokenbrokerv1.GetTokenRequest{Vendor: "smartdocumentor",
				Credentials: map[string]string{"client_id": fmt.Sprint("unknown-", i), "client_secret": "x"}})
			if o.code == codes.ResourceExhausted {
				refused = o
				break
			}
		}
		if refused.code != codes.ResourceExhausted || !refused.retry {
			t.Fatalf("distinct inline credentials past miss_burst: %+v, want RESOURCE_EXHAUSTED with RetryInfo", refused)
		}
		if n := f.requests() - start; n > 4 {
			t.Fatalf("tenant B caused %d vendor requests, miss_burst 4", n)
		}
		// Tenant A is not charged for tenant B's misses.
		o := f.call(t, 1, false, tenantAKey, &tokenbrokerv1.GetTokenRequest{Profile: "a-oauth", ForceRefresh: true})
		if o.code != codes.OK {
			t.Fatalf("tenant A after tenant B's misses: %v", o.code)
		}
	})
}
