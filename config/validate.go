package config

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// validate checks what the file says on its own, before anything is built
// from it: each value within its range and the keys that go together. It
// runs after applyDefaults. Every error names the YAML key. What needs the
// vendor registry (settings, params, allow lists) is checked where the
// registry is (app/validate.go).
func (c *Config) validate() error {
	for _, check := range []func() error{c.checkRanges, c.checkCache, c.checkProfiles, c.checkClients, c.Auth.validate, c.AccessLog.validate, c.checkTLS} {
		if err := check(); err != nil {
			return err
		}
	}
	return nil
}

// checkRanges checks every numeric and duration key against its range
// (docs/design.md, Configuration).
func (c *Config) checkRanges() error {
	durations := []struct {
		key      string
		value    time.Duration
		min, max time.Duration // max 0: no upper bound
	}{
		{"shutdown_delay", c.ShutdownDelay, 0, 0},
		{"cache.lease_ttl", c.Cache.LeaseTTL, MinLeaseTTL, MaxLeaseTTL},
		{"service.default_min_ttl", c.Service.DefaultMinTTL, 0, MaxMinTTL},
		{"service.force_refresh_interval", c.Service.ForceRefreshInterval, 0, 0},
	}
	for _, d := range durations {
		switch {
		case d.max == 0 && d.value < d.min:
			return fmt.Errorf("%s: must not be negative, got %s", d.key, d.value)
		case d.max != 0 && (d.value < d.min || d.value > d.max):
			return fmt.Errorf("%s: must be in %s..%s, got %s", d.key, d.min, d.max, d.value)
		}
	}
	counts := []struct {
		key   string
		value int
	}{
		{"cache.l1_max_entries", c.Cache.L1MaxEntries},
		{"service.keep_warm_max", c.Service.KeepWarmMax},
		{"limits.refresh_per_minute", c.Limits.RefreshPerMinute},
		{"limits.refresh_burst", c.Limits.RefreshBurst},
		{"limits.misses_per_minute", c.Limits.MissesPerMinute},
		{"limits.miss_burst", c.Limits.MissBurst},
	}
	for _, n := range counts {
		if n.value < 0 {
			return fmt.Errorf("%s: must not be negative (0: the default), got %d", n.key, n.value)
		}
	}
	if f := c.Service.RefreshAhead; !(f > 0 && f <= 1) {
		return fmt.Errorf("service.refresh_ahead: must be in (0, 1] (1 or more: no refresh ahead), got %v", f)
	}
	if s := c.Limits.MaxClientShare; !(s > 0 && s <= 1) {
		return fmt.Errorf("limits.max_client_share: must be in (0, 1] (1: no bound; 0: the default, %v), got %v", DefaultMaxClientShare, s)
	}
	return nil
}

func (c *Config) checkCache() error {
	for i, k := range c.Cache.EncryptionKeys {
		if k.IsZero() {
			return fmt.Errorf("cache.encryption_keys[%d]: empty (is the environment variable set?)", i)
		}
	}
	r := c.Cache.Redis
	if r == nil {
		return nil
	}
	switch {
	case len(r.Addrs) == 0:
		return errors.New("cache.redis.addrs: at least one address is required")
	case r.DB < 0:
		return fmt.Errorf("cache.redis.db: must not be negative, got %d", r.DB)
	case len(r.Addrs) > 1 && r.MasterName == "" && r.DB != 0:
		return errors.New("cache.redis.db: a Redis Cluster (several addrs) has only database 0")
	case r.TLSCAFile != "" && !r.TLS:
		return errors.New("cache.redis.tls_ca_file needs cache.redis.tls: true")
	case r.MasterName == "" && (r.SentinelUsername != "" || !r.SentinelPassword.IsZero()):
		return errors.New("cache.redis.sentinel_username and sentinel_password need cache.redis.master_name (Sentinel)")
	}
	return nil
}

// checkProfiles checks what a profile says without its vendor, and bounds
// the keep_warm profiles by service.keep_warm_max: each costs its vendor a
// request per token lifetime, callers or not.
func (c *Config) checkProfiles() error {
	warm := 0
	for _, name := range sortedKeys(c.Profiles) {
		p := c.Profiles[name]
		if p.Vendor == "" {
			return fmt.Errorf("profiles.%s.vendor: required", name)
		}
		if p.KeepWarm {
			warm++
		}
	}
	if warm > c.Service.KeepWarmMax {
		return fmt.Errorf("profiles: %d profiles have keep_warm, more than service.keep_warm_max (%d)", warm, c.Service.KeepWarmMax)
	}
	return nil
}

func (c *Config) checkClients() error {
	for _, name := range sortedKeys(c.Clients) {
		cl := c.Clients[name]
		if len(cl.APIKeySHA256) == 0 && cl.CertSubject == "" && cl.JWTSubject == "" && cl.SPIFFEID == "" {
			return fmt.Errorf("clients.%s: set api_key_sha256, cert_subject, jwt_subject or spiffe_id", name)
		}
	}
	return nil
}

func (c *Config) checkTLS() error {
	switch {
	case (c.TLS.CertFile == "") != (c.TLS.KeyFile == ""):
		return errors.New("tls: cert_file and key_file go together")
	case c.TLS.ClientCAFile != "" && c.TLS.CertFile == "":
		return errors.New("tls.client_ca_file needs tls.cert_file and tls.key_file")
	case len(c.Auth.SPIFFEBundles) > 0 && c.TLS.CertFile == "":
		return errors.New("auth.spiffe_bundles needs tls.cert_file and tls.key_file (X.509-SVIDs are presented over mTLS)")
	}
	return nil
}

