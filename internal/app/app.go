// Package app wires a tokenbroker server from its configuration: vendor
// settings and profiles into the service, the store, and the listeners.
// cmd/server parses flags and calls it; integration tests start servers
// through it too.
package app

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/tokenbroker/tokenbroker/config"
	"github.com/tokenbroker/tokenbroker/secret"
	"github.com/tokenbroker/tokenbroker/server"
	"github.com/tokenbroker/tokenbroker/service"
	"github.com/tokenbroker/tokenbroker/store"
	"github.com/tokenbroker/tokenbroker/vendors"
	"github.com/tokenbroker/tokenbroker/vendors/budget"
)

// Options are what cmd/server decides beyond the config file.
type Options struct {
	Config *config.Config
	Logger *slog.Logger
	// Registry defaults to every shipped vendor.
	Registry *vendors.Registry
	// InsecureAllowUnauthenticated lets a server without configured
	// clients listen on non-loopback addresses.
	InsecureAllowUnauthenticated bool
}

// App is a configured, listening server.
type App struct {
	Server  *server.Server
	Service *service.Service
	log     *slog.Logger
	closers []func()
	// ops is the operations side: metrics, health, tracing (ops.go).
	ops *ops
}

// New builds everything and opens the listeners; Run serves.
func New(ctx context.Context, opts Options) (*App, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Registry == nil {
		opts.Registry = vendors.Default()
	}
	cfg := opts.Config
	a := &App{log: opts.Logger}
	svcCfg, err := ServiceConfig(cfg, opts.Registry)
	if err != nil {
		return nil, err
	}
	svcCfg.Logger = opts.Logger
	st, leases, closeStore, err := buildStore(ctx, cfg, opts.Logger)
	if err != nil {
		return nil, err
	}
	a.closers = append(a.closers, closeStore)
	svcCfg.Store, svcCfg.Leases = st, leases
	// The vendors' request budgets are shared by the fleet through Redis
	// when there is one, and kept in this process otherwise.
	var shared budget.Shared
	if b, ok := leases.(budget.Shared); ok {
		shared = b
	}
	svcCfg.Budget = budget.New(shared, opts.Logger)
	if err := a.instrument(ctx, &svcCfg, cfg); err != nil {
		a.Close()
		return nil, err
	}
	a.Service = service.New(svcCfg)
	a.closers = append(a.closers, a.Service.Close)

	sopts := server.Options{
		GRPCAddr: cfg.GRPCAddr,
		HTTPAddr: cfg.HTTPAddr,
		Service:  a.Service,
		Logger:   opts.Logger,
	}
	// Operations (logs, metrics, health) wrap security (TLS, caller
	// authentication): the access log sees the principal auth found.
	if err := a.configureOps(&sopts, cfg, opts); err != nil {
		a.Close()
		return nil, err
	}
	if err := a.configureSecurity(&sopts, cfg, opts); err != nil {
		a.Close()
		return nil, err
	}
	srv, err := server.New(sopts)
	if err != nil {
		a.Close()
		return nil, err
	}
	a.Server = srv
	return a, nil
}

// Run serves until ctx is done, then shuts down gracefully.
func (a *App) Run(ctx context.Context) error {
	defer a.Close()
	a.Server.SetServing(true)
	return a.Server.Serve(ctx)
}

// Close releases what New opened (Run calls it).
func (a *App) Close() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
	a.closers = nil
}

