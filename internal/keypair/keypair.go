// Package keypair serves a TLS certificate and its key from files and
// picks up renewed files without a restart: the server's certificate
// (tls.Config.GetCertificate) and the client certificates of mutual TLS to
// vendors (tls.Config.GetClientCertificate). Renewals by cert-manager or
// any tool that replaces the files are seen within CheckInterval of the
// next handshake.
package keypair

import (
	"crypto/tls"
	"sync"
	"time"

	"github.com/tokenbroker/tokenbroker/internal/filewatch"
)

// CheckInterval is how often, at most, a handshake looks at the files.
const CheckInterval = time.Second

// Reloader holds the current certificate of a cert/key file pair. It is
// safe for concurrent use.
type Reloader struct {
	certFile, keyFile string

	mu      sync.Mutex
	cert    *tls.Certificate
	stamps  [2]filewatch.Stamp
	checked time.Time
}

// Load reads the pair; it fails when the files do not hold a matching
// certificate and key.
func Load(certFile, keyFile string) (*Reloader, error) {
	r := &Reloader{certFile: certFile, keyFile: keyFile}
	stamps := r.stampNow()
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	r.cert, r.stamps, r.checked = &cert, stamps, time.Now()
	return r, nil
}

func (r *Reloader) stampNow() [2]filewatch.Stamp {
	return [2]filewatch.Stamp{filewatch.StampOf(r.certFile), filewatch.StampOf(r.keyFile)}
}

// Certificate returns the current certificate, reading the files again
// when they have changed since the last look (at most once per
// CheckInterval). A pair that does not load (the certificate replaced but
// not yet its key, say) keeps the previous certificate in service, and is
// tried again at the next look.
func (r *Reloader) Certificate() (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if now.Sub(r.checked) < CheckInterval {
		return r.cert, nil
	}
	r.checked = now
	stamps := r.stampNow()
	if stamps[0].Same(r.stamps[0]) && stamps[1].Same(r.stamps[1]) {
		return r.cert, nil
	}
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return r.cert, nil
	}
	r.cert, r.stamps = &cert, stamps
	return r.cert, nil
}

// GetCertificate is Certificate as a tls.Config.GetCertificate.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.Certificate()
}

// GetClientCertificate is Certificate as a
// tls.Config.GetClientCertificate.
func (r *Reloader) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return r.Certificate()
}
