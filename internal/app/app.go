// Package app wires a tokenbroker server from its configuration: vendor
// settings and profiles into the service, the store, and the listeners.
// cmd/server parses flags and calls it; integration tests start servers
// through it too.
package app

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tokenbroker/tokenbroker/config"
	"github.com/tokenbroker/tokenbroker/internal/filewatch"
	"github.com/tokenbroker/tokenbroker/internal/keypair"
	"github.com/tokenbroker/tokenbroker/secret"
	"github.com/tokenbroker/tokenbroker/server"
	"github.com/tokenbroker/tokenbroker/service"
	"github.com/tokenbroker/tokenbroker/store"
	"github.com/tokenbroker/tokenbroker/store/sealed"
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
	// Load reads the configuration again for a reload; nil means there is
	// nothing to reload (no configuration file).
	Load func() (*config.Config, error)
	// ConfigFile is watched: a change reloads (with Load).
	ConfigFile string
	// ReloadSignals asks for a reload at each value (SIGHUP).
	ReloadSignals <-chan os.Signal
}

// App is a configured, listening server.
type App struct {
	Server  *server.Server
	Service *service.Service
	log     *slog.Logger
	opts    Options
	closers []func()
	// ops is the operations side: metrics, health, tracing (ops.go).
	ops *ops

	// config is the configuration generation in service (reload.go); reloadMu
	// serialises reloads.
	config   atomic.Pointer[configGeneration]
	reloadMu sync.Mutex
	// listenerTLS is the listeners' TLS configuration and certificate the
	// server certificate, reread when its files change (nil without TLS).
	listenerTLS *tls.Config
	certificate *keypair.Reloader
	// sealer gets the new keyring at a reload (nil unless Redis values
	// are sealed).
	sealer *sealed.Store
	// localFingerprintKey is the random cache-key HMAC key of a
	// process-local store, kept across reloads.
	localFingerprintKey []byte
	// keySources are the JWT issuers' key sources, kept across reloads
	// (workload.go).
	keySources keySources
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
	a := &App{log: opts.Logger, opts: opts}
	var err error
	if a.listenerTLS, err = a.serverTLS(cfg.TLS); err != nil {
		return nil, err
	}
	g, err := a.build(cfg, nil)
	if err != nil {
		return nil, err
	}
	a.config.Store(g)
	svcCfg := g.serviceConfig
	svcCfg.Logger = opts.Logger
	st, leases, closeStore, err := buildStore(ctx, cfg, opts.Logger)
	if err != nil {
		return nil, err
	}
	a.closers = append(a.closers, closeStore)
	if sc, ok := st.(*sharedCache); ok && g.ring != nil {
		a.sealer = sc.sealer
	}
	svcCfg.Store, svcCfg.Leases = st, leases
	// The vendors' request budgets are shared by the fleet through Redis
	// when there is one, and kept in this process otherwise.
	var shared budget.Shared
	if b, ok := leases.(budget.Shared); ok {
		shared = b
	}
	svcCfg.Budget = budget.New(shared, opts.Logger)
	svcCfg.Misses = budget.NewClientLimiter(shared, opts.Logger)
	if err := a.instrument(ctx, &svcCfg, cfg); err != nil {
		a.Close()
		return nil, err
	}
	if err := a.configureHealth(&svcCfg, st, cfg); err != nil {
		a.Close()
		return nil, err
	}
	a.ops.setGeneration(g.number)
	a.Service = service.New(svcCfg)
	a.Service.Use(g.service)
	a.closers = append(a.closers, a.Service.Close)

	sopts := server.Options{
		GRPCAddr:      cfg.GRPCAddr,
		HTTPAddr:      cfg.HTTPAddr,
		Service:       a.Service,
		Logger:        opts.Logger,
		ShutdownDelay: g.shutdownDelay,
	}
	// Operations (logs, metrics, health) wrap security (TLS, caller
	// authentication): the access log sees the principal auth found.
	if err := a.configureOps(&sopts, cfg, opts); err != nil {
		a.Close()
		return nil, err
	}
	if err := a.configureSecurity(&sopts, cfg); err != nil {
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

// Run serves until ctx is done, then shuts down gracefully (server.Serve).
// Meanwhile it reloads the configuration on each ReloadSignals value and
// when a watched file changes.
func (a *App) Run(ctx context.Context) error {
	defer a.Close()
	reloadCtx, stopReloads := context.WithCancel(ctx)
	var reloads sync.WaitGroup
	defer reloads.Wait()
	defer stopReloads()
	if a.opts.Load != nil {
		reloads.Go(func() {
			filewatch.Run(reloadCtx, filewatch.Options{Paths: a.watchedFiles}, func() { _ = a.Reload("file changed") })
		})
	}
	if a.opts.ReloadSignals != nil {
		reloads.Go(func() {
			for {
				select {
				case <-reloadCtx.Done():
					return
				case sig := <-a.opts.ReloadSignals:
					_ = a.Reload(sig.String())
				}
			}
		})
	}
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
		// Reloadable like the other limits.
		MissesPerMinute: cfg.Limits.MissesPerMinute,
		MissBurst:       cfg.Limits.MissBurst,
		MaxClientShare:  cfg.Limits.MaxClientShare,
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
		if err := vendors.CheckCredentialNames(info, p.Credentials); err != nil {
			return out, fmt.Errorf("profiles.%s.%w", name, err)
		}
		if err := vendors.CheckParamNames(info, p.Params); err != nil {
			return out, fmt.Errorf("profiles.%s.%w", name, err)
		}
		s, err := settingsFor("profiles."+name+".settings", p.Settings, info)
		if err != nil {
			return out, err
		}
		if err := checkAllowParams(name, p, info, out.VendorSettings[p.Vendor].Overlay(s)); err != nil {
			return out, err
		}
		out.Profiles[name] = service.Profile{
			Vendor:      p.Vendor,
			Credentials: secret.Map(p.Credentials),
			Params:      p.Params,
			AllowParams: p.AllowParams,
			Settings:    s,
			KeepWarm:    p.KeepWarm,
		}
	}
	if err := checkKeepWarm(cfg); err != nil {
		return out, err
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

// checkAllowParams checks a profile's allow_params: each names a param of
// its vendor that the profile does not fix, and a param that chooses where
// the request goes (vendors.TargetParams) comes with the values it may
// take (docs/design.md, Security model).
func checkAllowParams(name string, p config.Profile, info vendors.Info, set vendors.Settings) error {
	targets := vendors.TargetParams(info, set)
	for _, param := range slices.Sorted(maps.Keys(p.AllowParams)) {
		field := "profiles." + name + ".allow_params." + param
		if !slices.Contains(info.Params, param) {
			return fmt.Errorf("%s: not a parameter of vendor %s (its params: %s)", field, info.ID, strings.Join(info.Params, ", "))
		}
		if _, fixed := p.Params[param]; fixed {
			return fmt.Errorf("%s: the profile fixes this param in params.%s", field, param)
		}
		values := p.AllowParams[param]
		if values == nil && slices.Contains(targets, param) {
			return fmt.Errorf("%s: this param chooses where the vendor request (with the profile's credentials) is sent; list the values callers may choose", field)
		}
		for _, v := range values {
			if v == "" {
				return fmt.Errorf("%s: an empty value", field)
			}
		}
	}
	return nil
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
