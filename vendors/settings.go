package vendors

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/tokenbroker/tokenbroker/vendors/budget"
)

// Settings are trusted, operator-set values by name (docs/design.md, Vendors).
// Map-valued settings such as extra_params are flattened to
// "extra_params.<key>".
type Settings map[string]string

// Overlay returns s with o's values on top (a profile over its vendor).
func (s Settings) Overlay(o Settings) Settings {
	out := make(Settings, len(s)+len(o))
	for k, v := range s {
		out[k] = v
	}
	for k, v := range o {
		out[k] = v
	}
	return out
}

// String returns the setting or def when unset.
func (s Settings) String(key, def string) string {
	if v, ok := s[key]; ok && v != "" {
		return v
	}
	return def
}

// Duration parses a Go duration setting, or returns def when unset.
func (s Settings) Duration(key string, def time.Duration) (time.Duration, error) {
	v, ok := s[key]
	if !ok || v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, &ConfigError{Setting: key, Reason: fmt.Sprintf("%q is not a non-negative Go duration such as 90s or 1h", v)}
	}
	return d, nil
}

// Float parses a non-negative number setting, or returns def when unset.
func (s Settings) Float(key string, def float64) (float64, error) {
	v, ok := s[key]
	if !ok || v == "" {
		return def, nil
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, &ConfigError{Setting: key, Reason: fmt.Sprintf("%q is not a non-negative number such as 10 or 0.5", v)}
	}
	return f, nil
}

// Int parses a non-negative integer setting, or returns def when unset.
func (s Settings) Int(key string, def int) (int, error) {
	v, ok := s[key]
	if !ok || v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 0 {
		return 0, &ConfigError{Setting: key, Reason: fmt.Sprintf("%q is not a non-negative whole number", v)}
	}
	return n, nil
}

// Map returns the flattened map setting prefix ("extra_params") as a map.
func (s Settings) Map(prefix string) map[string]string {
	var out map[string]string
	for k, v := range s {
		if rest, ok := strings.CutPrefix(k, prefix+"."); ok {
			if out == nil {
				out = map[string]string{}
			}
			out[rest] = v
		}
	}
	return out
}

// Common settings' defaults (docs/design.md, Token semantics and Vendors).
const (
	DefaultTimeout     = 10 * time.Second
	DefaultNegativeTTL = 10 * time.Second
)

// Timeout is the setting timeout: how long one fetch (its retries
// included) may take.
func (s Settings) Timeout() time.Duration {
	d, err := s.Duration("timeout", DefaultTimeout)
	if err != nil {
		return DefaultTimeout
	}
	return d
}

// NegativeTTL is how long rejected credentials are remembered.
func (s Settings) NegativeTTL() time.Duration {
	d, err := s.Duration("negative_ttl", DefaultNegativeTTL)
	if err != nil {
		return DefaultNegativeTTL
	}
	return d
}

// MaxRequestsPerSecond is the setting max_requests_per_second: the
// fleet-wide budget of token requests per second to the vendor (package
// vendors/budget); 0, the default, is unlimited.
func (s Settings) MaxRequestsPerSecond() float64 {
	f, _ := s.Float("max_requests_per_second", 0)
	return f
}

// Burst is the setting burst: how many token requests may go to the vendor
// at once after a quiet spell; 0 or unset means 1, so requests are spaced
// evenly and no second sees more than max_requests_per_second.
func (s Settings) Burst() int {
	n, _ := s.Int("burst", 0)
	return max(n, 1)
}

// MaxConcurrentRequests is the setting max_concurrent_requests: how many
// token requests one replica may have in flight to the vendor; 0, the
// default, is unlimited.
func (s Settings) MaxConcurrentRequests() int {
	n, _ := s.Int("max_concurrent_requests", 0)
	return n
}

// Limits are the vendor protection settings for a budget.Limiter.
func (s Settings) Limits() budget.Limits {
	return budget.Limits{
		RatePerSecond: s.MaxRequestsPerSecond(),
		Burst:         s.Burst(),
		MaxConcurrent: s.MaxConcurrentRequests(),
	}
}

// Validate checks the common settings' syntax; the config loader calls it
// at startup so a typo fails fast.
func (s Settings) Validate() error {
	for _, k := range []string{"default_ttl", "negative_ttl", "timeout"} {
		if _, err := s.Duration(k, 0); err != nil {
			return err
		}
	}
	if _, err := s.Float("max_requests_per_second", 0); err != nil {
		return err
	}
	for _, k := range []string{"burst", "max_concurrent_requests"} {
		if _, err := s.Int(k, 0); err != nil {
			return err
		}
	}
	if (s["tls_client_cert"] == "") != (s["tls_client_key"] == "") {
		return &ConfigError{Setting: "tls_client_cert", Reason: "tls_client_cert and tls_client_key go together"}
	}
	return nil
}
