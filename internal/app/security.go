package app

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"

	"google.golang.org/grpc"

	"github.com/tokenbroker/tokenbroker/auth"
	"github.com/tokenbroker/tokenbroker/config"
	"github.com/tokenbroker/tokenbroker/server"
)

// configureSecurity adds TLS and caller authentication and authorization
// (design section 6: clients, tls) to the server options, and refuses an
// unauthenticated server on a non-loopback address.
func (a *App) configureSecurity(sopts *server.Options, cfg *config.Config, opts Options) error {
	authOn := len(cfg.Clients) > 0 || cfg.TLS.ClientCAFile != ""
	exposed := exposedAddrs(cfg)
	if !authOn && len(exposed) > 0 {
		if !opts.InsecureAllowUnauthenticated {
			return fmt.Errorf("%s is not a loopback address and no callers are configured, so anyone who can reach it could obtain vendor tokens: "+
				"configure caller authentication (clients.<name>.api_key_sha256, or clients.<name>.cert_subject with tls.client_ca_file; see the README's \"Security model\"), "+
				"listen on 127.0.0.1, or start with --insecure-allow-unauthenticated to accept the risk", strings.Join(exposed, " and "))
		}
		a.log.Warn("serving without caller authentication on a non-loopback address (--insecure-allow-unauthenticated): anyone who can connect gets tokens", "addrs", exposed)
	}

	tlsCfg, clientCAs, err := serverTLS(cfg.TLS)
	if err != nil {
		return err
	}
	sopts.TLS = tlsCfg
	// gRPC accepts 16 MiB of metadata by default; bound it like HTTP
	// headers (server.go's MaxHeaderBytes).
	sopts.ServerOptions = append(sopts.ServerOptions, grpc.MaxHeaderListSize(maxMetadataBytes))
	if !authOn {
		return nil
	}
	if err := checkAllowEntries(cfg, opts); err != nil {
		return err
	}
	policy, err := auth.New(auth.Config{
		Clients:   cfg.Clients,
		ClientCAs: clientCAs,
		Limits:    cfg.Limits,
		Logger:    a.log,
	})
	if err != nil {
		return err
	}
	sopts.UnaryInterceptors = append(sopts.UnaryInterceptors, policy.UnaryInterceptor())
	sopts.ServerOptions = append(sopts.ServerOptions, grpc.ChainStreamInterceptor(policy.StreamInterceptor()))
	// Outermost, so no other middleware sees a caller's forged certificate
	// header, and the ones that follow see the request the mux sees.
	sopts.HTTPMiddleware = append([]func(http.Handler) http.Handler{policy.HTTPMiddleware}, sopts.HTTPMiddleware...)
	sopts.ForwardHeaders = append(sopts.ForwardHeaders, auth.ForwardedCertHeader)

	if tlsCfg == nil && len(exposed) > 0 {
		// RFC 6750 section 5.3: bearer credentials need TLS. TLS may end
		// in front of the broker (a mesh sidecar, a load balancer), so
		// this is a warning, not a refusal.
		a.log.Warn("API keys reach this server in clear text on a non-loopback address: set tls.cert_file and tls.key_file unless TLS ends in front of the broker", "addrs", exposed)
	}
	a.log.Info("caller authentication on", "clients", len(cfg.Clients), "mtls", clientCAs != nil)
	return nil
}

// maxMetadataBytes bounds a gRPC call's metadata (headers).
const maxMetadataBytes = 64 << 10

// exposedAddrs returns the listen addresses that are not loopback.
func exposedAddrs(cfg *config.Config) []string {
	var out []string
	for _, l := range []struct{ key, addr string }{{"grpc_addr", cfg.GRPCAddr}, {"http_addr", cfg.HTTPAddr}} {
		if !loopbackAddr(l.addr) {
			out = append(out, l.key+" "+l.addr)
		}
	}
	return out
}

// loopbackAddr reports whether a listen address binds only loopback: an
// empty host or an unspecified IP binds every interface, and a host name
// other than localhost could resolve anywhere.
func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// serverTLS loads tls.cert_file/key_file and, for mTLS, client_ca_file. It
// returns nil without a certificate. Client certificates are requested, not
// verified by TLS: the auth package verifies them on every call, so a bad
// one gets UNAUTHENTICATED and an audit line, and API-key callers connect
// without one.
func serverTLS(t config.TLS) (*tls.Config, *x509.CertPool, error) {
	if t.CertFile == "" {
		return nil, nil, nil
	}
	cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("tls.cert_file, tls.key_file: %w", err)
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if t.ClientCAFile == "" {
		return c, nil, nil
	}
	pemBytes, err := os.ReadFile(t.ClientCAFile)
	if err != nil {
		return nil, nil, fmt.Errorf("tls.client_ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		return nil, nil, fmt.Errorf("tls.client_ca_file: no PEM certificate in %s", t.ClientCAFile)
	}
	// ClientCAs also tells clients which certificate to send.
	c.ClientCAs, c.ClientAuth = pool, tls.RequestClientCert
	return c, pool, nil
}

// checkAllowEntries makes sure every allow entry names a configured
// profile or a known vendor: a typo fails at startup instead of denying
// calls later.
func checkAllowEntries(cfg *config.Config, opts Options) error {
	names := make([]string, 0, len(cfg.Clients))
	for name := range cfg.Clients {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		for i, entry := range cfg.Clients[name].Allow {
			key := fmt.Sprintf("clients.%s.allow[%d]", name, i)
			if vendor, ok := strings.CutPrefix(entry, auth.VendorPrefix); ok {
				if _, known := opts.Registry.Lookup(vendor); !known {
					return fmt.Errorf("%s: %q names no known vendor", key, entry)
				}
				continue
			}
			if _, ok := cfg.Profiles[entry]; !ok {
				return fmt.Errorf("%s: no profile %q is configured (write %s<id> for inline credentials of a vendor)", key, entry, auth.VendorPrefix)
			}
		}
	}
	return nil
}
