// Package auth decides who may call the broker and what they may ask for:
// every TokenService call is authenticated (a workload identity JWT
// verified by auth/jwtverify, an X.509-SVID, an API key or a TLS client
// certificate), authorized against the caller's allow list, audited, and,
// for the calls that cost a vendor request, rate limited per caller.
//
// What each credential is checked against, and the isolation between
// callers, are docs/design.md, Security model; the configuration keys
// (clients, auth, tls, limits) are docs/design.md, Configuration.
// References: RFC 6749 sections 2.3.1, 3.2, 10.3; RFC 6750 sections 2.1
// and 5.3; RFC 9700.
package auth

import (
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"sort"
	"strings"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"

	"github.com/tokenbroker/tokenbroker/auth/jwtverify"
	"github.com/tokenbroker/tokenbroker/config"
)

// VendorPrefix marks an allow entry that permits inline credentials for a
// vendor ("vendor:abbyy_vantage"); any other entry names a profile.
const VendorPrefix = "vendor:"

// PermissionStatus is the allow entry that lets a client read every
// profile's credential status (ListCredentialStatus and the status page):
// no token or secret, but the list of profiles and whether they work.
const PermissionStatus = "admin:status"

// adminPrefix marks permission entries; PermissionStatus is the only one.
const adminPrefix = "admin:"

// Client is one configured caller (config key clients.<name>).
type Client struct {
	// APIKeySHA256 are the hex SHA-256 digests of its API keys: one, or
	// two while a key is rotated.
	APIKeySHA256 []string
	// CertSubject is its mTLS certificate's subject, if it uses one.
	CertSubject string
	// JWTSubject is the sub of its JWTs, exact or ending in a "*"
	// segment; JWTIssuer the issuer they come from (may be empty when one
	// issuer is configured).
	JWTSubject, JWTIssuer string
	// SPIFFEID is its SPIFFE ID (a JWT-SVID's sub or an X.509-SVID's URI
	// SAN).
	SPIFFEID string
	// Allow lists the profiles, and vendor:<id> entries for inline
	// credentials, it may use.
	Allow []string
}

// Limits bound what one caller may cost (config key limits).
type Limits struct {
	// RefreshPerMinute is each client's sustained rate of force_refresh
	// GetToken and InvalidateToken calls (config.DefaultRefreshPerMinute when 0).
	RefreshPerMinute int
	// RefreshBurst is how many such calls it may make at once
	// (config.DefaultRefreshBurst when 0).
	RefreshBurst int
}

// Config is what a Policy is built from.
type Config struct {
	// Clients are the configured callers, by name (config clients).
	Clients map[string]Client
	// ClientCAs verifies client certificates; nil when tls.client_ca_file
	// is not set (no mTLS).
	ClientCAs *x509.CertPool
	// JWT verifies bearer JWTs (auth.jwt_issuers); nil when no issuer
	// is configured, and then every bearer credential is an API key.
	JWT *jwtverify.Verifier
	// SPIFFEBundles verify X.509-SVIDs (auth.spiffe_bundles); nil when
	// none is configured.
	SPIFFEBundles *x509bundle.Set
	// Limits bound what one caller may cost.
	Limits Limits
	// Internal reports whether a gRPC peer is the process's own REST
	// gateway (which forwards the REST caller's certificate in a header);
	// nil means none is.
	Internal func(net.Addr) bool
	// Logger receives the audit lines.
	Logger *slog.Logger
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
	// Previous is the policy this one replaces (a configuration reload):
	// when the limits are unchanged its rate limit buckets carry over, so
	// a reload does not refill every client's budget.
	Previous *Policy
}

// maxKeysPerClient bounds a client's API key hashes: every call compares
// the presented key with all of them.
const maxKeysPerClient = 4

// client is one configured caller.
type client struct {
	name string
	// keyDigests are the SHA-256 of its API keys: one, or two while a key
	// is rotated; none for a certificate-only client.
	keyDigests [][32]byte
	subject    string
	// jwt and spiffe: it has a jwt_subject or a spiffe_id.
	jwt, spiffe bool
	profiles    map[string]bool
	vendors     map[string]bool
	// status: PermissionStatus is in its allow list.
	status bool
}

// Policy authenticates and authorizes calls. Build it with New; it is safe
// for concurrent use.
type Policy struct {
	clients   []*client
	bySubject map[string]*client
	roots     *x509.CertPool
	// anyCertificate: mTLS with no clients configured; every certificate
	// the client CA verifies may use everything.
	anyCertificate bool
	limiter        *limiter
	log            *slog.Logger
	now            func() time.Time
	internal       func(net.Addr) bool
	// verified remembers chains that passed verifyChainAt (see verifyChainOnce).
	verified *lru.Cache[[32]byte, verifiedChain]
	// byLeaf answers a TLS connection's calls before verified does.
	byLeaf leafMemo
	// jwt verifies bearer JWTs (nil: none configured); jwtRules find
	// their clients.
	jwt      *jwtverify.Verifier
	jwtRules []*jwtRule
	// bundles verify X.509-SVIDs (nil: none configured); bySPIFFEID
	// finds their clients.
	bundles    *x509bundle.Set
	bySPIFFEID map[string]*client
}

