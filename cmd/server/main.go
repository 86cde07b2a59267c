// Command server runs tokenbroker: gRPC on grpc_addr, REST and operations
// on http_addr (docs/design.md, Layout and Configuration).
//
//	server --config tokenbroker.yaml
//	server --dev        # built-in vendor simulator and a demo profile per vendor
//	server --check-config --config tokenbroker.yaml
//	server --version
//	server healthcheck  # GET /readyz, for a container HEALTHCHECK
//	server status       # every profile's credential status (ListCredentialStatus)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tokenbroker/tokenbroker/app"
	"github.com/tokenbroker/tokenbroker/config"
	"github.com/tokenbroker/tokenbroker/internal/logbuf"
	"github.com/tokenbroker/tokenbroker/internal/version"
)

// logFlushInterval bounds how long a log line waits in the buffer.
const logFlushInterval = 100 * time.Millisecond

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	// SIGHUP reloads the configuration; by Go's default it would end the
	// process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	err := realMain(ctx, os.Args[1:], os.Stdout, os.Stderr, os.LookupEnv, hup)
	signal.Stop(hup)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "tokenbroker:", err)
		os.Exit(1)
	}
}

// flags are the command line.
type flags struct {
	configPath string
	dev        bool
	logLevel   slog.Level
	logFormat  string
	// insecure lets a server without clients bind non-loopback addresses.
	insecure bool
	// checkConfig validates the config and exits; version prints the build.
	checkConfig bool
	version     bool
}

func parseFlags(args []string, stderr io.Writer, env config.Lookup) (*flags, error) {
	f := &flags{}
	fs := flag.NewFlagSet("tokenbroker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	defaultConfig, _ := env("TOKENBROKER_CONFIG")
	fs.StringVar(&f.configPath, "config", defaultConfig, "YAML config file (default $TOKENBROKER_CONFIG; none: safe local defaults)")
	fs.BoolVar(&f.dev, "dev", false, "development mode: in-memory store, built-in vendor simulator on loopback, a demo profile per vendor")
	fs.TextVar(&f.logLevel, "log-level", slog.LevelInfo, "log level: debug, info, warn, error")
	fs.StringVar(&f.logFormat, "log-format", "", "log format: json (default) or text (default with --dev)")
	fs.BoolVar(&f.insecure, "insecure-allow-unauthenticated", false, "allow listening on non-loopback addresses with no clients configured (anyone who can connect gets tokens)")
	fs.BoolVar(&f.checkConfig, "check-config", false, "read and check the config (unknown keys, secrets, vendor settings, profiles), then exit")
	fs.BoolVar(&f.version, "version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if f.logFormat == "" {
		f.logFormat = "json"
		if f.dev {
			f.logFormat = "text"
		}
	}
	if f.logFormat != "json" && f.logFormat != "text" {
		return nil, fmt.Errorf("--log-format: %q is not json or text", f.logFormat)
	}
	return f, nil
}

func realMain(ctx context.Context, args []string, stdout, stderr io.Writer, env config.Lookup, reloadSignals <-chan os.Signal) error {
	if len(args) > 0 && args[0] == "healthcheck" {
		return healthcheck(ctx, args[1:], stdout, stderr, env)
	}
	if len(args) > 0 && args[0] == "status" {
		return status(ctx, args[1:], stdout, stderr, env)
	}
	f, err := parseFlags(args, stderr, env)
	if err != nil {
		return err
	}
	switch {
	case f.version:
		fmt.Fprintln(stdout, version.Get())
		return nil
	case f.checkConfig:
		return checkConfig(f.configPath, stdout, env)
	}
	hopts := &slog.HandlerOptions{Level: f.logLevel}
	// The access log writes a line per request: encode and write the lines
	// in batches, off the requests' path (JSON lines with logbuf's own
	// encoder of slog's format).
	logOut := logbuf.New(stderr, logFlushInterval)
	defer logOut.Close()
	var handler slog.Handler
	if f.logFormat == "text" {
		handler = logOut.Handler(slog.NewTextHandler(logOut, hopts))
	} else {
		handler = logOut.JSONHandler(hopts)
	}
	logger := slog.New(handler)
	slog.SetDefault(logger)

	var cfg *config.Config
	var banner func(*app.App)
	load := func() (*config.Config, error) { return config.Load(f.configPath, env) }
	if f.dev {
		dev, err := startDev(f.configPath, env)
		if err != nil {
			return fmt.Errorf("dev mode: %w", err)
		}
		defer dev.close()
		cfg = dev.config
		load = dev.load
		banner = func(a *app.App) { dev.printBanner(stdout, a) }
	} else {
		if cfg, err = load(); err != nil {
			return err
		}
	}
	opts := app.Options{Config: cfg, Logger: logger, InsecureAllowUnauthenticated: f.insecure, ReloadSignals: reloadSignals}
	if f.configPath != "" {
		opts.Load, opts.ConfigFile = load, f.configPath
	}
	a, err := app.New(ctx, opts)
	if err != nil {
		return err
	}
	if banner != nil {
		banner(a)
	}
	return a.Run(ctx)
}
