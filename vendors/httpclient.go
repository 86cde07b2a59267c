package vendors

import (
	"crypto/tls"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/tokenbroker/tokenbroker/internal/keypair"
)

// defaultTransport sends token requests when the caller gives no client.
// Every phase is bounded; the exchange's context bounds the whole.
var defaultTransport = &http.Transport{
	Proxy:                 http.ProxyFromEnvironment,
	DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
	MaxIdleConnsPerHost:   16,
	IdleConnTimeout:       90 * time.Second,
	TLSHandshakeTimeout:   5 * time.Second,
	ResponseHeaderTimeout: 30 * time.Second,
	ExpectContinueTimeout: time.Second,
	ForceAttemptHTTP2:     true,
	TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
}

// defaultHTTPClient is used when Input.HTTPClient is nil.
var defaultHTTPClient = &http.Client{CheckRedirect: noRedirect, Transport: defaultTransport}

// noRedirect stops at the first answer: a token endpoint that redirects
// would take the secrets along (a 307 or 308 re-sends the body).
func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// httpClientFor returns the client for one vendor's token requests.
//
// Without tls_client_cert it is Input.HTTPClient (or the default client),
// made to never follow redirects. With tls_client_cert and tls_client_key
// (file paths, mutual TLS to the vendor), it is a client whose transport is
// a clone of the given client's transport (or the default one) presenting
// that certificate: the operator's proxy, root CAs and timeouts are kept,
// the certificate is added. The given transport must then be an
// *http.Transport, the only kind that can carry a client certificate.
// Clients are cached per transport and cert/key pair, so connections are
// reused; renewed files are picked up by the next TLS handshake
// (internal/keypair), without a restart.
func httpClientFor(set Settings, given *http.Client) (*http.Client, error) {
	certFile, keyFile := set["tls_client_cert"], set["tls_client_key"]
	if certFile == "" && keyFile == "" {
		if given == nil {
			return defaultHTTPClient, nil
		}
		c := *given
		c.CheckRedirect = noRedirect
		return &c, nil
	}
	if certFile == "" || keyFile == "" {
		return nil, &ConfigError{Setting: "tls_client_cert", Reason: "tls_client_cert and tls_client_key go together"}
	}
	base, timeout := defaultTransport, time.Duration(0)
	if given != nil {
		rt := given.Transport
		if rt == nil {
			rt = http.DefaultTransport
		}
		t, ok := rt.(*http.Transport)
		if !ok {
			return nil, &ConfigError{Setting: "tls_client_cert", Reason: "mutual TLS needs the server's HTTP client to use an *http.Transport"}
		}
		base, timeout = t, given.Timeout
	}
	return mtlsClients.get(mtlsKey{base: base, timeout: timeout, certFile: certFile, keyFile: keyFile})
}

type mtlsKey struct {
	base              *http.Transport
	timeout           time.Duration
	certFile, keyFile string
}

// mtlsCache holds one client per mtlsKey. Keys come from operator settings
// only, so it stays small.
type mtlsCache struct {
	mu      sync.Mutex
	clients map[mtlsKey]*http.Client
}

var mtlsClients = &mtlsCache{clients: map[mtlsKey]*http.Client{}}

func (c *mtlsCache) get(k mtlsKey) (*http.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if client, ok := c.clients[k]; ok {
		return client, nil
	}
	pair, err := keypair.Load(k.certFile, k.keyFile)
	if err != nil {
		// A failure is not cached: the operator may fix the files.
		return nil, &ConfigError{Setting: "tls_client_cert", Reason: "cannot load the client certificate and key: " + err.Error()}
	}
	tr := k.base.Clone()
	if tr.TLSClientConfig == nil {
		tr.TLSClientConfig = &tls.Config{}
	}
	if tr.TLSClientConfig.MinVersion == 0 {
		tr.TLSClientConfig.MinVersion = tls.VersionTLS12
	}
	tr.TLSClientConfig.GetClientCertificate = pair.GetClientCertificate
	client := &http.Client{Transport: tr, CheckRedirect: noRedirect, Timeout: k.timeout}
	c.clients[k] = client
	return client, nil
}
