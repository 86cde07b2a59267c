package brokertest_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
	"github.com/tokenbroker/tokenbroker/testkit/brokertest"
)

func TestMain(m *testing.M) {
	os.Exit(brokertest.RunTests(m))
}

func TestPoll(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		holdsAt int // the call that returns nil; 0: never
		wantErr string
	}{
		{name: "at once", holdsAt: 1},
		{name: "after a few tries", holdsAt: 4},
		{name: "never", wantErr: "not within 100ms: call 0 of "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var calls atomic.Int32
			err := brokertest.Poll(100*time.Millisecond, func() error {
				n := int(calls.Add(1))
				if n == tc.holdsAt {
					return nil
				}
				return fmt.Errorf("call 0 of %d", n)
			})
			if tc.wantErr == "" {
				if err != nil || int(calls.Load()) != tc.holdsAt {
					t.Fatalf("Poll = %v after %d calls, want nil after %d", err, calls.Load(), tc.holdsAt)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Poll = %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestEventuallyAndHolds(t *testing.T) {
	t.Parallel()
	n := 0
	took := brokertest.Eventually(t, "the third call", 10*time.Second, brokertest.Holds(func() bool { n++; return n == 3 }))
	if n != 3 || took < 0 {
		t.Fatalf("Eventually returned after %d calls (%v)", n, took)
	}
	if err := brokertest.Holds(func() bool { return false })(); err == nil {
		t.Fatal("Holds of a false condition returned nil")
	}
}

func TestFreePort(t *testing.T) {
	t.Parallel()
	if p := brokertest.FreePort(t); p <= 0 || p > 65535 {
		t.Fatalf("FreePort = %d", p)
	}
	if a := brokertest.FreeAddr(t); !strings.HasPrefix(a, "127.0.0.1:") {
		t.Fatalf("FreeAddr = %q", a)
	}
}

// TestProc drives a shell process through the launcher: start, freeze and
// thaw (each returning once /proc shows the state), SIGKILL, and a start
// that fails because the process exits.
func TestProc(t *testing.T) {
	t.Parallel()
	sh := "/bin/sh"
	if _, err := os.Stat(sh); err != nil {
		t.Skip("no /bin/sh")
	}
	p := brokertest.NewProc(t, brokertest.ProcOptions{Name: "sleeper", Bin: sh, Args: []string{"-c", "echo started; exec sleep 60"}})
	if err := p.Start(10*time.Second, func() error {
		if !strings.Contains(p.Output(), "started") {
			return errors.New("no output yet")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := p.Freeze(); err != nil {
		t.Fatal(err)
	}
	if got := procState(t, p.Pid()); got != "T" {
		t.Fatalf("state after Freeze %q, want T", got)
	}
	if err := p.Thaw(); err != nil {
		t.Fatal(err)
	}
	if got := procState(t, p.Pid()); got == "T" {
		t.Fatal("still stopped after Thaw")
	}
	p.Kill()
	select {
	case <-p.Exited():
	default:
		t.Fatal("Kill returned before the process exited")
	}

	quitter := brokertest.NewProc(t, brokertest.ProcOptions{Name: "quitter", Bin: sh, Args: []string{"-c", "echo bye; exit 3"}})
	err := quitter.Start(10*time.Second, func() error { return errors.New("never ready") })
	if err == nil || !strings.Contains(err.Error(), "exited at start") || !strings.Contains(err.Error(), "bye") {
		t.Fatalf("Start of a process that exits = %v, want its exit and output", err)
	}
}

// procState is the state letter of pid's main thread (Linux only).
func procState(t *testing.T, pid int) string {
	t.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	s := string(raw)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return fields[0]
}

// TestInProcessBroker: the simulator, its configuration and the broker
// serve a token over gRPC and REST.
func TestInProcessBroker(t *testing.T) {
	t.Parallel()
	sim := brokertest.StartSim(t)
	b := brokertest.StartBroker(t, sim, brokertest.SimConfig(t, sim, `
profiles:
  acme-sd:
    vendor: smartdocumentor
    credentials: {client_id: demo-client, client_secret: demo-secret}
`))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := b.Client.GetToken(ctx, &tokenbrokerv1.GetTokenRequest{Profile: "acme-sd"})
	if err != nil || !sim.ValidToken("smartdocumentor", resp.AccessToken) {
		t.Fatalf("GetToken = %v, %v; want a token the simulator issued", resp, err)
	}
	if b.Sim != sim || !strings.HasPrefix(b.HTTP, "http://127.0.0.1:") || b.GRPCAddr != b.App.Server.GRPCAddr().String() {
		t.Fatalf("addresses: %+v", b)
	}
}

// TestServerProcess builds the server once and runs it as a process on
// free ports until it answers gRPC, then stops it with SIGTERM.
func TestServerProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds ./cmd/server")
	}
	t.Parallel()
	sim := brokertest.StartSim(t)
	bin := brokertest.ServerBinary(t)
	if again := brokertest.ServerBinary(t); again != bin {
		t.Fatalf("a second ServerBinary built again: %q, then %q", bin, again)
	}
	s := brokertest.NewServer(t, brokertest.ServerOptions{Name: "server", Bin: bin, YAML: `grpc_addr: 127.0.0.1:{grpc}
http_addr: 127.0.0.1:{http}
shutdown_delay: 0s
vendors:
  smartdocumentor:
    token_url: ` + sim.URL() + `/smartdocumentor/connect/token
`})
	conn := dial(t, s.GRPCAddr)
	if err := s.Start(30*time.Second, brokertest.AnswersGRPC(tokenbrokerv1.NewTokenServiceClient(conn))); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Terminate(20 * time.Second); err != nil {
		t.Fatal(err)
	}
}
