// Package config reads tokenbroker's YAML configuration (docs/design.md, Configuration).
// Unknown keys are errors that name the key: a typo must never silently
// switch off a security setting. Secret values may be "${ENV_NAME}" or
// "file:/path"; they stay secret.Secret from here to the vendor request.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tokenbroker/tokenbroker/secret"
)

// Config is the whole file.
type Config struct {
	GRPCAddr string `yaml:"grpc_addr"`
	HTTPAddr string `yaml:"http_addr"`
	// ShutdownDelay is how long the server keeps serving after SIGTERM,
	// already not ready, before it closes its listeners and drains (a Go
	// duration; empty means the default, 5s).
	ShutdownDelay string              `yaml:"shutdown_delay"`
	Cache         Cache               `yaml:"cache"`
	Vendors       map[string]Settings `yaml:"vendors"`
	Profiles      map[string]Profile  `yaml:"profiles"`
	Clients       map[string]Client   `yaml:"clients"`
	TLS           TLS                 `yaml:"tls"`
	Service       ServiceTuning       `yaml:"service"`
	Limits        Limits              `yaml:"limits"`
	AccessLog     AccessLog           `yaml:"access_log"`
	Auth          Auth                `yaml:"auth"`
	Events        Events              `yaml:"events"`

	// secretFiles are the paths of the file: secrets, in the order met.
	secretFiles []string
}

// SecretFiles returns the paths of the file: secret references the
// configuration was resolved from (a reload watches them).
func (c *Config) SecretFiles() []string { return slices.Clone(c.secretFiles) }

// Limits bound what one authenticated client may cost (README "Security
// model"). Zero means the default.
type Limits struct {
	// RefreshPerMinute is each client's sustained rate of force_refresh
	// GetToken and InvalidateToken calls (default 60).
	RefreshPerMinute int `yaml:"refresh_per_minute"`
	// RefreshBurst is how many such calls a client may make at once
	// (default 30).
	RefreshBurst int `yaml:"refresh_burst"`
	// MissesPerMinute is each client's sustained rate of vendor token
	// requests caused by its cache misses, counted fleet-wide (default
	// 600).
	MissesPerMinute int `yaml:"misses_per_minute"`
	// MissBurst is how many such requests a client may cause at once
	// (default 300).
	MissBurst int `yaml:"miss_burst"`
	// MaxClientShare is the largest fraction of a vendor's
	// max_requests_per_second budget one client may take while other
	// clients wait for it (default 0.5; 1: no bound).
	MaxClientShare float64 `yaml:"max_client_share"`
}

// Cache configures the token store.
type Cache struct {
	// Redis is nil for the in-process memory store.
	Redis          *Redis          `yaml:"redis"`
	EncryptionKeys []secret.Secret `yaml:"encryption_keys"`
	// FingerprintKey keys the HMAC that names cache entries (base64 of 32
	// random bytes). Optional with encryption_keys (the key is then
	// derived from the oldest of them); required with Redis and
	// allow_plaintext, so that key names never become unkeyed hashes of
	// credentials.
	FingerprintKey secret.Secret `yaml:"fingerprint_key"`
	AllowPlaintext bool          `yaml:"allow_plaintext"`
	// L1MaxEntries bounds the in-process cache in front of Redis.
	L1MaxEntries int `yaml:"l1_max_entries"`
	// L1Disabled turns the in-process level off (benchmarks of the Redis
	// path).
	L1Disabled bool `yaml:"l1_disabled"`
	// LeaseTTL is how long a fetch lease outlives its holder's last
	// renewal (a Go duration; default 2s): the longest a crashed holder
	// delays the other replicas.
	LeaseTTL string `yaml:"lease_ttl"`
}

