package test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
	"github.com/tokenbroker/tokenbroker/internal/testing/redistest"
	"github.com/tokenbroker/tokenbroker/vendorsim"
)

// Fleet tests run the real server binary, several replicas sharing one
// Redis, behind a client that spreads calls over them as a load balancer
// would.

// The race-enabled server binary is built once per test process and
// shared by every test that starts server processes.
var (
	serverBinOnce sync.Once
	serverBinPath string
	serverBinErr  error
)

// serverBinary returns ./cmd/server built with -race, building it on first
// use; TestMain removes it.
func serverBinary(t *testing.T) string {
	t.Helper()
	serverBinOnce.Do(func() {
		dir, err := os.MkdirTemp("", "tokenbroker-test-bin-")
		if err != nil {
			serverBinErr = err
			return
		}
		sharedBinDir = dir
		serverBinPath, serverBinErr = goBuildServer(dir, "-race")
	})
	if serverBinErr != nil {
		t.Fatal(serverBinErr)
	}
	return serverBinPath
}

// sharedBinDir is serverBinary's directory, removed by TestMain.
var sharedBinDir string

// goBuildServer compiles ./cmd/server into dir with extra go build flags.
func goBuildServer(dir string, flags ...string) (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("the fleet tests build ./cmd/server and need go on PATH: %v", err)
	}
	bin := filepath.Join(dir, "tokenbroker-server")
	cmd := exec.Command(goBin, append(append([]string{"build"}, flags...), "-o", bin, "./cmd/server")...)
	cmd.Dir = ".." // the module root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/server: %v\n%s", err, out)
	}
	return bin, nil
}

// replica is one server process.
type replica struct {
	cmd      *exec.Cmd
	exited   chan struct{}
	grpcAddr string
	httpAddr string
	log      string // path of its stderr
	client   tokenbrokerv1.TokenServiceClient
}

// fleet is n replicas of the broker and the simulator they call.
type fleet struct {
	sim      *vendorsim.Sim
	replicas []*replica
}

// client returns the client of replica i mod n: callers spread over them.
func (f *fleet) client(i int) tokenbrokerv1.TokenServiceClient {
	return f.replicas[i%len(f.replicas)].client
}

// fleetYAML is each replica's config; {grpc} and {http} are its ports.
func fleetYAML(sim *vendorsim.Sim, cache, extra string) string {
	return `grpc_addr: 127.0.0.1:{grpc}
http_addr: 127.0.0.1:{http}
shutdown_delay: 0s
` + cache + `vendors:
  smartdocumentor:
    token_url: ` + sim.URL() + `/smartdocumentor/connect/token
` + sdProfile + extra
}

// startFleet starts n replicas of bin with config yaml, waits until each
// answers, and stops them in t.Cleanup.
func startFleet(t *testing.T, bin string, sim *vendorsim.Sim, n int, yaml string) *fleet {
	t.Helper()
	yamls := make([]string, n)
	for i := range yamls {
		yamls[i] = yaml
	}
	return startMixedFleet(t, bin, sim, yamls)
}

// startMixedFleet starts one replica per configuration.
func startMixedFleet(t *testing.T, bin string, sim *vendorsim.Sim, yamls []string) *fleet {
	t.Helper()
	n := len(yamls)
	f := &fleet{sim: sim}
	var wg sync.WaitGroup
	f.replicas = make([]*replica, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A port found free may be taken before the server binds it.
			for range 3 {
				var r *replica
				if r, errs[i] = startReplica(t, bin, i, yamls[i]); errs[i] == nil {
					f.replicas[i] = r
					return
				}
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("replica %d: %v", i, err)
		}
	}
	return f
}

func startReplica(t *testing.T, bin string, i int, yaml string) (*replica, error) {
	dir := t.TempDir()
	grpcPort, err := redistest.FreePort()
	if err != nil {
		return nil, err
	}
	httpPort, err := redistest.FreePort()
	if err != nil {
		return nil, err
	}
	yaml = strings.NewReplacer("{grpc}", strconv.Itoa(grpcPort), "{http}", strconv.Itoa(httpPort)).Replace(yaml)
	cfgPath := filepath.Join(dir, "tokenbroker.yaml")
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "server.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "--config", cfgPath, "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = childProcAttr()
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, err
	}
	r := &replica{cmd: cmd, exited: make(chan struct{}), grpcAddr: "127.0.0.1:" + strconv.Itoa(grpcPort),
		httpAddr: "127.0.0.1:" + strconv.Itoa(httpPort), log: logPath}
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(r.exited)
	}()
	t.Cleanup(func() { r.stop(t, i) })
	conn, err := grpc.NewClient(r.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { conn.Close() })
	r.client = tokenbrokerv1.NewTokenServiceClient(conn)
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		_, err := r.client.ListVendors(ctx, &tokenbrokerv1.ListVendorsRequest{})
		cancel()
		// With clients configured the server answers, but not this
		// anonymous call.
		if err == nil || status.Code(err) == codes.Unauthenticated {
			return r, nil
		}
		select {
		case <-r.exited:
			return nil, fmt.Errorf("server exited at start:\n%s", tail(logPath))
		default:
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("server not answering after 20s: %v\n%s", err, tail(logPath))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// signal sends sig to the replica's process.
func (r *replica) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := r.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v: %v", sig, err)
	}
}

// freeze stops the replica's process (SIGSTOP) and returns once every
// thread of it is stopped, so the fleet sees a stalled holder from then on.
func (r *replica) freeze(t *testing.T) {
	t.Helper()
	if err := redistest.FreezeProcess(r.cmd.Process); err != nil {
		t.Fatal(err)
	}
}

// thaw resumes a frozen replica (SIGCONT) and returns once it runs again.
func (r *replica) thaw(t *testing.T) {
	t.Helper()
	if err := redistest.ThawProcess(r.cmd.Process); err != nil {
		t.Fatal(err)
	}
}

// stop ends a replica with SIGTERM (graceful), then SIGKILL.
func (r *replica) stop(t *testing.T, i int) {
	_ = r.cmd.Process.Signal(syscall.SIGCONT) // in case a test froze it
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.exited:
	case <-time.After(10 * time.Second):
		t.Errorf("replica %d did not stop on SIGTERM", i)
		_ = r.cmd.Process.Kill()
		<-r.exited
	}
	if t.Failed() {
		t.Logf("replica %d log:\n%s", i, tail(r.log))
	}
}

// tail returns the end of a replica's log, without the per-request lines.
func tail(path string) string {
	raw, _ := os.ReadFile(path)
	var b []byte
	for _, line := range bytes.SplitAfter(raw, []byte("\n")) {
		if !bytes.Contains(line, []byte(`"msg":"request"`)) {
			b = append(b, line...)
		}
	}
	if len(b) > 8192 {
		b = b[len(b)-8192:]
	}
	return string(bytes.TrimSpace(b))
}

// percentile returns the p-th percentile (0..100) of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p / 100)
	return s[i]
}
