// Command vendorsim serves the strict simulator of the vendors' token
// endpoints (package vendorsim) with its demo accounts, for docker-compose
// and manual testing:
//
//	vendorsim --addr 127.0.0.1:8099 [--ttl 1h]
//
// It stops on SIGINT or SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/tokenbroker/tokenbroker/vendorsim"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	if err := realMain(ctx, os.Args[1:], logger); err != nil {
		logger.Error("vendorsim failed", "error", err)
		stop()
		os.Exit(1)
	}
}

func realMain(ctx context.Context, args []string, logger *slog.Logger) error {
	flags := flag.NewFlagSet("vendorsim", flag.ContinueOnError)
	addr := flags.String("addr", "127.0.0.1:8099", "address to listen on")
	ttl := flags.Duration("ttl", 0, "lifetime of issued tokens (0: each vendor's documented default)")
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if flags.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", flags.Args())
	}

	sim, err := vendorsim.Start(*addr, vendorsim.WithTokenTTL(*ttl))
	if err != nil {
		return fmt.Errorf("vendorsim.Start: %w", err)
	}
	for vendor, account := range vendorsim.DemoAccounts() {
		sim.AddAccount(vendor, account)
	}
	logger.Info("vendor simulator listening", "url", sim.URL(), "ttl", ttl.String())

	<-ctx.Done()
	logger.Info("vendor simulator stopping")
	if err := sim.Close(); err != nil {
		return fmt.Errorf("vendorsim.Sim.Close: %w", err)
	}
	return nil
}
