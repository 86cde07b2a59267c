package config

import (
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestDefaults: what a key the file leaves out, or sets to the zero that
// docs/design.md documents as "the default", comes out as; and a zero
// that is a value of its key is kept.
func TestDefaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		yaml string
		got  func(*Config) any
		want any
	}{
		{"grpc_addr", "", func(c *Config) any { return c.GRPCAddr }, "127.0.0.1:9090"},
		{"http_addr", "", func(c *Config) any { return c.HTTPAddr }, "127.0.0.1:8080"},
		{"shutdown_delay absent", "", func(c *Config) any { return c.ShutdownDelay }, 5 * time.Second},
		{"shutdown_delay 0s", "shutdown_delay: 0s\n", func(c *Config) any { return c.ShutdownDelay }, time.Duration(0)},
		{"shutdown_delay bare 0", "shutdown_delay: 0\n", func(c *Config) any { return c.ShutdownDelay }, time.Duration(0)},
		{"shutdown_delay set", "shutdown_delay: 1m30s\n", func(c *Config) any { return c.ShutdownDelay }, 90 * time.Second},
		{"cache.l1_max_entries absent", "", func(c *Config) any { return c.Cache.L1MaxEntries }, 100000},
		{"cache.l1_max_entries 0", "cache: {l1_max_entries: 0}\n", func(c *Config) any { return c.Cache.L1MaxEntries }, 100000},
		{"cache.lease_ttl absent", "", func(c *Config) any { return c.Cache.LeaseTTL }, 2 * time.Second},
		{"cache.lease_ttl 0s", "cache: {lease_ttl: 0s}\n", func(c *Config) any { return c.Cache.LeaseTTL }, 2 * time.Second},
		{"cache.lease_ttl set", "cache: {lease_ttl: 500ms}\n", func(c *Config) any { return c.Cache.LeaseTTL }, 500 * time.Millisecond},
		{"service.default_min_ttl absent", "", func(c *Config) any { return c.Service.DefaultMinTTL }, 30 * time.Second},
		{"service.default_min_ttl 0s", "service: {default_min_ttl: 0s}\n", func(c *Config) any { return c.Service.DefaultMinTTL }, time.Duration(0)},
		{"service.force_refresh_interval absent", "", func(c *Config) any { return c.Service.ForceRefreshInterval }, 5 * time.Second},
		{"service.force_refresh_interval 0s: never", "service: {force_refresh_interval: 0s}\n", func(c *Config) any { return c.Service.ForceRefreshInterval }, time.Duration(0)},
		{"service.refresh_ahead absent", "", func(c *Config) any { return c.Service.RefreshAhead }, 0.8},
		{"service.refresh_ahead 0", "service: {refresh_ahead: 0}\n", func(c *Config) any { return c.Service.RefreshAhead }, 0.8},
		{"service.refresh_ahead 1: off", "service: {refresh_ahead: 1}\n", func(c *Config) any { return c.Service.RefreshAhead }, 1.0},
		{"service.refresh_ahead above 1: off, as documented before", "service: {refresh_ahead: 1.5}\n", func(c *Config) any { return c.Service.RefreshAhead }, 1.0},
		{"service.keep_warm_max absent", "", func(c *Config) any { return c.Service.KeepWarmMax }, 100},
		{"service.keep_warm_max 0", "service: {keep_warm_max: 0}\n", func(c *Config) any { return c.Service.KeepWarmMax }, 100},
		{"limits.refresh_per_minute", "limits: {refresh_per_minute: 0}\n", func(c *Config) any { return c.Limits.RefreshPerMinute }, 60},
		{"limits.refresh_burst", "", func(c *Config) any { return c.Limits.RefreshBurst }, 30},
		{"limits.misses_per_minute", "", func(c *Config) any { return c.Limits.MissesPerMinute }, 600},
		{"limits.miss_burst", "limits: {miss_burst: 0}\n", func(c *Config) any { return c.Limits.MissBurst }, 300},
		{"limits.max_client_share absent", "", func(c *Config) any { return c.Limits.MaxClientShare }, 0.5},
		{"limits.max_client_share 0", "limits: {max_client_share: 0}\n", func(c *Config) any { return c.Limits.MaxClientShare }, 0.5},
		{"limits.max_client_share 1: no bound", "limits: {max_client_share: 1}\n", func(c *Config) any { return c.Limits.MaxClientShare }, 1.0},
		{"access_log.cache_hits", "", func(c *Config) any { return c.AccessLog.CacheHits }, "all"},
		{"auth.jwt_issuers[].max_token_lifetime absent", "auth: {jwt_issuers: [{issuer: https://i, audiences: [a], discovery: true}]}\n",
			func(c *Config) any { return c.Auth.JWTIssuers[0].MaxTokenLifetime }, 24 * time.Hour},
		{"auth.jwt_issuers[].max_token_lifetime set", "auth: {jwt_issuers: [{issuer: https://i, audiences: [a], discovery: true, max_token_lifetime: 1h}]}\n",
			func(c *Config) any { return c.Auth.JWTIssuers[0].MaxTokenLifetime }, time.Hour},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := Parse([]byte(tc.yaml), nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := tc.got(c); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// TestDefaultsIsAnEmptyFile: Load without a file, Parse of an empty one
// and Defaults agree.
func TestDefaultsIsAnEmptyFile(t *testing.T) {
	t.Parallel()
	parsed, err := Parse(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := Load("", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(parsed, Defaults()) || !reflect.DeepEqual(loaded, Defaults()) {
		t.Errorf("Parse(\"\") = %+v\nLoad(\"\") = %+v\nDefaults() = %+v", parsed, loaded, Defaults())
	}
}

// TestRanges: each key outside its range is refused with an error that
// names the key, says the range and what the file said.
func TestRanges(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		yaml    string
		wantErr string // "" : accepted
	}{
		{"shutdown_delay negative", "shutdown_delay: -1s\n", "shutdown_delay: must not be negative, got -1s"},
		{"shutdown_delay not a duration", "shutdown_delay: soon\n", `shutdown_delay: "soon" is not a Go duration`},
		{"shutdown_delay without a unit", "shutdown_delay: 5\n", `shutdown_delay: "5" is not a Go duration`},
		{"cache.lease_ttl lowest", "cache: {lease_ttl: 300ms}\n", ""},
		{"cache.lease_ttl highest", "cache: {lease_ttl: 1m}\n", ""},
		{"cache.lease_ttl too short", "cache: {lease_ttl: 299ms}\n", "cache.lease_ttl: must be in 300ms..1m0s, got 299ms"},
		{"cache.lease_ttl too long", "cache: {lease_ttl: 61s}\n", "cache.lease_ttl: must be in 300ms..1m0s, got 1m1s"},
		{"cache.lease_ttl negative", "cache: {lease_ttl: -2s}\n", "cache.lease_ttl: must be in 300ms..1m0s, got -2s"},
		{"cache.l1_max_entries negative", "cache: {l1_max_entries: -1}\n", "cache.l1_max_entries: must not be negative (0: the default), got -1"},
		{"cache.redis.db negative", "cache: {redis: {addrs: [a:1], db: -1}, allow_plaintext: true}\n", "cache.redis.db: must not be negative, got -1"},
		{"cache.redis.db in a Cluster", "cache: {redis: {addrs: [a:1, b:1], db: 2}, allow_plaintext: true}\n", "cache.redis.db: a Redis Cluster (several addrs) has only database 0"},
		{"cache.redis.db with Sentinels", "cache: {redis: {addrs: [a:1, b:1], master_name: m, db: 2}, allow_plaintext: true}\n", ""},
		{"service.default_min_ttl 24h", "service: {default_min_ttl: 24h}\n", ""},
		{"service.default_min_ttl over 24h", "service: {default_min_ttl: 25h}\n", "service.default_min_ttl: must be in 0s..24h0m0s, got 25h0m0s"},
		{"service.default_min_ttl negative", "service: {default_min_ttl: -1s}\n", "service.default_min_ttl: must be in 0s..24h0m0s, got -1s"},
		{"service.force_refresh_interval negative", "service: {force_refresh_interval: -5s}\n", "service.force_refresh_interval: must not be negative, got -5s"},
		{"service.force_refresh_interval not a duration", "service: {force_refresh_interval: 5}\n", `service.force_refresh_interval: "5" is not a Go duration`},
		{"service.refresh_ahead small", "service: {refresh_ahead: 0.001}\n", ""},
		{"service.refresh_ahead negative", "service: {refresh_ahead: -0.1}\n", "service.refresh_ahead: must be in (0, 1] (1 or more: no refresh ahead), got -0.1"},
		{"service.keep_warm_max negative", "service: {keep_warm_max: -1}\n", "service.keep_warm_max: must not be negative (0: the default), got -1"},
		{"service.keep_warm_max reached", "service: {keep_warm_max: 1}\nprofiles: {a: {vendor: v, keep_warm: true}}\n", ""},
		{"service.keep_warm_max exceeded", "service: {keep_warm_max: 1}\nprofiles: {a: {vendor: v, keep_warm: true}, b: {vendor: v, keep_warm: true}}\n",
			"profiles: 2 profiles have keep_warm, more than service.keep_warm_max (1)"},
		{"limits.refresh_per_minute negative", "limits: {refresh_per_minute: -1}\n", "limits.refresh_per_minute: must not be negative (0: the default), got -1"},
		{"limits.refresh_burst negative", "limits: {refresh_burst: -2}\n", "limits.refresh_burst: must not be negative (0: the default), got -2"},
		{"limits.misses_per_minute negative", "limits: {misses_per_minute: -1}\n", "limits.misses_per_minute: must not be negative (0: the default), got -1"},
		{"limits.miss_burst negative", "limits: {miss_burst: -1}\n", "limits.miss_burst: must not be negative (0: the default), got -1"},
		{"limits.max_client_share above 1", "limits: {max_client_share: 1.5}\n", "limits.max_client_share: must be in (0, 1] (1: no bound; 0: the default, 0.5), got 1.5"},
		{"limits.max_client_share negative", "limits: {max_client_share: -0.5}\n", "limits.max_client_share: must be in (0, 1] (1: no bound; 0: the default, 0.5), got -0.5"},
		{"max_token_lifetime negative", "auth: {jwt_issuers: [{issuer: https://i, audiences: [a], discovery: true, max_token_lifetime: -1h}]}\n",
			"auth.jwt_issuers[0].max_token_lifetime: must be positive, got -1h0m0s"},
		{"max_token_lifetime not a duration", "auth: {jwt_issuers: [{issuer: https://i, audiences: [a], discovery: true, max_token_lifetime: forever}]}\n",
			`auth.jwt_issuers[0].max_token_lifetime: "forever" is not a Go duration`},
		{"access_log.sample_one_in above its range", "access_log: {cache_hits: sampled, sample_one_in: 1000001}\n",
			"access_log.sample_one_in: must be in 2..1000000 (one line per that many cache hits), got 1000001"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse([]byte(tc.yaml), nil)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("err = %v, want none", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// TestLoadWith: keys the file leaves out keep the given defaults (--dev's
// shutdown delay of 0), and a key the file sets wins.
func TestLoadWith(t *testing.T) {
	t.Parallel()
	dev := func() *Config {
		d := Defaults()
		d.ShutdownDelay = 0
		return d
	}
	c, err := LoadWith("", nil, dev())
	if err != nil {
		t.Fatal(err)
	}
	if c.ShutdownDelay != 0 {
		t.Fatalf("no file: shutdown_delay %v, want 0s", c.ShutdownDelay)
	}
	path := t.TempDir() + "/tokenbroker.yaml"
	for _, tc := range []struct {
		yaml string
		want time.Duration
	}{
		{"service: {refresh_ahead: 0.5}\n", 0},
		{"shutdown_delay: 3s\n", 3 * time.Second},
	} {
		if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := LoadWith(path, nil, dev())
		if err != nil {
			t.Fatalf("%q: %v", tc.yaml, err)
		}
		if c.ShutdownDelay != tc.want {
			t.Errorf("%q: shutdown_delay %v, want %v", tc.yaml, c.ShutdownDelay, tc.want)
		}
	}
}
