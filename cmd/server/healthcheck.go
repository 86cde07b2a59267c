package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/tokenbroker/tokenbroker/config"
	"github.com/tokenbroker/tokenbroker/internal/app"
	"github.com/tokenbroker/tokenbroker/vendors"
)

// healthcheck is the "healthcheck" subcommand: a container HEALTHCHECK for
// an image with no shell and no curl (distroless). It asks /readyz on the
// HTTP listener and fails unless the answer is 200 within the timeout:
//
//	tokenbroker healthcheck [--addr host:port | --config file] [--timeout 2s]
func healthcheck(ctx context.Context, args []string, stdout, stderr io.Writer, env config.Lookup) error {
	fs := flag.NewFlagSet("tokenbroker healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	defaultConfig, _ := env("TOKENBROKER_CONFIG")
	configPath := fs.String("config", defaultConfig, "YAML config file whose http_addr (and tls) to check (default $TOKENBROKER_CONFIG)")
	addr := fs.String("addr", "", "HTTP address to check, overriding the config's http_addr")
	timeout := fs.Duration("timeout", 2*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("healthcheck: unexpected arguments: %v", fs.Args())
	}
	if *timeout <= 0 {
		return errors.New("healthcheck: --timeout must be positive")
	}
	target, useTLS := *addr, false
	if target == "" || *configPath != "" {
		cfg, err := config.Load(*configPath, env)
		if err != nil {
			return fmt.Errorf("healthcheck: %w", err)
		}
		if target == "" {
			target = cfg.HTTPAddr
		}
		useTLS = cfg.TLS.CertFile != ""
	}
	url, err := readyzURL(target, useTLS)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	client := &http.Client{Transport: &http.Transport{
		// Like the kubelet's HTTPS probe: this checks that the process on
		// this machine answers, not who it is, so its certificate (issued
		// for the Service's names, not 127.0.0.1) is not verified.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // see above
		Proxy:           nil,
	}}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: GET %s: %s %s", url, resp.Status, body)
	}
	fmt.Fprintf(stdout, "%s", body)
	return nil
}

// readyzURL is /readyz on a listen address: an unspecified host (":8080",
// "0.0.0.0:8080", "[::]:8080") is reached on loopback.
func readyzURL(listenAddr string, useTLS bool) (string, error) {
	host, port, err := net.SplitHostPort(listenAddr)
	if err != nil {
		return "", fmt.Errorf("http address %q: %w", listenAddr, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	scheme := "http"
	if useTLS {
		scheme = "https"
	}
	return scheme + "://" + net.JoinHostPort(host, port) + "/readyz", nil
}

// checkConfig is --check-config: read the file as the server would
// (unknown keys, unset variables, unreadable secret files) and check the
// vendor settings and profiles, without listening or connecting anywhere.
func checkConfig(path string, stdout io.Writer, env config.Lookup) error {
	if path == "" {
		return errors.New("--check-config needs --config or $TOKENBROKER_CONFIG")
	}
	cfg, err := config.Load(path, env)
	if err != nil {
		return err
	}
	if _, err := app.ServiceConfig(cfg, vendors.Default()); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	fmt.Fprintf(stdout, "config %s: ok\n", path)
	return nil
}