// ServiceConfig checks the vendor settings and profiles against the vendor
// registry and turns them into the service's configuration. Every mistake
// is reported with the config key it is about.
func ServiceConfig(cfg *config.Config, reg *vendors.Registry) (service.Config, error) {
	out := service.Config{
		Registry:       reg,
		VendorSettings: map[string]vendors.Settings{},
		Profiles:       map[string]service.Profile{},
		RefreshAhead:   cfg.Service.RefreshAhead,
	}
	for id, raw := range cfg.Vendors {
		st, ok := reg.Lookup(id)
		if !ok {
			return out, fmt.Errorf("vendors.%s: unknown vendor id", id)
		}
		s, err := settingsFor("vendors."+id, raw, st.Info())
		if err != nil {
			return out, err
		}
		out.VendorSettings[id] = s
	}
	for name, p := range cfg.Profiles {
		st, ok := reg.Lookup(p.Vendor)
		if !ok {
			return out, fmt.Errorf("profiles.%s.vendor: unknown vendor id %q", name, p.Vendor)
		}
		info := st.Info()
		for k := range p.Credentials {
			if !slices.Contains(info.RequiredCredentials, k) && !slices.Contains(info.OptionalCredentials, k) {
				return out, fmt.Errorf("profiles.%s.credentials.%s: not a credential of vendor %s", name, k, p.Vendor)
			}
		}
		for k := range p.Params {
			if !slices.Contains(info.Params, k) {
				return out, fmt.Errorf("profiles.%s.params.%s: not a parameter of vendor %s", name, k, p.Vendor)
			}
		}
		s, err := settingsFor("profiles."+name+".settings", p.Settings, info)
		if err != nil {
			return out, err
		}
		out.Profiles[name] = service.Profile{
			Vendor:      p.Vendor,
			Credentials: secret.Map(p.Credentials),
			Params:      p.Params,
			Settings:    s,
		}
	}
	var err error
	// An explicit 0s means none, which service.Config spells negative (its
	// zero value means the default).
	if out.ForceRefreshInterval, err = parseDuration("service.force_refresh_interval", cfg.Service.ForceRefreshInterval); err != nil {
		return out, err
	} else if out.ForceRefreshInterval == 0 && cfg.Service.ForceRefreshInterval != "" {
		out.ForceRefreshInterval = -1
	}
	if out.DefaultMinTTL, err = parseDuration("service.default_min_ttl", cfg.Service.DefaultMinTTL); err != nil {
		return out, err
	} else if out.DefaultMinTTL > service.MaxMinTTL {
		return out, fmt.Errorf("service.default_min_ttl: %s is more than %s", out.DefaultMinTTL, service.MaxMinTTL)
	} else if out.DefaultMinTTL == 0 && cfg.Service.DefaultMinTTL != "" {
		out.DefaultMinTTL = -1
	}
	out.FingerprintKey, err = fingerprintKey(cfg)
	return out, err
}

func settingsFor(field string, raw config.Settings, info vendors.Info) (vendors.Settings, error) {
	flat, err := raw.Flatten(field)
	if err != nil {
		return nil, err
	}
	for k := range flat {
		if !info.AllowsSetting(k) {
			return nil, fmt.Errorf("%s.%s: not a setting of vendor %s", field, k, info.ID)
		}
	}
	s := vendors.Settings(flat)
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	if u := s["token_url"]; u != "" {
		// Templates are checked when resolved; here only the scheme rule.
		if err := vendors.CheckTokenURL(u); err != nil && !containsPlaceholder(u) {
			return nil, fmt.Errorf("%s.token_url: %w", field, err)
		}
	}
	return s, nil
}

func containsPlaceholder(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '{' {
			return true
		}
	}
	return false
}

func parseDuration(field, v string) (time.Duration, error) {
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%s: %q is not a Go duration such as 5s", field, v)
	}
	return d, nil
}

// fingerprintKey derives the cache-key HMAC key. Replicas sharing Redis
// derive it from the last (oldest) encryption key, so they agree without
// another secret, and so that rotating in a new key at the front keeps
// every cache key: during a rolling rotation replicas with [new, old] and
// with [old] share entries and locks, and the values sealed with old still
// open. Only dropping the oldest key moves the cache to new keys (one miss
// per token). A process-local store uses a random key.
func fingerprintKey(cfg *config.Config) ([]byte, error) {
	if keys := cfg.Cache.EncryptionKeys; len(keys) > 0 {
		mac := hmac.New(sha256.New, []byte(keys[len(keys)-1].Reveal()))
		mac.Write([]byte("tokenbroker cache fingerprint v1"))
		return mac.Sum(nil), nil
	}
	if cfg.Cache.Redis != nil {
		// allow_plaintext without keys: replicas still must agree.
		sum := sha256.Sum256([]byte("tokenbroker cache fingerprint v1 (no encryption key)"))
		return sum[:], nil
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	return key, nil
}

// buildStore returns the configured store and leaser: the in-process
// memory store, or with cache.redis the shared cache (cache.go): L1 unless
// cache.l1_disabled, over sealed values in Redis.
func buildStore(ctx context.Context, cfg *config.Config, logger *slog.Logger) (store.Store, store.Leaser, func(), error) {
	if cfg.Cache.Redis == nil {
		return store.NewMemory(cfg.Cache.L1MaxEntries), nil, func() {}, nil
	}
	c, err := buildSharedCache(ctx, cfg, logger)
	if err != nil {
		return nil, nil, nil, err
	}
	return c, c.leases, c.close, nil
}
