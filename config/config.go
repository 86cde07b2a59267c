// Package config reads tokenbroker's YAML configuration (docs/design.md, Configuration).
// Unknown keys are errors that name the key: a typo must never silently
// switch off a security setting. Secret values may be "${ENV_NAME}" or
// "file:/path"; they stay secret.Secret from here to the vendor request.
// The package owns every default (defaults.go) and every range
// (validate.go) of the configuration: what it returns is complete and
// checked, and the packages it configures take the values as given.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"slices"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tokenbroker/tokenbroker/secret"
)

// Config is the whole file.
type Config struct {
	GRPCAddr string `yaml:"grpc_addr"`
	HTTPAddr string `yaml:"http_addr"`
	// ShutdownDelay is how long the server keeps serving after SIGTERM,
	// already not ready, before it closes its listeners and drains
	// (DefaultShutdownDelay; 0s: none).
	ShutdownDelay time.Duration       `yaml:"shutdown_delay"`
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
// model"). A zero in the file means the default.
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
	// renewal (DefaultLeaseTTL, MinLeaseTTL..MaxLeaseTTL): the longest a
	// crashed holder delays the other replicas.
	LeaseTTL time.Duration `yaml:"lease_ttl"`
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
	// MaxTokenLifetime bounds exp - iat (DefaultMaxTokenLifetime).
	MaxTokenLifetime time.Duration `yaml:"max_token_lifetime"`
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

// ServiceTuning holds the token semantics' knobs (docs/design.md, Token semantics).
type ServiceTuning struct {
	// DefaultMinTTL is the min_ttl of requests that leave it unset
	// (DefaultMinTTL; 0s..MaxMinTTL).
	DefaultMinTTL time.Duration `yaml:"default_min_ttl"`
	// ForceRefreshInterval: a force_refresh this soon after a fetch gets
	// that token (DefaultForceRefreshInterval; 0s: never).
	ForceRefreshInterval time.Duration `yaml:"force_refresh_interval"`
	// RefreshAhead is the fraction of a token's life after which a hit
	// starts one background refresh, in (0, 1] (DefaultRefreshAhead; 1:
	// at expiry, that is off).
	RefreshAhead float64 `yaml:"refresh_ahead"`
	// KeepWarmMax bounds the profiles with keep_warm (DefaultKeepWarmMax).
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

// Lookup reads an environment variable; tests inject their own.
type Lookup func(name string) (string, bool)

// Load reads the file at path (empty: defaults only).
func Load(path string, env Lookup) (*Config, error) {
	return LoadWith(path, env, Defaults())
}

// LoadWith is Load with other defaults: the keys the file leaves out keep
// the values of defaults, which becomes the result (cmd/server's --dev
// starts from Defaults without a shutdown delay).
func LoadWith(path string, env Lookup, defaults *Config) (*Config, error) {
	if path == "" {
		return defaults, defaults.validate()
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cfg, err := parseOnto(raw, env, defaults)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// Parse reads a YAML document strictly onto Defaults, applies the
// defaults, resolves secret references and checks every value's range.
func Parse(raw []byte, env Lookup) (*Config, error) {
	return parseOnto(raw, env, Defaults())
}

func parseOnto(raw []byte, env Lookup, cfg *Config) (*Config, error) {
	if env == nil {
		env = os.LookupEnv
	}
	if len(raw) > 4<<20 {
		return nil, errors.New("file larger than 4 MiB")
	}
	var root yaml.Node
	if yaml.Unmarshal(raw, &root) == nil && zeroDurations(&root, reflect.TypeFor[Config]()) {
		if again, err := yaml.Marshal(&root); err == nil {
			raw = again
		}
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return nil, describeYAMLError(raw, err)
	}
	cfg.applyDefaults()
	r := resolver{env: env}
	r.config(cfg)
	if r.err != nil {
		return nil, r.err
	}
	cfg.secretFiles = r.files
	return cfg, cfg.validate()
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
