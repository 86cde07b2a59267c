package jwtverify

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/sync/singleflight"

	"github.com/tokenbroker/tokenbroker/internal/filewatch"
)

// KeySource finds an issuer's verification keys.
type KeySource interface {
	// Keys returns the keys with key id kid (every key when kid is
	// empty), looking again (within the source's own limits) when none
	// has it; ErrUnknownKey when none has it even then.
	Keys(ctx context.Context, kid string) ([]jose.JSONWebKey, error)
	// Generation changes whenever the key set does.
	Generation() uint64
	// Err is why the keys in use may be stale: the last attempt to read
	// them failed (nil when it worked).
	Err() error
	// Failures counts failed attempts to read the keys.
	Failures() uint64
}

// Bounds and pacing of key reads.
const (
	// MaxJWKSBytes bounds a JWKS document or discovery document.
	MaxJWKSBytes = 1 << 20
	// RefetchInterval: an unknown kid refetches a JWKS URL at most this
	// often, so callers with made-up key ids cannot hammer the issuer.
	RefetchInterval = 30 * time.Second
	// RefreshAfter is when keys fetched from a URL are looked at again
	// even without an unknown kid (issuers publish a new key before they
	// sign with it, and withdraw old ones).
	RefreshAfter = 5 * time.Minute
	// fetchTimeout bounds one JWKS or discovery request.
	fetchTimeout = 5 * time.Second
	// fileCheckInterval: a JWKS file is stat'ed at most this often (and on
	// every unknown kid).
	fileCheckInterval = time.Second
)

// keySet is a parsed JWKS: its signing keys.
type keySet struct {
	keys []jose.JSONWebKey
}

func (s *keySet) find(kid string) []jose.JSONWebKey {
	if s == nil {
		return nil
	}
	if kid == "" {
		return s.keys
	}
	var out []jose.JSONWebKey
	for _, k := range s.keys {
		if k.KeyID == kid {
			out = append(out, k)
		}
	}
	return out
}

// parseJWKS reads a JWKS document (RFC 7517 section 5), keeping the
// public signing keys; a document with none is an error.
func parseJWKS(raw []byte) (*keySet, error) {
	var doc jose.JSONWebKeySet
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("not a JWKS document: %v", err)
	}
	set := &keySet{}
	for _, k := range doc.Keys {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		if !k.Valid() || !k.IsPublic() {
			continue
		}
		if _, symmetric := k.Key.([]byte); symmetric {
			continue
		}
		set.keys = append(set.keys, k)
	}
	if len(set.keys) == 0 {
		return nil, errors.New("the JWKS has no public signing key")
	}
	return set, nil
}

// FileKeys reads a JWKS file (auth.jwt_issuers[i].jwks_file) and reads it
// again when it changes (written in place, renamed over, or a Kubernetes
// volume's "..data" swap). A file that cannot be read or parsed keeps the
// previous keys.
type FileKeys struct {
	path string
	now  func() time.Time

	// gen counts key set changes; read on every verification, so atomic.
	gen atomic.Uint64

	mu       sync.Mutex
	set      *keySet
	stamp    filewatch.Stamp
	checked  time.Time
	err      error
	failures uint64
}

// NewFileKeys reads path once; an unreadable or empty file is an error.
func NewFileKeys(path string, now func() time.Time) (*FileKeys, error) {
	if now == nil {
		now = time.Now
	}
	f := &FileKeys{path: path, now: now}
	if err := f.load(); err != nil {
		return nil, err
	}
	return f, nil
}

// Path is the file read.
func (f *FileKeys) Path() string { return f.path }

// load reads the file; the caller holds mu or owns f.
func (f *FileKeys) load() error {
	stamp := filewatch.StampOf(f.path)
	f.checked = f.now()
	raw, err := readBounded(f.path)
	if err == nil {
		var set *keySet
		if set, err = parseJWKS(raw); err == nil {
			f.set, f.stamp, f.err = set, stamp, nil
			f.gen.Add(1)
			return nil
		}
	}
	f.err = fmt.Errorf("jwks_file %s: %w", f.path, err)
	f.failures++
	f.stamp = stamp
	return f.err
}

