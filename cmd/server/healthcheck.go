package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/tokenbroker/tokenbroker/app"
	"github.com/tokenbroker/tokenbroker/config"
	"github.com/tokenbroker/tokenbroker/vendors"
)

// healthcheck is the "healthcheck" subcommand: a container HEALTHCHECK for
// an image with no shell and no curl (distroless). It asks /readyz on the
// HTTP listener and fails unless the answer is 200 within the timeout:
//
//	tokenbroker healthcheck [--addr host:port | --config file] [--timeout 2s]
//	    [--ca-file ca.crt [--server-name name]] [--api-key-file key]
//
// The chart's helm test runs it against the Service: with --ca-file the
// server's certificate is verified (HTTPS), and with --api-key-file it
// also calls ListVendors (GET /v1/vendors) as an authenticated caller and
// fails unless that answers 200 with at least one vendor.
func healthcheck(ctx context.Context, args []string, stdout, stderr io.Writer, env config.Lookup) error {
	fs := flag.NewFlagSet("tokenbroker healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	defaultConfig, _ := env("TOKENBROKER_CONFIG")
	configPath := fs.String("config", defaultConfig, "YAML config file whose http_addr (and tls) to check (default $TOKENBROKER_CONFIG)")
	addr := fs.String("addr", "", "HTTP address to check, overriding the config's http_addr")
	timeout := fs.Duration("timeout", 2*time.Second, "give up after this long")
	caFile := fs.String("ca-file", "", "PEM CA to verify the server's certificate with (implies HTTPS); unset: the certificate is not verified")
	serverName := fs.String("server-name", "", "with --ca-file: the name the certificate must carry (default: the host of the address)")
	apiKeyFile := fs.String("api-key-file", "", "also call ListVendors (GET /v1/vendors) with the API key in this file")
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
	// Like the kubelet's HTTPS probe: without a CA this checks that the
	// process on this machine answers, not who it is, so its certificate
	// (issued for the Service's names, not 127.0.0.1) is not verified.
	tlsConfig := &tls.Config{InsecureSkipVerify: true} //nolint:gosec // see above
	if *caFile != "" {
		pem, err := os.ReadFile(*caFile)
		if err != nil {
			return fmt.Errorf("healthcheck: --ca-file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("healthcheck: --ca-file %s: no PEM certificate", *caFile)
		}
		tlsConfig = &tls.Config{RootCAs: pool, ServerName: *serverName}
		useTLS = true
	}
	var apiKey []byte
	if *apiKeyFile != "" {
		raw, err := os.ReadFile(*apiKeyFile)
		if err != nil {
			return fmt.Errorf("healthcheck: --api-key-file: %w", err)
		}
		if apiKey = bytes.TrimSpace(raw); len(apiKey) == 0 {
			return fmt.Errorf("healthcheck: --api-key-file %s is empty", *apiKeyFile)
		}
	}
	url, err := readyzURL(target, useTLS)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConfig, Proxy: nil}}
	defer client.CloseIdleConnections()
	body, err := getOK(ctx, client, url, nil)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	fmt.Fprintf(stdout, "%s", body)
	if apiKey == nil {
		return nil
	}
	vendorsURL := url[:len(url)-len("/readyz")] + "/v1/vendors"
	body, err = getOK(ctx, client, vendorsURL, http.Header{"Authorization": {"Bearer " + string(apiKey)}})
	if err != nil {
		return fmt.Errorf("healthcheck: ListVendors: %w", err)
	}
	var list struct {
		Vendors []struct {
			ID string `json:"id"`
		} `json:"vendors"`
	}
	if err := json.Unmarshal(body, &list); err != nil || len(list.Vendors) == 0 {
		return fmt.Errorf("healthcheck: ListVendors: GET %s answered %.200q, want a list of vendors", vendorsURL, body)
	}
	fmt.Fprintf(stdout, "ListVendors: %d vendors\n", len(list.Vendors))
	return nil
}

// getOK GETs url and returns its body (at most 64 KiB), or an error unless
// the answer is 200.
func getOK(ctx context.Context, client *http.Client, url string, header http.Header) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s %.200s", url, resp.Status, body)
	}
	return body, nil
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