// Redis configures the shared store.
type Redis struct {
	Addrs      []string      `yaml:"addrs"`
	MasterName string        `yaml:"master_name"`
	Username   string        `yaml:"username"`
	Password   secret.Secret `yaml:"password"`
	// SentinelUsername and SentinelPassword authenticate to the Sentinels
	// (with master_name) when theirs differ from the data nodes'; empty
	// means username and password serve both.
	SentinelUsername string        `yaml:"sentinel_username"`
	SentinelPassword secret.Secret `yaml:"sentinel_password"`
	TLS              bool          `yaml:"tls"`
	// TLSCAFile is a PEM file of the CAs that sign the Redis servers'
	// certificates, when they are not in the system's trust store.
	TLSCAFile string `yaml:"tls_ca_file"`
	DB        int    `yaml:"db"`
	// AllowEviction lets the broker start on a Redis whose
	// maxmemory-policy may evict its keys (allkeys-*, volatile-*): the
	// fetch lease, generations and refresh-token claims are then lost
	// under memory pressure (docs/operations.md, Redis requirements).
	AllowEviction bool `yaml:"allow_eviction"`
}

// Settings are a vendor's or profile's settings (docs/design.md, Vendors); map
// values such as extra_params are kept as nested maps here and flattened by
// Flatten.
type Settings map[string]any

// Profile is a server-side credential set.
type Profile struct {
	Vendor      string                   `yaml:"vendor"`
	Credentials map[string]secret.Secret `yaml:"credentials"`
	Params      map[string]string        `yaml:"params"`
	// AllowParams are the params a caller of this profile may set
	// (default: none); see AllowParams.
	AllowParams AllowParams `yaml:"allow_params"`
	Settings    Settings    `yaml:"settings"`
	// KeepWarm: the fleet refreshes this profile's token at the
	// refresh-ahead point even without callers (at most
	// service.keep_warm_max profiles).
	KeepWarm bool `yaml:"keep_warm"`
}

// AllowParams names the params a profile's callers may set, each with the
// values it may take (nil: any value). In YAML either a list of names
// (any value) or a map of name to a list of values:
//
//	allow_params: [scope]
//	allow_params: {scope: [read, "read write"], tenancy: [acme, acme-test]}
//
// A param that chooses where the request goes (a host or a path: tenancy,
// region, tenant_id, any placeholder of a URL setting) needs a value list
// (docs/design.md, Security model).
type AllowParams map[string][]string

// UnmarshalYAML accepts a sequence of names or a mapping of name to a
// sequence of values (or null for any value).
func (a *AllowParams) UnmarshalYAML(n *yaml.Node) error {
	out := AllowParams{}
	switch n.Kind {
	case yaml.SequenceNode:
		var names []string
		if err := n.Decode(&names); err != nil {
			return err
		}
		for _, name := range names {
			out[name] = nil
		}
	case yaml.MappingNode:
		var m map[string][]string
		if err := n.Decode(&m); err != nil {
			return err
		}
		for name, values := range m {
			if values != nil && len(values) == 0 {
				return fmt.Errorf("line %d: allow_params.%s: an empty list allows nothing; list the values, or write null for any value", n.Line, name)
			}
			out[name] = values
		}
	default:
		return fmt.Errorf("line %d: allow_params: a list of param names, or a map of param name to allowed values", n.Line)
	}
	*a = out
	return nil
}

// Client is a caller of the broker (docs/design.md, Security model).
type Client struct {
	// APIKeySHA256 is one hash, or several while a key is rotated.
	APIKeySHA256 Hashes `yaml:"api_key_sha256"`
	CertSubject  string `yaml:"cert_subject"`
	// JWTSubject is the sub of its JWTs: exact, or ending in a "*"
	// segment ("system:serviceaccount:billing:*").
	JWTSubject string `yaml:"jwt_subject"`
	// JWTIssuer names the auth.jwt_issuers entry its JWTs come from
	// (required when several are configured).
	JWTIssuer string `yaml:"jwt_issuer"`
	// SPIFFEID is its SPIFFE ID: a JWT-SVID's sub, or an X.509-SVID's URI
	// SAN.
	SPIFFEID string   `yaml:"spiffe_id"`
	Allow    []string `yaml:"allow"`
}

// Auth configures workload identity for callers (docs/design.md,
// Security model).
type Auth struct {
	// JWTIssuers are the issuers whose JWTs callers may present.
	JWTIssuers []JWTIssuer `yaml:"jwt_issuers"`
	// SPIFFEBundles are the trust bundles X.509-SVIDs are verified with.
	SPIFFEBundles []SPIFFEBundle `yaml:"spiffe_bundles"`
}