func readBounded(path string) ([]byte, error) {
	file, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	raw, err := io.ReadAll(io.LimitReader(file, MaxJWKSBytes+1))
	if err != nil {
		return nil, err
	}
	if len(raw) > MaxJWKSBytes {
		return nil, fmt.Errorf("larger than %d bytes", MaxJWKSBytes)
	}
	return raw, nil
}

// Keys implements KeySource.
func (f *FileKeys) Keys(_ context.Context, kid string) ([]jose.JSONWebKey, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.now().Sub(f.checked) >= fileCheckInterval {
		f.reloadIfChanged()
	}
	if ks := f.set.find(kid); len(ks) > 0 {
		return ks, nil
	}
	f.reloadIfChanged()
	if ks := f.set.find(kid); len(ks) > 0 {
		return ks, nil
	}
	return nil, ErrUnknownKey
}

func (f *FileKeys) reloadIfChanged() {
	f.checked = f.now()
	if !filewatch.StampOf(f.path).Same(f.stamp) {
		_ = f.load()
	}
}

// Generation implements KeySource.
func (f *FileKeys) Generation() uint64 { return f.gen.Load() }

// Err implements KeySource.
func (f *FileKeys) Err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// Failures implements KeySource.
func (f *FileKeys) Failures() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failures
}

// RemoteOptions configure NewRemoteKeys.
type RemoteOptions struct {
	// JWKSURL is the https URL of the JWKS (jwks_url); empty with
	// Discovery.
	JWKSURL string
	// Discovery finds the JWKS URL in the OpenID configuration of Issuer
	// (discovery: true).
	Discovery bool
	Issuer    string
	// RootCAs verifies the endpoints (nil: the system's roots).
	RootCAs *x509.CertPool
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// RemoteKeys fetches a JWKS over https (auth.jwt_issuers[i].jwks_url or
// discovery). It keeps the last good keys when the endpoint fails, fetches
// again on an unknown kid at most once per RefetchInterval, and looks
// again RefreshAfter a good fetch.
type RemoteKeys struct {
	opts   RemoteOptions
	client *http.Client
	flight singleflight.Group

	// gen counts key set changes; read on every verification, so atomic.
	gen atomic.Uint64

	mu        sync.Mutex
	set       *keySet
	jwksURL   string
	fetched   time.Time // last good fetch
	attempted time.Time // last attempt
	err       error
	failures  uint64
}

// NewRemoteKeys checks the options; keys are fetched on first use.
func NewRemoteKeys(opts RemoteOptions) (*RemoteKeys, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	target := opts.JWKSURL
	if opts.Discovery {
		target = opts.Issuer
	}
	if err := checkHTTPS(target); err != nil {
		return nil, err
	}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		TLSClientConfig:       &tls.Config{RootCAs: opts.RootCAs, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   fetchTimeout,
		ResponseHeaderTimeout: fetchTimeout,
		MaxIdleConnsPerHost:   1,
	}
	return &RemoteKeys{
		opts:    opts,
		client:  &http.Client{Transport: tr, Timeout: fetchTimeout},
		jwksURL: opts.JWKSURL,
	}, nil
}

func checkHTTPS(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("%q is not an https URL", raw)
	}
	return nil
}

// Close releases idle connections.
func (r *RemoteKeys) Close() { r.client.CloseIdleConnections() }

// Keys implements KeySource.
func (r *RemoteKeys) Keys(ctx context.Context, kid string) ([]jose.JSONWebKey, error) {
	r.mu.Lock()
	set, now := r.set, r.opts.Now()
	due := set == nil && now.Sub(r.attempted) >= noKeysRetry ||
		set != nil && now.Sub(r.fetched) >= RefreshAfter && now.Sub(r.attempted) >= RefetchInterval
	r.mu.Unlock()
	if due {
		set = r.refresh(ctx)
	}
	if ks := set.find(kid); len(ks) > 0 {
		return ks, nil
	}
	if set == nil {
		return nil, fmt.Errorf("%w: %v", ErrNoKeys, r.Err())
	}
	// An unknown kid: the issuer may have rotated its keys. Look again,
	// at most once per RefetchInterval.
	r.mu.Lock()
	again := r.opts.Now().Sub(r.attempted) >= RefetchInterval
	r.mu.Unlock()
	if again && !due {
		set = r.refresh(ctx)
		if ks := set.find(kid); len(ks) > 0 {
			return ks, nil
		}
	}
	return nil, ErrUnknownKey
}

