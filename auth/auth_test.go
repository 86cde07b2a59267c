package auth

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/tokenbroker/tokenbroker/config"
	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
)

func keyHash(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// syncBuffer is a log sink safe for concurrent handlers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestParseBearer(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, value, want string
		wantErr           bool
	}{
		{"bearer", "Bearer abc123", "abc123", false},
		{"scheme is case-insensitive", "bEARER abc", "abc", false},
		{"base64 with padding", "Bearer ab+/c==", "ab+/c==", false},
		{"extra spaces", "Bearer   abc", "abc", false},
		{"basic", "Basic dXNlcjpwYXNz", "", true},
		{"no credential", "Bearer ", "", true},
		{"no space", "Bearerabc", "", true},
		{"padding in the middle", "Bearer ab=c", "", true},
		{"inner space", "Bearer ab c", "", true},
		{"control character", "Bearer ab\x00", "", true},
		{"too long", "Bearer " + strings.Repeat("a", maxAPIKeyLen+1), "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseBearer(tc.value)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("ParseBearer(%q) = %q, %v", tc.value, got, err)
			}
			if err != nil && strings.Contains(err.Error(), "abc") {
				t.Errorf("error repeats the credential: %v", err)
			}
		})
	}
}

func TestNewRejectsBadClients(t *testing.T) {
	t.Parallel()
	pool := x509.NewCertPool()
	good := keyHash("k1")
	tests := []struct {
		name    string
		clients map[string]Client
		cas     *x509.CertPool
		wantErr string
	}{
		{"the key instead of its hash", map[string]Client{"a": {APIKeySHA256: []string{"my-secret-key"}, Allow: []string{"p"}}}, nil, "clients.a.api_key_sha256"},
		{"no credential", map[string]Client{"a": {Allow: []string{"p"}}}, nil, "clients.a: set api_key_sha256, cert_subject, jwt_subject or spiffe_id"},
		{"subject without client CA", map[string]Client{"a": {CertSubject: "CN=a", Allow: []string{"p"}}}, nil, "clients.a.cert_subject: needs tls.client_ca_file"},
		{"empty allow", map[string]Client{"a": {APIKeySHA256: []string{good}}}, nil, "clients.a.allow"},
		{"vendor prefix alone", map[string]Client{"a": {APIKeySHA256: []string{good}, Allow: []string{"vendor:"}}}, nil, "clients.a.allow[0]"},
		{"shared key", map[string]Client{"a": {APIKeySHA256: []string{good}, Allow: []string{"p"}}, "b": {APIKeySHA256: []string{strings.ToUpper(good)}, Allow: []string{"p"}}}, nil, "clients.b.api_key_sha256"},
		{"shared subject", map[string]Client{"a": {CertSubject: "CN=x", Allow: []string{"p"}}, "b": {CertSubject: "CN=x", Allow: []string{"p"}}}, pool, "clients.b.cert_subject"},
		{"bad name", map[string]Client{"a b": {APIKeySHA256: []string{good}, Allow: []string{"p"}}}, nil, "clients.a b"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := New(Config{Clients: tc.clients, ClientCAs: tc.cas})
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), "my-secret-key") {
				t.Errorf("error repeats the configured value: %v", err)
			}
		})
	}
}

func TestClientForKeyMatchesOnlyTheRightDigest(t *testing.T) {
	t.Parallel()
	p, err := New(Config{Clients: map[string]Client{
		"a":    {APIKeySHA256: []string{keyHash("key-a")}, Allow: []string{"p"}},
		"b":    {APIKeySHA256: []string{strings.ToUpper(keyHash("key-b"))}, Allow: []string{"p"}},
		"cert": {CertSubject: "CN=c", Allow: []string{"p"}},
	}, ClientCAs: x509.NewCertPool()})
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{"key-a": "a", "key-b": "b", "key-c": "", "": "", "key-a ": ""} {
		got := ""
		if c := p.clientForKey(key); c != nil {
			got = c.name
		}
		if got != want {
			t.Errorf("clientForKey(%q) = %q, want %q", key, got, want)
		}
	}
	// A cert-only client has no digest that could match.
	for _, c := range p.clients {
		if c.name == "cert" && len(c.keyDigests) > 0 {
			t.Fatal("cert-only client has a key")
		}
	}
}