// JWTIssuer is one trusted issuer of caller JWTs. Exactly one of
// JWKSFile, JWKSURL and Discovery says where its keys are.
type JWTIssuer struct {
	Issuer    string   `yaml:"issuer"`
	Audiences []string `yaml:"audiences"`
	JWKSFile  string   `yaml:"jwks_file"`
	JWKSURL   string   `yaml:"jwks_url"`
	// JWKSCAFile is a PEM file of the CAs of the JWKS and discovery
	// endpoints, when not the system's.
	JWKSCAFile string `yaml:"jwks_ca_file"`
	Discovery  bool   `yaml:"discovery"`
	// MaxTokenLifetime bounds exp - iat (a Go duration; default 24h).
	MaxTokenLifetime string `yaml:"max_token_lifetime"`
}

// SPIFFEBundle is one trust domain's X.509 trust bundle.
type SPIFFEBundle struct {
	TrustDomain string `yaml:"trust_domain"`
	// BundleFile holds PEM certificates or a SPIFFE bundle (JWKS JSON);
	// it is reread when it changes.
	BundleFile string `yaml:"bundle_file"`
}

// Hashes is a config value written as one string or as a list of them.
type Hashes []string

// UnmarshalYAML accepts a scalar or a sequence of scalars.
func (h *Hashes) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		var one string
		if err := n.Decode(&one); err != nil {
			return err
		}
		*h = Hashes{one}
		return nil
	}
	var list []string
	if err := n.Decode(&list); err != nil {
		return err
	}
	*h = list
	return nil
}

// TLS configures both listeners.
type TLS struct {
	CertFile     string `yaml:"cert_file"`
	KeyFile      string `yaml:"key_file"`
	ClientCAFile string `yaml:"client_ca_file"`
}

// AccessLog is the access log policy (docs/design.md, Operations, "Access
// log policy"): which successful cache hits get a "request" line. Misses,
// errors and every other call are always logged, and so is every
// authorization decision (its own audit line).
type AccessLog struct {
	// CacheHits is "all" (the default, also when empty), "sampled" (one
	// line per SampleOneIn hits) or "none".
	CacheHits string `yaml:"cache_hits"`
	// SampleOneIn is N of "one in N", 2..1000000; only with sampled.
	SampleOneIn int `yaml:"sample_one_in"`
}

// Access log policies (AccessLog.CacheHits).
const (
	CacheHitsAll     = "all"
	CacheHitsSampled = "sampled"
	CacheHitsNone    = "none"
)

// maxSampleOneIn bounds access_log.sample_one_in: beyond it a sampled log
// is as good as none, which says so more plainly.
const maxSampleOneIn = 1_000_000

// HitsOneIn returns how many successful cache hits share one access line:
// 1 for all, 0 for none, N when sampled. The AccessLog must be valid.
func (a AccessLog) HitsOneIn() uint64 {
	switch a.CacheHits {
	case CacheHitsNone:
		return 0
	case CacheHitsSampled:
		return uint64(a.SampleOneIn)
	}
	return 1
}

func (a AccessLog) validate() error {
	switch a.CacheHits {
	case "", CacheHitsAll, CacheHitsNone:
		if a.SampleOneIn != 0 {
			return fmt.Errorf("access_log.sample_one_in needs access_log.cache_hits: %s", CacheHitsSampled)
		}
	case CacheHitsSampled:
		if a.SampleOneIn < 2 || a.SampleOneIn > maxSampleOneIn {
			return fmt.Errorf("access_log.sample_one_in: %d is not in 2..%d (one line per that many cache hits)", a.SampleOneIn, maxSampleOneIn)
		}
	default:
		return fmt.Errorf("access_log.cache_hits: %q is not one of %s, %s, %s", a.CacheHits, CacheHitsAll, CacheHitsSampled, CacheHitsNone)
	}
	return nil
}

