package brokertest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
)

// ServerOptions describe a server process (cmd/server).
type ServerOptions struct {
	// Name names it in messages (default: "server on" its HTTP address);
	// Bin is the binary (ServerBinary).
	Name string
	Bin  string
	// YAML is its configuration; "{grpc}" and "{http}" in it become the
	// ports of its two listeners.
	YAML string
	// LogLevel is its --log-level: warn when empty.
	LogLevel string
	// KillAtEnd and SlowStopOK are ProcOptions'.
	KillAtEnd  bool
	SlowStopOK bool
}

// Server is a server process on two free loopback ports with its own
// configuration file. Start (the Proc's) runs it; it can be stopped and
// started again on the same addresses.
type Server struct {
	*Proc
	GRPCAddr, HTTPAddr string
	ConfigPath         string
}

// NewServer picks the ports and writes the configuration file; the
// process runs from Start on and ends with the test (Proc).
func NewServer(t testing.TB, opts ServerOptions) *Server {
	t.Helper()
	grpcPort, httpPort := FreePort(t), FreePort(t)
	yaml := strings.NewReplacer("{grpc}", strconv.Itoa(grpcPort), "{http}", strconv.Itoa(httpPort)).Replace(opts.YAML)
	cfgPath := filepath.Join(t.TempDir(), "tokenbroker.yaml")
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	level := opts.LogLevel
	if level == "" {
		level = "warn"
	}
	if opts.Name == "" {
		opts.Name = "server on 127.0.0.1:" + strconv.Itoa(httpPort)
	}
	return &Server{
		Proc: NewProc(t, ProcOptions{Name: opts.Name, Bin: opts.Bin, Args: []string{"--config", cfgPath, "--log-level", level},
			KillAtEnd: opts.KillAtEnd, SlowStopOK: opts.SlowStopOK}),
		GRPCAddr:   "127.0.0.1:" + strconv.Itoa(grpcPort),
		HTTPAddr:   "127.0.0.1:" + strconv.Itoa(httpPort),
		ConfigPath: cfgPath,
	}
}

// SetConfigPath makes the next Start read the configuration from path (a
// file the test manages, such as a Kubernetes-style volume) instead of the
// one NewServer wrote.
func (s *Server) SetConfigPath(path string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ConfigPath = path
	s.opts.Args[1] = path
}

// answerTimeout bounds one readiness call.
const answerTimeout = 500 * time.Millisecond

// AnswersGRPC is a readiness check for Start: the server answers
// ListVendors through client (UNAUTHENTICATED counts: with clients
// configured it answers, but not an anonymous call).
func AnswersGRPC(client tokenbrokerv1.TokenServiceClient) func() error {
	return func() error {
		ctx, cancel := context.WithTimeout(context.Background(), answerTimeout)
		defer cancel()
		_, err := client.ListVendors(ctx, &tokenbrokerv1.ListVendorsRequest{})
		if err == nil || status.Code(err) == codes.Unauthenticated {
			return nil
		}
		return fmt.Errorf("ListVendors: %w", err)
	}
}
