package auth

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"log/slog"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
)

// FuzzParseBearer reads arbitrary authorization values. Properties: a
// parsed key is a non-empty b64token of bounded length that re-parses to
// itself; an error is one of the fixed messages, so it never echoes what
// the caller sent.
func FuzzParseBearer(f *testing.F) {
	for _, s := range []string{"Bearer abc", "bearer a+b/c==", "Basic dXNlcjpwYXNz", "Bearer", "Bearer  x", "Bearer a=b", "BEARER\tx", "Bearer " + strings.Repeat("k", 600)} {
		f.Add(s)
	}
	fixed := map[string]bool{errNotBearer.Error(): true, errBadBearerSyntax.Error(): true}
	f.Fuzz(func(t *testing.T, value string) {
		key, err := ParseBearer(value)
		if err != nil {
			if !fixed[err.Error()] {
				t.Fatalf("unexpected error text %q", err)
			}
			return
		}
		if key == "" || len(key) > maxAPIKeyLen || !isB64Token(key) || !strings.HasSuffix(value, key) {
			t.Fatalf("ParseBearer(%q) = %q", value, key)
		}
		if again, err := ParseBearer("Bearer " + key); err != nil || again != key {
			t.Fatalf("re-parse of %q = %q, %v", key, again, err)
		}
	})
}

// FuzzForwardedCertificate feeds arbitrary values of the gateway's
// certificate metadata to the interceptor, as the gateway would pass them.
// Property: a call is authenticated only when the value carries the one
// genuine client certificate (its exact DER); decoding never panics and
// never accepts more than maxChainCerts certificates.
func FuzzForwardedCertificate(f *testing.F) {
	ca := newPKI(f, "client CA")
	good := ca.issue(f, pkix.Name{CommonName: "billing"}, time.Now().Add(24*time.Hour))
	p, err := New(Config{
		Clients:   map[string]Client{"billing": {CertSubject: SubjectString(good), Allow: []string{"acme"}}},
		ClientCAs: ca.pool(),
		Internal:  isGateway,
		Logger:    slog.New(slog.DiscardHandler),
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(EncodeChain([]*x509.Certificate{good}))
	f.Add(EncodeChain([]*x509.Certificate{good, ca.cert}))
	f.Add(EncodeChain([]*x509.Certificate{ca.cert}))
	f.Add("a,b,c,d,e")
	f.Add("")
	f.Fuzz(func(t *testing.T, value string) {
		chain, derr := DecodeChain(value)
		if derr == nil && len(chain) > maxChainCerts {
			t.Fatalf("%d certificates decoded", len(chain))
		}
		err := call(p, tokenbrokerv1.TokenService_GetToken_FullMethodName, &tokenbrokerv1.GetTokenRequest{Profile: "acme"},
			&peer.Peer{Addr: gatewayAddr{}}, metadata.Pairs(forwardedCertKey, value))
		switch status.Code(err) {
		case codes.OK:
			if derr != nil || len(chain) == 0 || !bytes.Equal(chain[0].Raw, good.Raw) {
				t.Fatalf("value %q authenticated without the genuine certificate", value)
			}
		case codes.Unauthenticated:
		default:
			t.Fatalf("code %v: %v", status.Code(err), err)
		}
	})
}
