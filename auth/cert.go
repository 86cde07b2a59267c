package auth

import (
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// ForwardedCertHeader carries a REST caller's TLS client certificate chain
// from the HTTP listener, through the in-process gateway (which forwards it
// as gRPC metadata), to the interceptor. The HTTP middleware removes any
// value a caller sends and sets it only from the TLS connection; the
// interceptor reads it only from the gateway's in-process connection. It
// holds certificates (public), never a key: the interceptor verifies them,
// so verification happens in one place for gRPC and REST callers.
const ForwardedCertHeader = "X-Tokenbroker-Client-Cert"

// forwardedCertKey is ForwardedCertHeader as gRPC metadata.
var forwardedCertKey = strings.ToLower(ForwardedCertHeader)

// Bounds of a forwarded chain: a leaf and a few intermediates.
const (
	maxChainCerts = 4
	maxCertBytes  = 16 << 10
)

// HTTPMiddleware forwards the TLS client certificate chain of a request to
// the gRPC interceptor in ForwardedCertHeader, after removing any value the
// caller sent in that header. It must be the outermost middleware, so no
// handler sees a caller's value.
func (p *Policy) HTTPMiddleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		forged := len(r.Header.Values(ForwardedCertHeader)) > 0
		var chain string
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			chain = EncodeChain(r.TLS.PeerCertificates)
		}
		if forged || chain != "" {
			if forged {
				p.log.WarnContext(r.Context(), "dropped a caller-supplied client certificate header", "header", ForwardedCertHeader, "remote_addr", r.RemoteAddr)
			}
			r = r.Clone(r.Context())
			r.Header.Del(ForwardedCertHeader)
			if chain != "" {
				r.Header.Set(ForwardedCertHeader, chain)
			}
		}
		next.ServeHTTP(w, r)
	})
}

// EncodeChain is the ForwardedCertHeader value of a chain, leaf first: the
// standard base64 of each certificate's DER, comma-separated. Certificates
// beyond maxChainCerts are dropped (verification then fails if they were
// needed).
func EncodeChain(chain []*x509.Certificate) string {
	parts := make([]string, 0, min(len(chain), maxChainCerts))
	for i, c := range chain {
		if i == maxChainCerts {
			break
		}
		parts = append(parts, base64.StdEncoding.EncodeToString(c.Raw))
	}
	return strings.Join(parts, ",")
}

// DecodeChain parses a ForwardedCertHeader value.
func DecodeChain(value string) ([]*x509.Certificate, error) {
	parts := strings.Split(value, ",")
	if len(parts) > maxChainCerts {
		return nil, fmt.Errorf("more than %d certificates", maxChainCerts)
	}
	chain := make([]*x509.Certificate, 0, len(parts))
	for _, part := range parts {
		if len(part) > base64.StdEncoding.EncodedLen(maxCertBytes) {
			return nil, errors.New("certificate too large")
		}
		der, err := base64.StdEncoding.DecodeString(part)
		if err != nil {
			return nil, errors.New("certificate is not base64")
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, errors.New("certificate is not DER")
		}
		chain = append(chain, c)
	}
	return chain, nil
}

// verifyChainAt checks a presented chain (leaf first) against the client
// CAs the way crypto/tls verifies client certificates (roots, the rest of
// the chain as intermediates, the time now, the client-auth extended key
// usage) and returns the leaf's subject as an RFC 2253 string, the form
// clients.<name>.cert_subject is compared with, and when the verified
// chain's first certificate expires.
//
// The TLS listeners request certificates without verifying them
// (tls.RequestClientCert): TLS still proves that the caller holds the
// certificate's private key, and this check then runs on the connection's
// first call (verifyChainOnce), so a certificate from another CA or an
// expired one is answered with UNAUTHENTICATED and an audit line instead
// of a bare handshake failure. API-key callers connect without a
// certificate either way.
func (p *Policy) verifyChainAt(chain []*x509.Certificate, now time.Time) (subject string, until time.Time, err error) {
	if len(chain) == 0 {
		return "", time.Time{}, errors.New("no certificate")
	}
	opts := x509.VerifyOptions{
		Roots:         p.roots,
		Intermediates: x509.NewCertPool(),
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	for _, c := range chain[1:] {
		opts.Intermediates.AddCert(c)
	}
	built, err := chain[0].Verify(opts)
	if err != nil {
		return "", time.Time{}, err
	}
	until = chain[0].NotAfter
	for _, c := range built[0] {
		if c.NotAfter.Before(until) {
			until = c.NotAfter
		}
	}
	return SubjectString(chain[0]), until, nil
}

// maxVerifiedChains bounds the chains remembered as verified: one per
// open mTLS connection, or per distinct chain a REST caller forwards.
const maxVerifiedChains = 4096

// verifiedChain is what verifyChainAt concluded about a chain, and until
// when it holds: the earliest NotAfter of the chain it built.
type verifiedChain struct {
	subject string
	until   time.Time
}

func newVerifiedCache() *lru.Cache[any, verifiedChain] {
	c, err := lru.New[any, verifiedChain](maxVerifiedChains)
	if err != nil {
		panic(err) // only for a size <= 0
	}
	return c
}

// verifyChainOnce is verifyChainAt, remembered under the chain's key until
// the first certificate of the verified chain expires: a connection's
// chain cannot change, and the Policy (with its roots and this cache) is
// replaced whole when the client CAs are reloaded. A forwarded chain is
// decoded only on a miss. Failures are not remembered: each is verified,
// and audited, again; claimed is then the leaf's subject, if it was read.
func (p *Policy) verifyChainOnce(chain *presented) (subject, claimed string, err error) {
	now := p.now()
	if v, ok := p.verified.Get(chain.key); ok && !now.After(v.until) {
		return v.subject, "", nil
	}
	certs, err := chain.decode()
	if err != nil {
		return "", "", err
	}
	subject, until, err := p.verifyChainAt(certs, now)
	if err != nil {
		return "", SubjectString(certs[0]), err
	}
	p.verified.Add(chain.key, verifiedChain{subject: subject, until: until})
	return subject, "", nil
}

// SubjectString is the subject of c in the form cert_subject is written
// in: RFC 2253, most specific attribute first, e.g.
// "CN=billing-service,OU=payments,O=Acme Corp,C=US" (what
// `openssl x509 -noout -subject -nameopt RFC2253` prints after "subject=").
func SubjectString(c *x509.Certificate) string { return c.Subject.String() }
