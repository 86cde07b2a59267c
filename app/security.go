package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/http"
	"os"

	"google.golang.org/grpc"

	"github.com/tokenbroker/tokenbroker/auth"
	"github.com/tokenbroker/tokenbroker/config"
	"github.com/tokenbroker/tokenbroker/internal/keypair"
	"github.com/tokenbroker/tokenbroker/server"
	"github.com/tokenbroker/tokenbroker/service"
)

// configureSecurity adds TLS and caller authentication and authorization
// (docs/design.md, Configuration: clients, tls) to the server options, and refuses an
// unauthenticated server on a non-loopback address. What it installs
// delegates to the current generation (reload.go), so a reload can change
// clients, allow lists, limits and the client CA, and a renewed server
// certificate is served without one.
func (a *App) configureSecurity(sopts *server.Options, cfg *config.Config) error {
	authOn := authConfigured(cfg)
	exposed := exposedAddrs(cfg)
	if !authOn && len(exposed) > 0 {
		a.log.Warn("serving without caller authentication on a non-loopback address (--insecure-allow-unauthenticated): anyone who can connect gets tokens", "addrs", exposed)
	}
	tlsCfg := a.listenerTLS
	sopts.TLS = tlsCfg
	// gRPC accepts 16 MiB of metadata by default; bound it like HTTP
	// headers (server.go's MaxHeaderBytes).
	sopts.ServerOptions = append(sopts.ServerOptions, grpc.MaxHeaderListSize(maxMetadataBytes))
	sopts.UnaryInterceptors = append(sopts.UnaryInterceptors, a.unaryPolicy)
	sopts.ServerOptions = append(sopts.ServerOptions, grpc.ChainStreamInterceptor(a.streamPolicy))
	// Outermost, so no other middleware sees a caller's forged certificate
	// header, and the ones that follow see the request the mux sees.
	sopts.HTTPMiddleware = append([]func(http.Handler) http.Handler{a.forwardCertificates}, sopts.HTTPMiddleware...)
	sopts.ForwardHeaders = append(sopts.ForwardHeaders, auth.ForwardedCertHeader)

	if authOn && tlsCfg == nil && len(exposed) > 0 {
		// RFC 6750 section 5.3: bearer credentials need TLS. TLS may end
		// in front of the broker (a mesh sidecar, a load balancer), so
		// this is a warning, not a refusal.
		a.log.Warn("API keys reach this server in clear text on a non-loopback address: set tls.cert_file and tls.key_file unless TLS ends in front of the broker", "addrs", exposed)
	}
	if authOn {
		a.log.Info("caller authentication on", "clients", len(cfg.Clients), "mtls", cfg.TLS.ClientCAFile != "")
	}
	return nil
}

// callerPolicy checks cfg's caller configuration and builds its policy
// (nil when no caller authentication is configured), at startup and at
// every reload alike. prev is the policy it replaces.
func callerPolicy(cfg *config.Config, opts Options, clientCAs *x509.CertPool, ident workloadIdentity, prev *auth.Policy, log *slog.Logger) (*auth.Policy, error) {
	if err := checkExposure(cfg, opts.InsecureAllowUnauthenticated); err != nil {
		return nil, err
	}
	if !authConfigured(cfg) {
		return nil, nil
	}
	if err := checkAllowEntries(cfg, opts.Registry); err != nil {
		return nil, err
	}
	clients := make(map[string]auth.Client, len(cfg.Clients))
	for name, c := range cfg.Clients {
		clients[name] = auth.Client{
			APIKeySHA256: c.APIKeySHA256, CertSubject: c.CertSubject,
			JWTSubject: c.JWTSubject, JWTIssuer: c.JWTIssuer, SPIFFEID: c.SPIFFEID,
			Allow: c.Allow,
		}
	}
	return auth.New(auth.Config{
		Clients:       clients,
		ClientCAs:     clientCAs,
		JWT:           ident.jwt,
		SPIFFEBundles: ident.bundles,
		Limits:        auth.Limits{RefreshPerMinute: cfg.Limits.RefreshPerMinute, RefreshBurst: cfg.Limits.RefreshBurst},
		Internal:      server.InternalTransport,
		Logger:        log,
		Previous:      prev,
	})
}

// unaryPolicy authenticates and authorizes a call under the current
// generation and pins that generation's service configuration to it, so
// the call is checked and served by one configuration.
func (a *App) unaryPolicy(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	g := a.config.Load()
	ctx = service.WithSnapshot(ctx, g.service)
	if g.unary == nil {
		return handler(ctx, req)
	}
	return g.unary(ctx, req, info, handler)
}

// streamPolicy is unaryPolicy for streams (health watches, reflection).
func (a *App) streamPolicy(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	g := a.config.Load()
	if g.stream == nil {
		return handler(srv, ss)
	}
	return g.stream(srv, ss, info, handler)
}

// forwardCertificates passes REST callers' client certificates to the
// interceptor (auth.ForwardCertificates). It removes a caller's own
// ForwardedCertHeader from every request, with or without an auth policy:
// the gateway forwards the header, so a value that got past this point
// would reach gRPC as if this process had set it (docs/design.md,
// Security model).
func (a *App) forwardCertificates(next http.Handler) http.Handler {
	return auth.ForwardCertificates(a.log, next)
}

// maxMetadataBytes bounds a gRPC call's metadata (headers).
const maxMetadataBytes = 64 << 10

// serverTLS returns the listeners' TLS configuration, nil without a
// certificate. The certificate and key are read again when their files
// change (cert-manager renewals, internal/keypair); each handshake gets the
// current generation's configuration, with its client CA pool.
func (a *App) serverTLS(t config.TLS) (*tls.Config, error) {
	if t.CertFile == "" {
		return nil, nil
	}
	pair, err := keypair.Load(t.CertFile, t.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tls.cert_file, tls.key_file: %w", err)
	}
	a.certificate = pair
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return a.config.Load().tls, nil
		},
	}, nil
}

// handshakeTLS is one generation's TLS configuration. Client certificates
// are requested, not verified by TLS: the auth package verifies them on
// every call, so a bad one gets UNAUTHENTICATED and an audit line, and
// API-key callers connect without one. ClientCAs tells clients which
// certificate to send.
func handshakeTLS(pair *keypair.Reloader, clientCAs *x509.CertPool, bundleCAs []*x509.Certificate) *tls.Config {
	if pair == nil {
		return nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: pair.GetCertificate}
	if clientCAs != nil || len(bundleCAs) > 0 {
		pool := x509.NewCertPool()
		if clientCAs != nil {
			pool = clientCAs.Clone()
		}
		for _, ca := range bundleCAs {
			pool.AddCert(ca)
		}
		c.ClientCAs, c.ClientAuth = pool, tls.RequestClientCert
	}
	return c
}

// loadClientCAs reads tls.client_ca_file (nil when unset).
func loadClientCAs(t config.TLS) (*x509.CertPool, error) {
	if t.ClientCAFile == "" {
		return nil, nil
	}
	pemBytes, err := os.ReadFile(t.ClientCAFile)
	if err != nil {
		return nil, fmt.Errorf("tls.client_ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		return nil, fmt.Errorf("tls.client_ca_file: no PEM certificate in %s", t.ClientCAFile)
	}
	return pool, nil
}