// TestKeyRotationWithOverlap: during a rotation a client lists the old and
// the new key's hashes and both authenticate it; afterwards only the one
// left does.
func TestKeyRotationWithOverlap(t *testing.T) {
	t.Parallel()
	policy := func(hashes ...string) *Policy {
		t.Helper()
		p, err := New(Config{Clients: map[string]Client{
			"billing": {APIKeySHA256: hashes, Allow: []string{"p"}},
			"other":   {APIKeySHA256: []string{keyHash("other")}, Allow: []string{"p"}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	steps := []struct {
		name    string
		policy  *Policy
		allowed map[string]bool
	}{
		{"old key only", policy(keyHash("old")), map[string]bool{"old": true, "new": false}},
		{"both during the rotation", policy(keyHash("old"), keyHash("new")), map[string]bool{"old": true, "new": true}},
		{"new key only", policy(keyHash("new")), map[string]bool{"old": false, "new": true}},
	}
	for _, step := range steps {
		for key, want := range step.allowed {
			c := step.policy.clientForKey(key)
			if got := c != nil && c.name == "billing"; got != want {
				t.Errorf("%s: key %q authenticates billing = %v, want %v", step.name, key, got, want)
			}
		}
		if c := step.policy.clientForKey("other"); c == nil || c.name != "other" {
			t.Errorf("%s: the other client's key stopped working", step.name)
		}
	}
}

func TestKeyListErrorsNameTheEntry(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		hashes  config.Hashes
		wantErr string
	}{
		{"second entry is the key", []string{keyHash("a"), "my-secret-key"}, "clients.c.api_key_sha256[1]"},
		{"the same hash twice", []string{keyHash("a"), keyHash("a")}, "the same hash twice"},
		{"too many", []string{keyHash("1"), keyHash("2"), keyHash("3"), keyHash("4"), keyHash("5")}, "at most 4"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := New(Config{Clients: map[string]Client{"c": {APIKeySHA256: tc.hashes, Allow: []string{"p"}}}})
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), "my-secret-key") {
				t.Errorf("error repeats the configured value: %v", err)
			}
		})
	}
}

func TestLimiterRefillsAtTheConfiguredRate(t *testing.T) {
	t.Parallel()
	now := time.Unix(1000, 0)
	l := newLimiter(1, 2, func() time.Time { return now })
	for i := range 2 {
		if ok, _ := l.allow("a"); !ok {
			t.Fatalf("call %d within the burst was refused", i)
		}
	}
	ok, wait := l.allow("a")
	if ok || wait != time.Second {
		t.Fatalf("third call: ok=%v wait=%v, want refused for 1s", ok, wait)
	}
	if ok, _ := l.allow("b"); !ok {
		t.Fatal("another principal shares a's bucket")
	}
	now = now.Add(500 * time.Millisecond)
	if ok, wait := l.allow("a"); ok || wait != 500*time.Millisecond {
		t.Fatalf("after 0.5s: ok=%v wait=%v", ok, wait)
	}
	now = now.Add(500 * time.Millisecond)
	if ok, _ := l.allow("a"); !ok {
		t.Fatal("after 1s a token should have refilled")
	}
}

func TestLimiterStaysBounded(t *testing.T) {
	t.Parallel()
	now := time.Unix(1000, 0)
	l := newLimiter(1, 1, func() time.Time { return now })
	for i := range maxBuckets + 10 {
		l.allow(string(rune(i)))
	}
	if n := l.buckets.Len(); n > maxBuckets {
		t.Fatalf("%d buckets, want at most %d", n, maxBuckets)
	}
}

// pki is a throwaway CA for unit tests.
type pki struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newPKI(t testing.TB, name string) *pki {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &pki{cert: cert, key: key}
}

func (p *pki) issue(t testing.TB, subject pkix.Name, notAfter time.Time) *x509.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: subject,
		NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.cert, &key.PublicKey, p.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return cert
}

func (p *pki) pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.cert)
	return pool
}

// gatewayAddr is the peer address of the gateway's in-process calls.
type gatewayAddr struct{}

func (gatewayAddr) Network() string { return "tokenbroker-gateway" }

// isGateway stands for server.InternalTransport: the gateway's in-process
// peers.
func isGateway(a net.Addr) bool    { return a != nil && a.Network() == "tokenbroker-gateway" }
func (gatewayAddr) String() string { return "tokenbroker-gateway" }

// call runs the interceptor with the given peer and metadata.
func call(p *Policy, method string, req any, pr *peer.Peer, md metadata.MD) error {
	ctx := metadata.NewIncomingContext(context.Background(), md)
	if pr != nil {
		ctx = peer.NewContext(ctx, pr)
	}
	_, err := p.UnaryInterceptor()(ctx, req, &grpc.UnaryServerInfo{FullMethod: method}, func(context.Context, any) (any, error) { return "ok", nil })
	return err
}

