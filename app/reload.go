package app

import (
	"crypto/tls"
	"errors"
	"fmt"
	"reflect"
	"time"

	"google.golang.org/grpc"

	"github.com/tokenbroker/tokenbroker/auth"
	"github.com/tokenbroker/tokenbroker/config"
	"github.com/tokenbroker/tokenbroker/service"
	"github.com/tokenbroker/tokenbroker/store/sealed"
)

// configGeneration is one configuration as the running server uses it, built
// whole and validated before it replaces the previous one: a call loads
// it once (unaryPolicy) and is authorized and served by it, so it sees
// the old or the new configuration, never a mix, and finishes on the one
// it started with.
type configGeneration struct {
	number uint64
	cfg    *config.Config
	// service is the profiles, vendor settings, fingerprint key and
	// tuning.
	service service.Snapshot
	// policy is nil when no caller authentication is configured; unary
	// and stream are its interceptors.
	policy *auth.Policy
	unary  grpc.UnaryServerInterceptor
	stream grpc.StreamServerInterceptor
	// identity verifies workload identities (JWTs, X.509-SVIDs).
	identity workloadIdentity
	// tls is the handshake configuration (nil without tls.cert_file).
	tls *tls.Config
	// ring is the encryption keyring (nil for the memory store or
	// plaintext).
	ring *sealed.Keyring
	// shutdownDelay is shutdown_delay.
	shutdownDelay time.Duration
	// serviceConfig is what service was prepared from.
	serviceConfig service.Config
}

// build checks cfg as a whole, exactly as at startup, and prepares its
// generation; prev is the generation it would replace (nil at startup).
func (a *App) build(cfg *config.Config, prev *configGeneration) (*configGeneration, error) {
	g := &configGeneration{number: 1, cfg: cfg, shutdownDelay: cfg.ShutdownDelay}
	var err error
	if g.serviceConfig, err = ServiceConfig(cfg, a.opts.Registry); err != nil {
		return nil, err
	}
	if cfg.Cache.Redis == nil {
		// Process-local cache: one random key for the life of the
		// process, or a reload would orphan every cached token.
		if a.localFingerprintKey == nil {
			a.localFingerprintKey = g.serviceConfig.FingerprintKey
		}
		g.serviceConfig.FingerprintKey = a.localFingerprintKey
	} else if len(cfg.Cache.EncryptionKeys) > 0 {
		if g.ring, err = encryptionKeys(cfg.Cache); err != nil {
			return nil, err
		}
	}
	clientCAs, err := loadClientCAs(cfg.TLS)
	if err != nil {
		return nil, err
	}
	if g.identity.bundles, g.identity.bundleCAs, err = spiffeBundles(cfg); err != nil {
		return nil, err
	}
	if g.identity.jwt, err = a.jwtVerifier(cfg); err != nil {
		return nil, err
	}
	var prevPolicy *auth.Policy
	if prev != nil {
		g.number, prevPolicy = prev.number+1, prev.policy
	}
	if g.policy, err = callerPolicy(cfg, a.opts, clientCAs, g.identity, prevPolicy, a.log); err != nil {
		return nil, err
	}
	if g.policy != nil {
		g.unary, g.stream = g.policy.UnaryInterceptor(), g.policy.StreamInterceptor()
	}
	g.tls = handshakeTLS(a.certificate, clientCAs, g.identity.bundleCAs)
	g.service = service.NewSnapshot(g.serviceConfig)
	return g, nil
}

// errRestartNeeded marks a reload refused because the file changes what
// only a restart can.
var errRestartNeeded = errors.New("needs a restart")