func (a AccessLog) validate() error {
	switch a.CacheHits {
	case "", CacheHitsAll, CacheHitsNone:
		if a.SampleOneIn != 0 {
			return fmt.Errorf("access_log.sample_one_in needs access_log.cache_hits: %s", CacheHitsSampled)
		}
	case CacheHitsSampled:
		if a.SampleOneIn < 2 || a.SampleOneIn > maxSampleOneIn {
			return fmt.Errorf("access_log.sample_one_in: must be in 2..%d (one line per that many cache hits), got %d", maxSampleOneIn, a.SampleOneIn)
		}
	default:
		return fmt.Errorf("access_log.cache_hits: %q is not one of %s, %s, %s", a.CacheHits, CacheHitsAll, CacheHitsSampled, CacheHitsNone)
	}
	return nil
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
		if is.MaxTokenLifetime < 0 {
			return fmt.Errorf("%s.max_token_lifetime: must be positive, got %s", field, is.MaxTokenLifetime)
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

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// describeYAMLError rewrites the decoder's errors for people: each
// "line N: ..." names the whole path of the key it is about, and a value
// that is not a Go duration says what one looks like.
func describeYAMLError(raw []byte, err error) error {
	msg := err.Error()
	msg = strings.ReplaceAll(msg, "yaml: unmarshal errors:\n  ", "")
	msg = strings.ReplaceAll(msg, " in type config.", " in ")
	var root yaml.Node
	if yaml.Unmarshal(raw, &root) != nil {
		return errors.New(msg)
	}
	lines := strings.Split(msg, "\n")
	for i, line := range lines {
		line = strings.TrimSpace(line)
		var n int
		if _, scanErr := fmt.Sscanf(line, "line %d:", &n); scanErr != nil {
			continue
		}
		_, rest, _ := strings.Cut(line, ":")
		// The decoder quotes the value it refused in backquotes, and an
		// unknown key after "field ".
		want := ""
		if _, v, ok := strings.Cut(rest, "`"); ok {
			want, _, _ = strings.Cut(v, "`")
		} else if _, v, ok := strings.Cut(rest, "field "); ok {
			want, _, _ = strings.Cut(v, " ")
		}
		key := keyAtLine(&root, n, want)
		if key == "" {
			continue
		}
		switch {
		case strings.HasPrefix(rest, " field "):
			// "field name not found in Type": the whole path of the key.
			_, tail, _ := strings.Cut(rest[len(" field "):], " ")
			lines[i] = fmt.Sprintf("line %d: field %s %s", n, key, tail)
		case strings.HasSuffix(rest, "into time.Duration"):
			lines[i] = fmt.Sprintf("line %d: %s: %q is not a Go duration such as 5s or 1m30s", n, key, want)
		default:
			lines[i] = fmt.Sprintf("line %d: %s:%s", n, key, rest)
		}
	}
	return errors.New(strings.Join(lines, "\n"))
}

// keyAtLine returns the dotted path ("service.refresh_ahead",
// "auth.jwt_issuers[0].issuer") of the key or scalar value at line whose
// text is want, else of the first one at line; "" if none.
func keyAtLine(root *yaml.Node, line int, want string) string {
	var first, match string
	var walk func(n *yaml.Node, path string)
	note := func(n *yaml.Node, path string) {
		if n.Line != line {
			return
		}
		if first == "" {
			first = path
		}
		if match == "" && n.Value == want {
			match = path
		}
	}
	walk = func(n *yaml.Node, path string) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, path)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				name, value := n.Content[i], n.Content[i+1]
				p := name.Value
				if path != "" {
					p = path + "." + name.Value
				}
				note(name, p)
				if value.Kind == yaml.ScalarNode {
					note(value, p)
				}
				walk(value, p)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				p := fmt.Sprintf("%s[%d]", path, i)
				if c.Kind == yaml.ScalarNode {
					note(c, p)
				}
				walk(c, p)
			}
		}
	}
	walk(root, "")
	if match != "" {
		return match
	}
	return first
}

var durationType = reflect.TypeFor[time.Duration]()

// zeroDurations rewrites a bare 0 written for a duration key (the one
// number time.ParseDuration takes without a unit, and which files written
// when these keys were strings use) as "0s", which the decoder takes. It
// reports whether it changed anything.
func zeroDurations(n *yaml.Node, typ reflect.Type) bool {
	for typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	changed := false
	switch {
	case n.Kind == yaml.DocumentNode:
		for _, c := range n.Content {
			changed = zeroDurations(c, typ) || changed
		}
	case n.Kind == yaml.MappingNode && typ.Kind() == reflect.Struct:
		for i := 0; i+1 < len(n.Content); i += 2 {
			for f := range typ.Fields() {
				if name, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); name == n.Content[i].Value {
					changed = zeroDurations(n.Content[i+1], f.Type) || changed
				}
			}
		}
	case n.Kind == yaml.SequenceNode && typ.Kind() == reflect.Slice:
		for _, c := range n.Content {
			changed = zeroDurations(c, typ.Elem()) || changed
		}
	case n.Kind == yaml.ScalarNode && typ == durationType && n.Tag == "!!int" && n.Value == "0":
		n.Tag, n.Value = "!!str", "0s"
		changed = true
	}
	return changed
}