var (
	clientName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$`)
	sha256Hex  = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)
)

// New checks the client configuration and returns the policy. Errors name
// the config key at fault.
func New(cfg Config) (*Policy, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	p := &Policy{
		bySubject:      map[string]*client{},
		roots:          cfg.ClientCAs,
		anyCertificate: len(cfg.Clients) == 0 && (cfg.ClientCAs != nil || cfg.SPIFFEBundles != nil),
		log:            cfg.Logger,
		now:            cfg.Now,
		internal:       cfg.Internal,
		verified:       newVerifiedCache(),
		jwt:            cfg.JWT,
		bundles:        cfg.SPIFFEBundles,
		bySPIFFEID:     map[string]*client{},
	}
	var issuers []string
	if cfg.JWT != nil {
		issuers = cfg.JWT.Issuers()
	}
	names := make([]string, 0, len(cfg.Clients))
	for name := range cfg.Clients {
		names = append(names, name)
	}
	sort.Strings(names)
	byDigest := map[[32]byte]string{}
	for _, name := range names {
		c, err := newClient(name, cfg.Clients[name], cfg.ClientCAs != nil)
		if err != nil {
			return nil, err
		}
		if err := p.addJWTRules(name, cfg.Clients[name], c, issuers); err != nil {
			return nil, err
		}
		for _, d := range c.keyDigests {
			if other, dup := byDigest[d]; dup {
				if other == name {
					return nil, fmt.Errorf("clients.%s.api_key_sha256: the same hash twice", name)
				}
				return nil, fmt.Errorf("clients.%s.api_key_sha256: the same key as clients.%s; give every client its own key", name, other)
			}
			byDigest[d] = name
		}
		if c.subject != "" {
			if other, dup := p.bySubject[c.subject]; dup {
				return nil, fmt.Errorf("clients.%s.cert_subject: the same subject as clients.%s", name, other.name)
			}
			p.bySubject[c.subject] = c
		}
		p.clients = append(p.clients, c)
	}
	// Package config applies the defaults and refuses negative limits; a
	// Config built without it gets the same defaults here.
	perMinute, burst := cfg.Limits.RefreshPerMinute, cfg.Limits.RefreshBurst
	if perMinute <= 0 {
		perMinute = config.DefaultRefreshPerMinute
	}
	if burst <= 0 {
		burst = config.DefaultRefreshBurst
	}
	rate := float64(perMinute) / 60
	if prev := cfg.Previous; prev != nil && prev.limiter.rate == rate && prev.limiter.burst == float64(burst) {
		p.limiter = prev.limiter
	} else {
		p.limiter = newLimiter(rate, float64(burst), cfg.Now)
	}
	return p, nil
}

func newClient(name string, cc Client, mtls bool) (*client, error) {
	field := "clients." + name
	if !clientName.MatchString(name) {
		return nil, fmt.Errorf("%s: a client name is 1 to 128 characters of [A-Za-z0-9_.@-]", field)
	}
	c := &client{name: name, profiles: map[string]bool{}, vendors: map[string]bool{}}
	if len(cc.APIKeySHA256) > maxKeysPerClient {
		return nil, fmt.Errorf("%s.api_key_sha256: %d hashes; at most %d (a rotation needs two)", field, len(cc.APIKeySHA256), maxKeysPerClient)
	}
	for i, raw := range cc.APIKeySHA256 {
		h := strings.TrimSpace(raw)
		if !sha256Hex.MatchString(h) {
			at := ""
			if len(cc.APIKeySHA256) > 1 {
				at = fmt.Sprintf("[%d]", i)
			}
			return nil, fmt.Errorf("%s.api_key_sha256%s: must be the 64 hex digits of the key's SHA-256 (printf %%s \"$KEY\" | sha256sum), not the key", field, at)
		}
		var d [32]byte
		b, _ := hex.DecodeString(h)
		copy(d[:], b)
		c.keyDigests = append(c.keyDigests, d)
	}
	if s := strings.TrimSpace(cc.CertSubject); s != "" {
		if !mtls {
			return nil, fmt.Errorf("%s.cert_subject: needs tls.client_ca_file (and tls.cert_file, tls.key_file) to verify client certificates", field)
		}
		c.subject = s
	}
	if len(c.keyDigests) == 0 && c.subject == "" && strings.TrimSpace(cc.JWTSubject) == "" && strings.TrimSpace(cc.SPIFFEID) == "" {
		return nil, fmt.Errorf("%s: set api_key_sha256, cert_subject, jwt_subject or spiffe_id", field)
	}
	if len(cc.Allow) == 0 {
		return nil, fmt.Errorf("%s.allow: empty; list the profiles (and vendor:<id> for inline credentials) this client may use", field)
	}
	for i, a := range cc.Allow {
		if v, ok := strings.CutPrefix(a, VendorPrefix); ok {
			if v == "" {
				return nil, fmt.Errorf("%s.allow[%d]: %q names no vendor", field, i, a)
			}
			c.vendors[v] = true
			continue
		}
		if a == "" {
			return nil, fmt.Errorf("%s.allow[%d]: empty", field, i)
		}
		if strings.HasPrefix(a, adminPrefix) {
			if a != PermissionStatus {
				return nil, fmt.Errorf("%s.allow[%d]: %q is not a permission; the one there is is %q", field, i, a, PermissionStatus)
			}
			c.status = true
			continue
		}
		c.profiles[a] = true
	}
	return c, nil
}