func TestInterceptorDecisions(t *testing.T) {
	t.Parallel()
	ca, rogue := newPKI(t, "client CA"), newPKI(t, "rogue CA")
	subject := pkix.Name{CommonName: "billing", Organization: []string{"Acme, Inc."}}
	good := ca.issue(t, subject, time.Now().Add(time.Hour))
	expired := ca.issue(t, subject, time.Now().Add(-time.Minute))
	forged := rogue.issue(t, subject, time.Now().Add(time.Hour))
	var logs syncBuffer
	p, err := New(Config{
		Clients: map[string]Client{
			"billing": {APIKeySHA256: []string{keyHash("billing-key")}, CertSubject: SubjectString(good), Allow: []string{"acme", "vendor:oauth2"}},
			"other":   {APIKeySHA256: []string{keyHash("other-key")}, Allow: []string{"other"}},
		},
		ClientCAs: ca.pool(),
		Limits:    Limits{RefreshPerMinute: 1, RefreshBurst: 1},
		Internal:  isGateway,
		Logger:    slog.New(slog.NewJSONHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := SubjectString(good), `CN=billing,O=Acme\, Inc.`; got != want {
		t.Fatalf("subject = %q, want RFC 2253 %q", got, want)
	}
	tcp := &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 1}
	tlsPeer := func(chain ...*x509.Certificate) *peer.Peer {
		return &peer.Peer{Addr: tcp, AuthInfo: credentials.TLSInfo{State: tls.ConnectionState{PeerCertificates: chain}}}
	}
	bearer := func(k string) metadata.MD { return metadata.Pairs("authorization", "Bearer "+k) }
	getToken := tokenbrokerv1.TokenService_GetToken_FullMethodName
	profile := func(p string) *tokenbrokerv1.GetTokenRequest { return &tokenbrokerv1.GetTokenRequest{Profile: p} }
	tests := []struct {
		name   string
		method string
		req    any
		peer   *peer.Peer
		md     metadata.MD
		want   codes.Code
	}{
		{"no credentials", getToken, profile("acme"), &peer.Peer{Addr: tcp}, nil, codes.Unauthenticated},
		{"wrong key", getToken, profile("acme"), &peer.Peer{Addr: tcp}, bearer("nope"), codes.Unauthenticated},
		{"basic auth", getToken, profile("acme"), &peer.Peer{Addr: tcp}, metadata.Pairs("authorization", "Basic YTpi"), codes.Unauthenticated},
		{"two authorization values", getToken, profile("acme"), &peer.Peer{Addr: tcp}, metadata.Pairs("authorization", "Bearer billing-key", "authorization", "Bearer other-key"), codes.Unauthenticated},
		{"right key, wrong profile", getToken, profile("other"), &peer.Peer{Addr: tcp}, bearer("billing-key"), codes.PermissionDenied},
		{"right key, right profile", getToken, profile("acme"), &peer.Peer{Addr: tcp}, bearer("billing-key"), codes.OK},
		{"inline credentials allowed", getToken, &tokenbrokerv1.GetTokenRequest{Vendor: "oauth2"}, &peer.Peer{Addr: tcp}, bearer("billing-key"), codes.OK},
		{"inline credentials not allowed", getToken, &tokenbrokerv1.GetTokenRequest{Vendor: "smartdocumentor"}, &peer.Peer{Addr: tcp}, bearer("billing-key"), codes.PermissionDenied},
		{"a profile allow entry does not allow its vendor inline", getToken, &tokenbrokerv1.GetTokenRequest{Vendor: "acme"}, &peer.Peer{Addr: tcp}, bearer("billing-key"), codes.PermissionDenied},
		{"list vendors needs a caller", tokenbrokerv1.TokenService_ListVendors_FullMethodName, &tokenbrokerv1.ListVendorsRequest{}, &peer.Peer{Addr: tcp}, nil, codes.Unauthenticated},
		{"list vendors with a key", tokenbrokerv1.TokenService_ListVendors_FullMethodName, &tokenbrokerv1.ListVendorsRequest{}, &peer.Peer{Addr: tcp}, bearer("other-key"), codes.OK},
		{"health is open", "/grpc.health.v1.Health/Check", nil, &peer.Peer{Addr: tcp}, nil, codes.OK},
		{"unknown method denied", "/tokenbroker.v1.TokenService/Future", nil, &peer.Peer{Addr: tcp}, bearer("billing-key"), codes.PermissionDenied},
		{"right certificate", getToken, profile("acme"), tlsPeer(good), nil, codes.OK},
		{"right certificate, wrong profile", getToken, profile("other"), tlsPeer(good), nil, codes.PermissionDenied},
		{"expired certificate", getToken, profile("acme"), tlsPeer(expired), nil, codes.Unauthenticated},
		{"certificate from another CA", getToken, profile("acme"), tlsPeer(forged), nil, codes.Unauthenticated},
		{"certificate and key of different clients", getToken, profile("acme"), tlsPeer(good), bearer("other-key"), codes.Unauthenticated},
		{"right certificate with a wrong key", getToken, profile("acme"), tlsPeer(good), bearer("nope"), codes.Unauthenticated},
		{"forwarded certificate from the gateway", getToken, profile("acme"), &peer.Peer{Addr: gatewayAddr{}}, metadata.Pairs(forwardedCertKey, EncodeChain([]*x509.Certificate{good})), codes.OK},
		{"forwarded header from a network peer is ignored", getToken, profile("acme"), &peer.Peer{Addr: tcp}, metadata.Pairs(forwardedCertKey, EncodeChain([]*x509.Certificate{good})), codes.Unauthenticated},
		{"forwarded garbage", getToken, profile("acme"), &peer.Peer{Addr: gatewayAddr{}}, metadata.Pairs(forwardedCertKey, "!!"), codes.Unauthenticated},
		{"first refresh within the limit", getToken, &tokenbrokerv1.GetTokenRequest{Profile: "other", ForceRefresh: true}, &peer.Peer{Addr: tcp}, bearer("other-key"), codes.OK},
		{"second refresh over the limit", tokenbrokerv1.TokenService_InvalidateToken_FullMethodName, &tokenbrokerv1.InvalidateTokenRequest{Profile: "other"}, &peer.Peer{Addr: tcp}, bearer("other-key"), codes.ResourceExhausted},
		{"another client's refresh", getToken, &tokenbrokerv1.GetTokenRequest{Profile: "acme", ForceRefresh: true}, &peer.Peer{Addr: tcp}, bearer("billing-key"), codes.OK},
	}
	for _, tc := range tests { // sequential: the rate-limit cases depend on order
		err := call(p, tc.method, tc.req, tc.peer, tc.md)
		if got := status.Code(err); got != tc.want {
			t.Errorf("%s: code = %v (%v), want %v", tc.name, got, err, tc.want)
		}
		if tc.want == codes.ResourceExhausted {
			var retry *errdetails.RetryInfo
			for _, d := range status.Convert(err).Details() {
				retry, _ = d.(*errdetails.RetryInfo)
			}
			if retry == nil || retry.RetryDelay.AsDuration() <= 0 {
				t.Errorf("%s: no RetryInfo in %v", tc.name, err)
			}
		}
	}
	out := logs.String()
	for _, secret := range []string{"billing-key", "other-key"} {
		if strings.Contains(out, secret) {
			t.Errorf("the audit log contains the API key %q", secret)
		}
	}
	if !strings.Contains(out, `"principal":"billing"`) || !strings.Contains(out, `"decision":"deny"`) || !strings.Contains(out, `"target":"vendor:smartdocumentor"`) {
		t.Errorf("audit log lacks expected lines:\n%s", out)
	}
	if !strings.Contains(out, `"claimed_subject":"CN=billing,O=Acme\\, Inc."`) {
		t.Errorf("audit log does not name the rejected certificate's subject:\n%s", out)
	}
}

func TestAnyVerifiedCertificateWithoutClients(t *testing.T) {
	t.Parallel()
	ca := newPKI(t, "client CA")
	p, err := New(Config{ClientCAs: ca.pool(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	cert := ca.issue(t, pkix.Name{CommonName: "anyone"}, time.Now().Add(time.Hour))
	pr := &peer.Peer{Addr: &net.TCPAddr{}, AuthInfo: credentials.TLSInfo{State: tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}}}}
	if err := call(p, tokenbrokerv1.TokenService_GetToken_FullMethodName, &tokenbrokerv1.GetTokenRequest{Profile: "x"}, pr, nil); err != nil {
		t.Fatalf("verified certificate refused: %v", err)
	}
	if err := call(p, tokenbrokerv1.TokenService_GetToken_FullMethodName, &tokenbrokerv1.GetTokenRequest{Profile: "x"}, &peer.Peer{Addr: &net.TCPAddr{}}, nil); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("no certificate: %v", err)
	}
}

func TestHTTPMiddlewareReplacesForgedHeader(t *testing.T) {
	t.Parallel()
	ca := newPKI(t, "client CA")
	cert := ca.issue(t, pkix.Name{CommonName: "real"}, time.Now().Add(time.Hour))
	p, err := New(Config{ClientCAs: ca.pool(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	h := p.HTTPMiddleware(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		seen = r.Header.Values(ForwardedCertHeader)
	}))
	forged := httptest.NewRequest("POST", "/v1/token", nil)
	forged.Header.Add("x-tokenbroker-client-cert", "forged")
	h.ServeHTTP(httptest.NewRecorder(), forged)
	if len(seen) != 0 {
		t.Fatalf("plain-HTTP caller's header reached the handler: %q", seen)
	}
	withTLS := httptest.NewRequest("POST", "/v1/token", nil)
	withTLS.Header.Set(ForwardedCertHeader, "forged")
	withTLS.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}}
	h.ServeHTTP(httptest.NewRecorder(), withTLS)
	if len(seen) != 1 || seen[0] != EncodeChain([]*x509.Certificate{cert}) {
		t.Fatalf("handler saw %q, want the TLS chain", seen)
	}
}

// TestVerifiedLeafRemembered: a leaf is verified on its first call and
// remembered by its fingerprint until its certificate expires, over TLS
// and forwarded alike, whatever intermediates come with it later; a leaf
// the cache has not seen is verified afresh.
func TestVerifiedLeafRemembered(t *testing.T) {
	t.Parallel()
	ca, other := newPKI(t, "client CA"), newPKI(t, "other CA")
	now := time.Now()
	cert := ca.issue(t, pkix.Name{CommonName: "billing"}, now.Add(time.Hour))
	second := ca.issue(t, pkix.Name{CommonName: "billing"}, now.Add(time.Hour))
	var clock atomic.Int64
	clock.Store(now.UnixNano())
	p, err := New(Config{ClientCAs: ca.pool(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Internal: isGateway, Now: func() time.Time { return time.Unix(0, clock.Load()) }})
	if err != nil {
		t.Fatal(err)
	}
	tcp := &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 1}
	connWith := func(chain ...*x509.Certificate) *peer.Peer {
		return &peer.Peer{Addr: tcp, AuthInfo: credentials.TLSInfo{State: tls.ConnectionState{PeerCertificates: chain}}}
	}
	conn := connWith(cert)
	rest := metadata.Pairs(forwardedCertKey, EncodeChain([]*x509.Certificate{cert}))
	getToken := tokenbrokerv1.TokenService_GetToken_FullMethodName
	req := &tokenbrokerv1.GetTokenRequest{Profile: "acme"}
	check := func(what string, pr *peer.Peer, md metadata.MD, want codes.Code) {
		t.Helper()
		if err := call(p, getToken, req, pr, md); status.Code(err) != want {
			t.Fatalf("%s: %v, want %v", what, err, want)
		}
	}
	check("first call", conn, nil, codes.OK)
	check("a forwarded chain that cannot be read", &peer.Peer{Addr: gatewayAddr{}}, metadata.Pairs(forwardedCertKey, "!!"), codes.Unauthenticated)
	// Were the leaf verified again, it would now fail: the client CA is
	// no longer trusted.
	p.roots = other.pool()
	check("second call on the connection", conn, nil, codes.OK)
	check("REST call with the same leaf", &peer.Peer{Addr: gatewayAddr{}}, rest, codes.OK)
	check("a new connection with the same leaf", connWith(cert), nil, codes.OK)
	check("the same leaf with other intermediates", connWith(cert, other.cert, ca.cert), nil, codes.OK)
	check("another leaf", connWith(second), nil, codes.Unauthenticated)
	p.roots = ca.pool()
	check("another leaf, CA trusted", connWith(second), nil, codes.OK)
	clock.Store(now.Add(time.Hour + time.Second).UnixNano())
	check("the connection once its certificate expired", conn, nil, codes.Unauthenticated)
}

// TestLeafMemoHoldsTLSLeavesOnly: a forwarded chain is parsed anew on
// every call, so its leaf is remembered by fingerprint only; a TLS
// connection's leaf is remembered by its certificate too.
func TestLeafMemoHoldsTLSLeavesOnly(t *testing.T) {
	t.Parallel()
	ca := newPKI(t, "client CA")
	cert := ca.issue(t, pkix.Name{CommonName: "billing"}, time.Now().Add(time.Hour))
	p, err := New(Config{ClientCAs: ca.pool(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Internal: isGateway})
	if err != nil {
		t.Fatal(err)
	}
	getToken := tokenbrokerv1.TokenService_GetToken_FullMethodName
	req := &tokenbrokerv1.GetTokenRequest{Profile: "acme"}
	rest := metadata.Pairs(forwardedCertKey, EncodeChain([]*x509.Certificate{cert}))
	for range 2 {
		if err := call(p, getToken, req, &peer.Peer{Addr: gatewayAddr{}}, rest); err != nil {
			t.Fatal(err)
		}
	}
	if n := p.byLeaf.n.Load(); n != 0 || p.verified.Len() != 1 {
		t.Fatalf("after forwarded calls: %d leaves remembered by certificate, %d by fingerprint; want 0 and 1", n, p.verified.Len())
	}
	tlsPeer := &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 1}, AuthInfo: credentials.TLSInfo{State: tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}}}}
	if err := call(p, getToken, req, tlsPeer, nil); err != nil {
		t.Fatal(err)
	}
	if _, ok := p.byLeaf.get(cert); !ok {
		t.Fatal("a TLS connection's verified leaf is not remembered by its certificate")
	}
}