// ServiceTuning holds the token semantics' knobs (docs/design.md, Token semantics).
type ServiceTuning struct {
	DefaultMinTTL        string  `yaml:"default_min_ttl"`
	ForceRefreshInterval string  `yaml:"force_refresh_interval"`
	RefreshAhead         float64 `yaml:"refresh_ahead"`
	// KeepWarmMax bounds the profiles with keep_warm (0: 100).
	KeepWarmMax int `yaml:"keep_warm_max"`
}

// Events configures where credential state changes are sent (CloudEvents
// over HTTP).
type Events struct {
	Sinks []EventSink `yaml:"sinks"`
}

// EventSink is one receiver of events.
type EventSink struct {
	URL string `yaml:"url"`
	// Headers go with every event (e.g. authorization: ${SINK_TOKEN}).
	Headers map[string]secret.Secret `yaml:"headers"`
}

// Defaults are the safe local defaults used with no file.
func Defaults() *Config {
	return &Config{GRPCAddr: "127.0.0.1:9090", HTTPAddr: "127.0.0.1:8080"}
}

// Lookup reads an environment variable; tests inject their own.
type Lookup func(name string) (string, bool)

// Load reads the file at path (empty: defaults only).
func Load(path string, env Lookup) (*Config, error) {
	if path == "" {
		return Defaults(), nil
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cfg, err := Parse(raw, env)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// Parse reads a YAML document strictly and resolves secret references.
func Parse(raw []byte, env Lookup) (*Config, error) {
	if env == nil {
		env = os.LookupEnv
	}
	if len(raw) > 4<<20 {
		return nil, errors.New("file larger than 4 MiB")
	}
	cfg := Defaults()
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return nil, describeYAMLError(err)
	}
	r := resolver{env: env}
	r.config(cfg)
	if r.err != nil {
		return nil, r.err
	}
	cfg.secretFiles = r.files
	return cfg, cfg.validate()
}

func describeYAMLError(err error) error {
	msg := err.Error()
	msg = strings.ReplaceAll(msg, "yaml: unmarshal errors:\n  ", "")
	msg = strings.ReplaceAll(msg, " in type config.", " in ")
	return errors.New(msg)
}

func (c *Config) validate() error {
	if c.Cache.Redis != nil && len(c.Cache.Redis.Addrs) == 0 {
		return errors.New("cache.redis.addrs: at least one address is required")
	}
	for i, k := range c.Cache.EncryptionKeys {
		if k.IsZero() {
			return fmt.Errorf("cache.encryption_keys[%d]: empty (is the environment variable set?)", i)
		}
	}
	for name, p := range c.Profiles {
		if p.Vendor == "" {
			return fmt.Errorf("profiles.%s.vendor: required", name)
		}
	}
	if _, err := time.ParseDuration(c.ShutdownDelay); c.ShutdownDelay != "" && (err != nil || strings.HasPrefix(c.ShutdownDelay, "-")) {
		return fmt.Errorf("shutdown_delay: %q is not a Go duration such as 5s", c.ShutdownDelay)
	}
	for name, cl := range c.Clients {
		if len(cl.APIKeySHA256) == 0 && cl.CertSubject == "" && cl.JWTSubject == "" && cl.SPIFFEID == "" {
			return fmt.Errorf("clients.%s: set api_key_sha256, cert_subject, jwt_subject or spiffe_id", name)
		}
	}
	if err := c.Auth.validate(); err != nil {
		return err
	}
	if c.Limits.RefreshPerMinute < 0 || c.Limits.RefreshBurst < 0 {
		return errors.New("limits: refresh_per_minute and refresh_burst must not be negative")
	}
	if c.Limits.MissesPerMinute < 0 || c.Limits.MissBurst < 0 {
		return errors.New("limits: misses_per_minute and miss_burst must not be negative")
	}
	if s := c.Limits.MaxClientShare; s < 0 || s > 1 {
		return fmt.Errorf("limits.max_client_share: %v is not a fraction between 0 (the default, 0.5) and 1 (no bound)", s)
	}
	if r := c.Cache.Redis; r != nil && r.TLSCAFile != "" && !r.TLS {
		return errors.New("cache.redis.tls_ca_file needs cache.redis.tls: true")
	}
	if r := c.Cache.Redis; r != nil && r.MasterName == "" && (r.SentinelUsername != "" || !r.SentinelPassword.IsZero()) {
		return errors.New("cache.redis.sentinel_username and sentinel_password need cache.redis.master_name (Sentinel)")
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		return errors.New("tls: cert_file and key_file go together")
	}
	if c.TLS.ClientCAFile != "" && c.TLS.CertFile == "" {
		return errors.New("tls.client_ca_file needs tls.cert_file and tls.key_file")
	}
	if err := c.AccessLog.validate(); err != nil {
		return err
	}
	if len(c.Auth.SPIFFEBundles) > 0 && c.TLS.CertFile == "" {
		return errors.New("auth.spiffe_bundles needs tls.cert_file and tls.key_file (X.509-SVIDs are presented over mTLS)")
	}
	return nil
}

// Flatten turns settings into the vendors package's flat string map:
// scalars as text, one level of maps as "name.key".
func (s Settings) Flatten(field string) (map[string]string, error) {
	out := make(map[string]string, len(s))
	keys := make([]string, 0, len(s))
	for k := range s {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := s[k]
		if nested, ok := v.(Settings); ok {
			// YAML decodes a nested map into the named type.
			v = map[string]any(nested)
		}
		switch v := v.(type) {
		case map[string]any:
			for mk, mv := range v {
				str, ok := scalar(mv)
				if !ok {
					return nil, fmt.Errorf("%s.%s.%s: must be a string, number or boolean", field, k, mk)
				}
				out[k+"."+mk] = str
			}
		default:
			str, ok := scalar(v)
			if !ok {
				return nil, fmt.Errorf("%s.%s: must be a string, number, boolean or a map of them", field, k)
			}
			out[k] = str
		}
	}
	return out, nil
}

func scalar(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, true
	case int, int64, uint64, float64, bool:
		return fmt.Sprint(v), true
	case nil:
		return "", true
	}
	return "", false
}

