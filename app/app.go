// Package app wires a tokenbroker server from its configuration: vendor
// settings and profiles into the service, the store, and the listeners.
// cmd/server parses flags and calls it; integration tests start servers
// through it too. Package config checks the file's values; validate.go
// adds the checks that need the vendor registry, and keys.go derives the
// keys (docs/design.md, What each package owns).
package app

import (
	"context"
	"crypto/tls"
	"log/slog"
	"maps"
	"os"
	"slices"
	"sync"
	"sync/atomic"

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

// ServiceConfig turns the configuration into the service's, with the
// vendor settings and profiles checked against the vendor registry
// (validate.go). Every mistake is reported with the config key it is
// about.
func ServiceConfig(cfg *config.Config, reg *vendors.Registry) (service.Config, error) {
	out := service.Config{
		Registry:       reg,
		VendorSettings: map[string]vendors.Settings{},
		Profiles:       map[string]service.Profile{},
		// Reloadable tuning, defaulted and range-checked by config.
		DefaultMinTTL:        cfg.Service.DefaultMinTTL,
		ForceRefreshInterval: cfg.Service.ForceRefreshInterval,
		RefreshAhead:         cfg.Service.RefreshAhead,
		// Reloadable like the other limits.
		MissesPerMinute: cfg.Limits.MissesPerMinute,
		MissBurst:       cfg.Limits.MissBurst,
		MaxClientShare:  cfg.Limits.MaxClientShare,
	}
	// In key order, so that of several mistakes the same one is reported.
	for _, id := range slices.Sorted(maps.Keys(cfg.Vendors)) {
		s, err := vendorSettings(id, cfg.Vendors[id], reg)
		if err != nil {
			return out, err
		}
		out.VendorSettings[id] = s
	}
	for _, name := range slices.Sorted(maps.Keys(cfg.Profiles)) {
		p := cfg.Profiles[name]
		s, err := profileSettings(name, p, reg, out.VendorSettings[p.Vendor])
		if err != nil {
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
	var err error
	out.FingerprintKey, err = fingerprintKey(cfg)
	return out, err
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