// TestPresentedChainBounds: a chain with more certificates or bytes than
// a leaf and a few intermediates need is refused before verification,
// over TLS and forwarded, and nothing of it is remembered.
func TestPresentedChainBounds(t *testing.T) {
	t.Parallel()
	ca := newPKI(t, "client CA")
	now := time.Now()
	cert := ca.issue(t, pkix.Name{CommonName: "billing"}, now.Add(time.Hour))
	logs := &syncBuffer{}
	p, err := New(Config{ClientCAs: ca.pool(), Logger: slog.New(slog.NewJSONHandler(logs, nil)), Internal: isGateway})
	if err != nil {
		t.Fatal(err)
	}
	junk := make([]*x509.Certificate, 0, 8)
	for range 8 {
		junk = append(junk, ca.cert)
	}
	big := &x509.Certificate{Raw: make([]byte, maxCertBytes+1)}
	huge := []*x509.Certificate{cert, {Raw: make([]byte, 12<<10)}, {Raw: make([]byte, 12<<10)}, {Raw: make([]byte, 12<<10)}}
	getToken := tokenbrokerv1.TokenService_GetToken_FullMethodName
	req := &tokenbrokerv1.GetTokenRequest{Profile: "acme"}
	tcp := &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 1}
	// The leaf alone is verified and remembered first: the bounds still
	// apply to the chains that present it afterwards.
	alone := &peer.Peer{Addr: tcp, AuthInfo: credentials.TLSInfo{State: tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}}}}
	if err := call(p, getToken, req, alone, nil); err != nil {
		t.Fatalf("the leaf alone: %v", err)
	}
	tests := []struct {
		name  string
		chain []*x509.Certificate
	}{
		{"five certificates", append([]*x509.Certificate{cert}, junk[:4]...)},
		{"nine certificates", append([]*x509.Certificate{cert}, junk...)},
		{"one certificate over 16 KiB", []*x509.Certificate{cert, big}},
		{"a chain over 32 KiB", huge},
	}
	for _, tc := range tests {
		for _, via := range []string{"tls", "forwarded"} {
			pr := &peer.Peer{Addr: tcp, AuthInfo: credentials.TLSInfo{State: tls.ConnectionState{PeerCertificates: tc.chain}}}
			var md metadata.MD
			if via == "forwarded" {
				pr, md = &peer.Peer{Addr: gatewayAddr{}}, metadata.Pairs(forwardedCertKey, EncodeChain(tc.chain))
			}
			err := call(p, getToken, req, pr, md)
			if status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "longer than 4 certificates or 32 KiB") {
				t.Errorf("%s over %s: %v, want UNAUTHENTICATED naming the bounds", tc.name, via, err)
			}
		}
	}
	if n := p.verified.Len(); n != 1 {
		t.Fatalf("%d verified entries after refused chains: want only the leaf verified alone", n)
	}
	// A forwarded value of more parts than allowed is refused as text.
	many := strings.TrimSuffix(strings.Repeat("QUJD,", 6), ",")
	if _, err := DecodeChain(many); err == nil {
		t.Fatal("DecodeChain accepted six parts")
	}
	if !strings.Contains(logs.String(), "longer than 4 certificates") {
		t.Fatal("no audit line names the reason")
	}
}