func (a *Auth) validate() error {
	seen := map[string]bool{}
	for i, is := range a.JWTIssuers {
		field := fmt.Sprintf("auth.jwt_issuers[%d]", i)
		if is.Issuer == "" {
			return fmt.Errorf("%s.issuer: required (the exact iss of its tokens)", field)
		}
		if seen[is.Issuer] {
			return fmt.Errorf("%s.issuer: %q is configured twice", field, is.Issuer)
		}
		seen[is.Issuer] = true
		if len(is.Audiences) == 0 || slices.Contains(is.Audiences, "") {
			return fmt.Errorf("%s.audiences: list the audiences its tokens must carry (e.g. [tokenbroker])", field)
		}
		sources := 0
		for _, set := range []bool{is.JWKSFile != "", is.JWKSURL != "", is.Discovery} {
			if set {
				sources++
			}
		}
		if sources != 1 {
			return fmt.Errorf("%s: set exactly one of jwks_file, jwks_url and discovery", field)
		}
		if is.JWKSCAFile != "" && is.JWKSFile != "" {
			return fmt.Errorf("%s.jwks_ca_file: only with jwks_url or discovery", field)
		}
		if is.MaxTokenLifetime != "" {
			if d, err := time.ParseDuration(is.MaxTokenLifetime); err != nil || d <= 0 {
				return fmt.Errorf("%s.max_token_lifetime: %q is not a positive Go duration such as 24h", field, is.MaxTokenLifetime)
			}
		}
	}
	domains := map[string]bool{}
	for i, b := range a.SPIFFEBundles {
		field := fmt.Sprintf("auth.spiffe_bundles[%d]", i)
		if b.TrustDomain == "" || b.BundleFile == "" {
			return fmt.Errorf("%s: trust_domain and bundle_file are required", field)
		}
		if domains[b.TrustDomain] {
			return fmt.Errorf("%s.trust_domain: %q is configured twice", field, b.TrustDomain)
		}
		domains[b.TrustDomain] = true
	}
	return nil
}
