package auth

import (
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// ForwardedCertHeader carries a REST caller's TLS client certificate chain
// from the HTTP listener, through the in-process gateway (which forwards it
// as gRPC metadata), to the interceptor. The HTTP middleware removes any
// value a caller sends and sets it only from the TLS connection; the
// interceptor reads it only from the gateway's in-process calls. It
// holds certificates (public), never a key: the interceptor verifies them,
// so verification happens in one place for gRPC and REST callers.
const ForwardedCertHeader = "X-Tokenbroker-Client-Cert"

// forwardedCertKey is ForwardedCertHeader as gRPC metadata.
var forwardedCertKey = strings.ToLower(ForwardedCertHeader)

// Bounds of a presented chain, over TLS or forwarded: a leaf and a few
// intermediates. A longer or larger chain is refused before any parsing
// or verification, so a caller cannot pad handshakes with junk.
const (
	maxChainCerts = 4
	maxCertBytes  = 16 << 10
	maxChainBytes = 32 << 10
)

// chainTooLong is the ForwardedCertHeader value of a chain over the
// bounds: DecodeChain refuses it with errChainTooLong.
const chainTooLong = "!too-long"

var errChainTooLong = fmt.Errorf("the certificate chain is longer than %d certificates or %d KiB", maxChainCerts, maxChainBytes>>10)

// checkChainSize applies the bounds to a chain's DER sizes.
func checkChainSize(sizes ...int) error {
	if len(sizes) > maxChainCerts {
		return errChainTooLong
	}
	total := 0
	for _, n := range sizes {
		if n > maxCertBytes {
			return errChainTooLong
		}
		total += n
	}
	if total > maxChainBytes {
		return errChainTooLong
	}
	return nil
}

// checkCerts applies the bounds to a chain of certificates.
func checkCerts(chain []*x509.Certificate) error {
	if len(chain) > maxChainCerts {
		return errChainTooLong
	}
	var sizes [maxChainCerts]int
	for i, c := range chain {
		sizes[i] = len(c.Raw)
	}
	return checkChainSize(sizes[:len(chain)]...)
}

// HTTPMiddleware forwards the TLS client certificate chain of a request to
// the gRPC interceptor in ForwardedCertHeader, after removing any value the
// caller sent in that header. It must be the outermost middleware, so no
// handler sees a caller's value.
func (p *Policy) HTTPMiddleware(next http.Handler) http.Handler {
	return ForwardCertificates(p.log, next)
}

// canonicalForwardedCert is ForwardedCertHeader as net/http keys it,
// read from the map directly: Header.Values would canonicalise it again
// on every request.
var canonicalForwardedCert = http.CanonicalHeaderKey(ForwardedCertHeader)

// ForwardCertificates is HTTPMiddleware for a server with or without a
// policy: the header is removed from every request whatever the
// configuration, so a forged value never reaches the gateway, even while
// no policy would read it (docs/design.md, Security model).
func ForwardCertificates(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		forged := len(r.Header[canonicalForwardedCert]) > 0
		var chain string
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			chain = EncodeChain(r.TLS.PeerCertificates)
		}
		if forged || chain != "" {
			if forged {
				log.WarnContext(r.Context(), "dropped a caller-supplied client certificate header", "header", ForwardedCertHeader, "remote_addr", r.RemoteAddr)
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
// standard base64 of each certificate's DER, comma-separated. A chain over
// the bounds is encoded as a marker that DecodeChain refuses, so the call
// is answered "too long" rather than as if no certificate were presented.
func EncodeChain(chain []*x509.Certificate) string {
	if checkCerts(chain) != nil {
		return chainTooLong
	}
	parts := make([]string, 0, len(chain))
	for _, c := range chain {
		parts = append(parts, base64.StdEncoding.EncodeToString(c.Raw))
	}
	return strings.Join(parts, ",")
}

// DecodeChain parses a ForwardedCertHeader value.
func DecodeChain(value string) ([]*x509.Certificate, error) {
	if value == chainTooLong || strings.Count(value, ",") >= maxChainCerts || len(value) > base64.StdEncoding.EncodedLen(maxChainBytes)+maxChainCerts {
		return nil, errChainTooLong
	}
	parts := strings.Split(value, ",")
	ders := make([][]byte, 0, len(parts))
	sizes := make([]int, 0, len(parts))
	for _, part := range parts {
		if len(part) > base64.StdEncoding.EncodedLen(maxCertBytes) {
			return nil, errChainTooLong
		}
		der, err := base64.StdEncoding.DecodeString(part)
		if err != nil {
			return nil, errors.New("certificate is not base64")
		}
		ders, sizes = append(ders, der), append(sizes, len(der))
	}
	if err := checkChainSize(sizes...); err != nil {
		return nil, err
	}
	chain := make([]*x509.Certificate, 0, len(parts))
	for _, der := range ders {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, errors.New("certificate is not DER")
		}
		chain = append(chain, c)
	}
	return chain, nil
}

// verifyChainAt checks a presented chain (leaf first) and returns who it
// names and when the verified chain's first certificate expires.
//
// An X.509-SVID (a leaf with a spiffe:// URI SAN, when auth.spiffe_bundles
// is configured) is verified against the bundle of its trust domain
// (SPIFFE X509-SVID specification, section 5: exactly one URI SAN, a
// valid SPIFFE ID, not a CA); its identity is the SPIFFE ID. Any other
// chain is checked against the client CAs the way crypto/tls verifies
// client certificates (roots, the rest of the chain as intermediates, the
// time now, the client-auth extended key usage); its identity is the
// leaf's subject as an RFC 2253 string, the form
// clients.<name>.cert_subject is compared with.
//
// The TLS listeners request certificates without verifying them
// (tls.RequestClientCert): TLS still proves that the caller holds the
// certificate's private key, and this check then runs on the caller's
// first call with that certificate (verifyChainOnce), so a certificate
// from another CA or an expired one is answered with UNAUTHENTICATED and
// an audit line instead of a bare handshake failure. API-key callers
// connect without a certificate either way.
func (p *Policy) verifyChainAt(chain []*x509.Certificate, now time.Time) (v verifiedChain, err error) {
	if len(chain) == 0 {
		return v, errors.New("no certificate")
	}
	if err := checkCerts(chain); err != nil {
		return v, err
	}
	var built [][]*x509.Certificate
	if p.bundles != nil && hasSPIFFEURI(chain[0]) {
		id, chains, err := x509svid.Verify(chain, p.bundles, x509svid.WithTime(now))
		if err != nil {
			return v, errors.New(strings.TrimPrefix(err.Error(), "x509svid: "))
		}
		v.spiffeID, built = id.String(), chains
	} else {
		if p.roots == nil {
			return v, errors.New("no tls.client_ca_file is configured for certificates that are not X.509-SVIDs")
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
		if built, err = chain[0].Verify(opts); err != nil {
			return v, err
		}
		v.subject = SubjectString(chain[0])
	}
	v.until = chain[0].NotAfter
	for _, c := range built[0] {
		if c.NotAfter.Before(v.until) {
			v.until = c.NotAfter
		}
	}
	return v, nil
}

// hasSPIFFEURI reports whether a certificate claims a SPIFFE ID: one of its
// URI SANs has the spiffe scheme.
func hasSPIFFEURI(c *x509.Certificate) bool {
	for _, u := range c.URIs {
		if strings.EqualFold(u.Scheme, "spiffe") {
			return true
		}
	}
	return false
}

// maxVerifiedChains bounds the leaves remembered as verified.
const maxVerifiedChains = 4096

// verifiedChain is what verifyChainAt concluded about a leaf (its subject,
// or its SPIFFE ID for an X.509-SVID), and until when it holds: the
// earliest NotAfter of the chain it built. Nothing of the presented chain
// is kept.
type verifiedChain struct {
	subject  string
	spiffeID string
	until    time.Time
}

func newVerifiedCache() *lru.Cache[[32]byte, verifiedChain] {
	c, err := lru.New[[32]byte, verifiedChain](maxVerifiedChains)
	if err != nil {
		panic(err) // only for a size <= 0
	}
	return c
}

// verifyChainOnce is verifyChainAt, remembered under the SHA-256 of the
// leaf until the first certificate of the verified chain expires: once a
// chain from the leaf to a root has been verified, the leaf's identity
// holds whatever intermediates a later connection presents with it, and
// the Policy (with its roots, bundles and this cache) is replaced whole
// when they are reloaded. Failures are not remembered: each is verified,
// and audited, again; claimed is then the leaf's subject, if it was read.
//
// A TLS connection's leaf is also looked up by its parsed certificate
// (byLeaf), which every call on the connection shares: that spares each
// call hashing the leaf and locking the LRU.
func (p *Policy) verifyChainOnce(chain *presented) (v verifiedChain, claimed string, err error) {
	now := p.now()
	// A TLS connection's chain; a forwarded one is parsed anew on every
	// call (decode below fills chain.certs), so its leaf is never found
	// by pointer and is not remembered that way.
	tlsChain := chain.certs
	if tlsChain != nil {
		// The bounds first, before the memo or the fingerprint.
		if err := checkCerts(tlsChain); err != nil {
			return v, "", err
		}
		if v, ok := p.byLeaf.get(tlsChain[0]); ok && !now.After(v.until) {
			return v, "", nil
		}
	}
	fp, err := chain.leafFingerprint()
	if err != nil {
		return v, "", err
	}
	if v, ok := p.verified.Get(fp); ok && !now.After(v.until) {
		p.byLeaf.add(tlsChain, v)
		return v, "", nil
	}
	certs, err := chain.decode()
	if err != nil {
		return v, "", err
	}
	if v, err = p.verifyChainAt(certs, now); err != nil {
		return v, SubjectString(certs[0]), err
	}
	p.verified.Add(fp, v)
	p.byLeaf.add(tlsChain, v)
	return v, "", nil
}

// leafMemo remembers verified chains by the leaf's parsed certificate,
// the one a TLS connection presents on every call (crypto/tls may share
// it between connections presenting the same DER): the same pointer is
// the same leaf, so the same verdict as its fingerprint's. It keeps at
// most maxVerifiedChains leaves (then it starts afresh; the fingerprint
// LRU still answers), and holds them while it keeps them, so no pointer
// in it is ever reused for another certificate.
type leafMemo struct {
	m atomic.Pointer[sync.Map] // *x509.Certificate -> verifiedChain
	n atomic.Int64
}

func (l *leafMemo) get(leaf *x509.Certificate) (verifiedChain, bool) {
	m := l.m.Load()
	if m == nil {
		return verifiedChain{}, false
	}
	v, ok := m.Load(leaf)
	if !ok {
		return verifiedChain{}, false
	}
	return v.(verifiedChain), true
}

// add remembers the leaf of a TLS connection's chain (nil: nothing).
func (l *leafMemo) add(chain []*x509.Certificate, v verifiedChain) {
	if len(chain) == 0 {
		return
	}
	m := l.m.Load()
	if m == nil || l.n.Add(1) > maxVerifiedChains {
		m = new(sync.Map)
		l.m.Store(m)
		l.n.Store(1)
	}
	m.Store(chain[0], v)
}

// SubjectString is the subject of c in the form cert_subject is written
// in: RFC 2253, most specific attribute first, e.g.
// "CN=billing-service,OU=payments,O=Acme Corp,C=US" (what
// `openssl x509 -noout -subject -nameopt RFC2253` prints after "subject=").
func SubjectString(c *x509.Certificate) string { return c.Subject.String() }