// noKeysRetry paces attempts while no keys were ever fetched.
const noKeysRetry = 2 * time.Second

// refresh fetches the keys once for all concurrent callers and returns
// the set in use afterwards (the previous one if the fetch failed).
func (r *RemoteKeys) refresh(ctx context.Context) *keySet {
	ch := r.flight.DoChan("", func() (any, error) {
		r.mu.Lock()
		r.attempted = r.opts.Now()
		r.mu.Unlock()
		// Not the caller's context: one caller giving up must not fail
		// the fetch for the others; fetchTimeout bounds it.
		set, jwksURL, err := r.fetch(context.WithoutCancel(ctx))
		r.mu.Lock()
		defer r.mu.Unlock()
		if err != nil {
			r.err = err
			r.failures++
			return r.set, nil
		}
		r.set, r.jwksURL, r.fetched, r.err = set, jwksURL, r.opts.Now(), nil
		r.gen.Add(1)
		return set, nil
	})
	select {
	case res := <-ch:
		set, _ := res.Val.(*keySet)
		return set
	case <-ctx.Done():
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.set
	}
}

// fetch reads the JWKS, after discovery when configured.
func (r *RemoteKeys) fetch(ctx context.Context) (*keySet, string, error) {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	r.mu.Lock()
	jwksURL := r.jwksURL
	r.mu.Unlock()
	if r.opts.Discovery {
		var err error
		if jwksURL, err = r.discover(ctx); err != nil {
			return nil, "", err
		}
	}
	raw, err := r.get(ctx, jwksURL)
	if err != nil {
		return nil, "", fmt.Errorf("jwks %s: %w", jwksURL, err)
	}
	set, err := parseJWKS(raw)
	if err != nil {
		return nil, "", fmt.Errorf("jwks %s: %w", jwksURL, err)
	}
	return set, jwksURL, nil
}

// discover reads the issuer's OpenID configuration (OpenID Connect
// Discovery 1.0 section 4) and returns its jwks_uri; the document must
// name the same issuer (section 4.3).
func (r *RemoteKeys) discover(ctx context.Context) (string, error) {
	where := strings.TrimSuffix(r.opts.Issuer, "/") + "/.well-known/openid-configuration"
	raw, err := r.get(ctx, where)
	if err != nil {
		return "", fmt.Errorf("discovery %s: %w", where, err)
	}
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return "", fmt.Errorf("discovery %s: not an OpenID configuration: %v", where, err)
	}
	if doc.Issuer != r.opts.Issuer {
		return "", fmt.Errorf("discovery %s: names issuer %q, not %q", where, truncate(doc.Issuer), r.opts.Issuer)
	}
	if err := checkHTTPS(doc.JWKSURI); err != nil {
		return "", fmt.Errorf("discovery %s: jwks_uri: %w", where, err)
	}
	return doc.JWKSURI, nil
}

func (r *RemoteKeys) get(ctx context.Context, target string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, MaxJWKSBytes+1))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	if len(raw) > MaxJWKSBytes {
		return nil, fmt.Errorf("larger than %d bytes", MaxJWKSBytes)
	}
	return raw, nil
}

// Generation implements KeySource.
func (r *RemoteKeys) Generation() uint64 { return r.gen.Load() }

// Err implements KeySource.
func (r *RemoteKeys) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// Failures implements KeySource.
func (r *RemoteKeys) Failures() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failures
}

var (
	_ KeySource = (*FileKeys)(nil)
	_ KeySource = (*RemoteKeys)(nil)
)