// restartNeeded names the first setting that differs between the running
// and the new configuration and that a running server cannot change: its
// listeners, its Redis connection and cache layout, its TLS files (their
// contents are reloaded, not their paths) and whether Redis values are
// sealed at all.
func restartNeeded(running, next *config.Config) error {
	checks := []struct {
		key     string
		changed bool
	}{
		{"grpc_addr", running.GRPCAddr != next.GRPCAddr},
		{"http_addr", running.HTTPAddr != next.HTTPAddr},
		{"cache.redis", !reflect.DeepEqual(running.Cache.Redis, next.Cache.Redis)},
		{"cache.allow_plaintext", running.Cache.AllowPlaintext != next.Cache.AllowPlaintext},
		{"cache.encryption_keys (none to some or back)", (len(running.Cache.EncryptionKeys) == 0) != (len(next.Cache.EncryptionKeys) == 0)},
		{"cache.l1_max_entries", running.Cache.L1MaxEntries != next.Cache.L1MaxEntries},
		{"cache.l1_disabled", running.Cache.L1Disabled != next.Cache.L1Disabled},
		{"cache.lease_ttl", running.Cache.LeaseTTL != next.Cache.LeaseTTL},
		{"tls.cert_file", running.TLS.CertFile != next.TLS.CertFile},
		{"tls.key_file", running.TLS.KeyFile != next.TLS.KeyFile},
		{"events", !reflect.DeepEqual(running.Events, next.Events)},
	}
	for _, c := range checks {
		if c.changed {
			return fmt.Errorf("%s changed, which %w", c.key, errRestartNeeded)
		}
	}
	return nil
}

// Reload results, the values of tokenbroker_config_reloads_total{result}.
const (
	reloadOK              = "ok"
	reloadInvalid         = "invalid"
	reloadRestartRequired = "restart_required"
)

// Reload reads the configuration again (Options.Load) and, when the whole
// of it is valid and needs no restart, makes it the one new calls get:
// profiles, clients, allow lists, vendor settings, limits, service tuning,
// the access log policy, encryption keys, the client CA and
// shutdown_delay. Otherwise nothing of the file is applied, one log line
// says why, and the previous configuration keeps serving. why says what triggered it, for the log.
func (a *App) Reload(why string) error {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	if a.opts.Load == nil {
		a.log.Info("configuration reload: no configuration file to read", "trigger", why)
		return nil
	}
	prev := a.config.Load()
	result, err := a.reload(prev)
	a.ops.metrics.ConfigReload(result)
	switch result {
	case reloadOK:
		g := a.config.Load()
		a.ops.setGeneration(g.number)
		a.log.Info("configuration reloaded", "trigger", why, "generation", g.number)
	case reloadRestartRequired:
		a.log.Error("configuration reload refused: "+err.Error()+"; nothing in the file was applied, the previous configuration keeps serving until the restart", "trigger", why, "generation", prev.number)
	default:
		a.log.Error("configuration reload rejected, the previous configuration keeps serving: "+err.Error(), "trigger", why, "generation", prev.number)
	}
	return err
}

func (a *App) reload(prev *configGeneration) (string, error) {
	cfg, err := a.opts.Load()
	if err != nil {
		return reloadInvalid, err
	}
	if err := restartNeeded(prev.cfg, cfg); err != nil {
		return reloadRestartRequired, err
	}
	g, err := a.build(cfg, prev)
	if err != nil {
		return reloadInvalid, err
	}
	if a.sealer != nil && g.ring != nil {
		a.sealer.SetKeyring(g.ring)
	}
	a.Service.Use(g.service)
	a.ops.access.Set(cfg.AccessLog.HitsOneIn())
	a.config.Store(g)
	a.Server.SetShutdownDelay(g.shutdownDelay)
	return reloadOK, nil
}

// watchedFiles are the files whose change triggers a reload: the
// configuration file, its file: secrets and the client CA. (The server
// certificate and vendors' client certificates are reread by the TLS
// handshakes themselves: internal/keypair.)
func (a *App) watchedFiles() []string {
	g := a.config.Load()
	var paths []string
	if a.opts.ConfigFile != "" {
		paths = append(paths, a.opts.ConfigFile)
	}
	paths = append(paths, g.cfg.SecretFiles()...)
	if g.cfg.TLS.ClientCAFile != "" {
		paths = append(paths, g.cfg.TLS.ClientCAFile)
	}
	paths = append(paths, workloadFiles(g.cfg)...)
	return paths
}
