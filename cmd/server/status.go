package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tokenbroker/tokenbroker/config"
	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
)

// status is the "status" subcommand: it calls ListCredentialStatus on a
// running broker and prints one line per profile (docs/design.md,
// Operations, "Credential status and events"):
//
//	tokenbroker status [--addr host:port | --config file] [--json] [--timeout 5s]
//
// The API key, when the broker has clients, is read from
// $TOKENBROKER_API_KEY (never a flag: flags show in process lists); its
// client needs "admin:status" in its allow list.
func status(ctx context.Context, args []string, stdout, stderr io.Writer, env config.Lookup) error {
	fs := flag.NewFlagSet("tokenbroker status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	defaultConfig, _ := env("TOKENBROKER_CONFIG")
	configPath := fs.String("config", defaultConfig, "YAML config file whose grpc_addr (and tls) to call (default $TOKENBROKER_CONFIG)")
	addr := fs.String("addr", "", "gRPC address of a broker, overriding the config's grpc_addr")
	useTLS := fs.Bool("tls", false, "call over TLS (implied by the config's tls.cert_file)")
	caFile := fs.String("ca-file", "", "PEM CAs that sign the broker's certificate (default: the system's)")
	asJSON := fs.Bool("json", false, "print the answer as JSON (the REST API's shape)")
	timeout := fs.Duration("timeout", 5*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("status: unexpected arguments: %v", fs.Args())
	}
	if *timeout <= 0 {
		return errors.New("status: --timeout must be positive")
	}
	target := *addr
	if target == "" || *configPath != "" {
		cfg, err := config.Load(*configPath, env)
		if err != nil {
			return fmt.Errorf("status: %w", err)
		}
		if target == "" {
			target = cfg.GRPCAddr
		}
		*useTLS = *useTLS || cfg.TLS.CertFile != ""
	}
	target, err := dialAddr(target)
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	creds := insecure.NewCredentials()
	if *useTLS {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if *caFile != "" {
			pem, err := os.ReadFile(*caFile)
			if err != nil {
				return fmt.Errorf("status: --ca-file: %w", err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return fmt.Errorf("status: --ca-file %s: no PEM certificate in it", *caFile)
			}
		}
		creds = credentials.NewTLS(tc)
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(creds))
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if key, ok := env("TOKENBROKER_API_KEY"); ok && key != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+key)
	}
	resp, err := tokenbrokerv1.NewTokenServiceClient(conn).ListCredentialStatus(ctx, &tokenbrokerv1.ListCredentialStatusRequest{})
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	if *asJSON {
		out, err := protojson.MarshalOptions{UseProtoNames: true, Multiline: true}.Marshal(resp)
		if err != nil {
			return fmt.Errorf("status: %w", err)
		}
		_, err = fmt.Fprintf(stdout, "%s\n", out)
		return err
	}
	return printStatus(stdout, resp, time.Now())
}

// dialAddr is a listen address as a dial target: an unspecified host
// (":9090", "0.0.0.0:9090") is reached on loopback.
func dialAddr(listenAddr string) (string, error) {
	host, port, err := net.SplitHostPort(listenAddr)
	if err != nil {
		return "", fmt.Errorf("grpc address %q: %w", listenAddr, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port), nil
}

// printStatus writes a table: one line per profile.
func printStatus(w io.Writer, resp *tokenbrokerv1.ListCredentialStatusResponse, now time.Time) error {
	scope := "fleet-wide"
	if !resp.GetFleetWide() {
		scope = "this replica only"
	}
	fmt.Fprintf(w, "credential status from %s (%s)", resp.GetReplica(), scope)
	if resp.GetBreakerOpen() {
		fmt.Fprint(w, "; Redis breaker open")
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PROFILE\tVENDOR\tSTATE\tSINCE\tTOKEN EXPIRES\tFETCHED BY\tFAILURES\tLAST REJECTION\tBUDGET")
	for _, p := range resp.GetProfiles() {
		rejection := "-"
		if r := p.GetLastRejection(); r != nil {
			rejection = fmt.Sprintf("%s (HTTP %d) %s", orDash(r.GetOauthError()), r.GetHttpStatus(), ago(r.GetAt(), now))
		}
		failures := fmt.Sprint(p.GetConsecutiveFailures())
		if p.GetLastFailure() != "" && p.GetConsecutiveFailures() > 0 {
			failures += " (" + p.GetLastFailure() + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			p.GetProfile(), p.GetVendor(), stateName(p.GetState()), ago(p.GetStateSince(), now),
			in(p.GetExpiresAt(), now), orDash(p.GetFetchedBy()), failures, rejection, budgetText(p.GetBudget()))
	}
	return tw.Flush()
}

// stateName is a state as people read it.
func stateName(s tokenbrokerv1.CredentialState) string {
	name := strings.TrimPrefix(s.String(), "CREDENTIAL_STATE_")
	if s == tokenbrokerv1.CredentialState_CREDENTIAL_STATE_UNSPECIFIED {
		name = "never fetched"
	}
	return strings.ToLower(name)
}

func budgetText(b *tokenbrokerv1.BudgetState) string {
	if b.GetMaxRequestsPerSecond() == 0 {
		return "unlimited"
	}
	s := fmt.Sprintf("%g/s burst %d", b.GetMaxRequestsPerSecond(), b.GetBurst())
	if b.GetExhausted() {
		s += " EXHAUSTED"
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// ago is how long before now ts was ("-" for none).
func ago(ts *timestamppb.Timestamp, now time.Time) string {
	if ts == nil {
		return "-"
	}
	return now.Sub(ts.AsTime()).Round(time.Second).String() + " ago"
}

// in is how long after now ts is, or how long ago it passed.
func in(ts *timestamppb.Timestamp, now time.Time) string {
	if ts == nil {
		return "-"
	}
	d := ts.AsTime().Sub(now).Round(time.Second)
	if d < 0 {
		return "expired " + (-d).String() + " ago"
	}
	return "in " + d.String()
}
