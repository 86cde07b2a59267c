package bench

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/proto"

	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
	"github.com/tokenbroker/tokenbroker/internal/logbuf"
)

// The load tool re-executes itself to put a server in a process of its
// own, where its memory and CPU time are its alone. Either variable below
// in the environment makes the binary serve instead of measure (see
// ServeChild).
const (
	// memoryChildEnv holds a broker config: a broker that logs nothing
	// (the memory and churn scenarios).
	memoryChildEnv = "TOKENBROKER_BENCH_MEMORY_BROKER"
	// serverChildEnv holds a childSpec (JSON): a broker that logs as
	// cmd/server does, or one of the echo baselines (the CPU rows).
	serverChildEnv = "TOKENBROKER_BENCH_SERVER"
)

// childSpec says what a child serves.
type childSpec struct {
	// Kind is childBroker or one of the echo kinds.
	Kind string `json:"kind"`
	// Config is the broker's YAML (childBroker).
	Config string `json:"config,omitempty"`
	// Response is the echo's answer, a marshalled GetTokenResponse.
	Response []byte `json:"response,omitempty"`
	// TLS files of the mTLS echo: its certificate and the client CA.
	CertFile string `json:"cert_file,omitempty"`
	KeyFile  string `json:"key_file,omitempty"`
	CAFile   string `json:"ca_file,omitempty"`
}

const (
	childBroker      = "broker"       // the broker, logging to /dev/null through logbuf
	childEchoGRPC    = "echo-grpc"    // a bare grpc-go server (startBareEcho's)
	childEchoGateway = "echo-gateway" // the echo behind the server package (startGatewayEcho's)
	childEchoMTLS    = "echo-mtls"    // a bare grpc-go server requiring client certificates
)

// footprint is one measurement of the broker process.
type footprint struct {
	HeapMB      float64 `json:"heap_mb"`
	RSSMB       float64 `json:"rss_mb"`
	MemLimitSet bool    `json:"mem_limit_set"`
}

// childProcess is a server started by startChild. Its first line on
// stdout is "grpc ADDR http ADDR"; then it answers each command line on
// its stdin with one line (see ServeChild).
type childProcess struct {
	cmd      *exec.Cmd
	in       io.WriteCloser
	out      *bufio.Scanner
	grpcAddr string
	httpAddr string // "" for the bare gRPC echoes
	stopped  bool
}

// childAnswerTimeout bounds each wait for a line from the child: its
// start, and each measurement (two forced GCs).
const childAnswerTimeout = 30 * time.Second

// startMemoryChild starts a broker from cfgYAML that logs nothing.
func startMemoryChild(ctx context.Context, cfgYAML string) (*childProcess, error) {
	return startChild(ctx, memoryChildEnv, cfgYAML)
}

// startServerChild starts what spec describes.
func startServerChild(ctx context.Context, spec childSpec) (*childProcess, error) {
	b, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	return startChild(ctx, serverChildEnv, string(b))
}

func startChild(ctx context.Context, envName, envValue string) (*childProcess, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, exe)
	cmd.Env = append(os.Environ(), envName+"="+envValue)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &childProcess{cmd: cmd, in: in, out: bufio.NewScanner(outPipe)}
	line, err := c.line()
	if err != nil {
		return nil, fmt.Errorf("child server did not start: %w", err)
	}
	fields := strings.Fields(line)
	if len(fields) != 4 || fields[0] != "grpc" || fields[2] != "http" {
		c.stop()
		return nil, fmt.Errorf("child server: first line %q, want its addresses", line)
	}
	c.grpcAddr = fields[1]
	if fields[3] != "-" {
		c.httpAddr = fields[3]
	}
	return c, nil
}

// line reads the child's next line within childAnswerTimeout. On failure
// the child is stopped and the error says how it ended.
func (c *childProcess) line() (string, error) {
	got := make(chan bool, 1)
	go func() { got <- c.out.Scan() }()
	select {
	case ok := <-got:
		if ok {
			return c.out.Text(), nil
		}
		err := c.out.Err()
		c.stop()
		if err == nil {
			err = fmt.Errorf("it exited (%v)", c.cmd.ProcessState)
		}
		return "", err
	case <-time.After(childAnswerTimeout):
		c.stop() // closes its stdout, which ends the Scan above
		<-got
		return "", fmt.Errorf("no answer within %v", childAnswerTimeout)
	}
}

// ask sends one command and returns the child's answer.
func (c *childProcess) ask(command string) (string, error) {
	if _, err := io.WriteString(c.in, command+"\n"); err != nil {
		return "", err
	}
	line, err := c.line()
	if err != nil {
		return "", fmt.Errorf("child server: no answer to %q: %w", command, err)
	}
	if msg, failed := strings.CutPrefix(line, "error "); failed {
		return "", fmt.Errorf("child server: %s: %s", command, msg)
	}
	return line, nil
}

func (c *childProcess) measure() (footprint, error) {
	var f footprint
	line, err := c.ask("measure")
	if err != nil {
		return f, err
	}
	err = json.Unmarshal([]byte(line), &f)
	return f, err
}

// cpu is the child's CPU time so far, user and system, all threads
// (getrusage in the child: microseconds, where /proc's stat counts
// 10 ms ticks).
func (c *childProcess) cpu() (time.Duration, error) {
	line, err := c.ask("cpu")
	if err != nil {
		return 0, err
	}
	ns, err := strconv.ParseInt(line, 10, 64)
	return time.Duration(ns), err
}

// startProfile makes the child write a CPU profile to path until
// stopProfile.
func (c *childProcess) startProfile(path string) error {
	_, err := c.ask("profile " + path)
	return err
}

func (c *childProcess) stopProfile() error {
	_, err := c.ask("stop-profile")
	return err
}

func (c *childProcess) stop() {
	if c.stopped {
		return
	}
	c.stopped = true
	c.in.Close() // the child exits at the end of its stdin
	done := make(chan struct{})
	go func() { _ = c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-done
	}
}

// ServeChild serves what the environment asks for when this process was
// started as a child (it returns false at once otherwise): it prints
// "grpc ADDR http ADDR" ("-" for none), then answers each line read from
// stdin until stdin ends:
//
//	measure           live heap and RSS, JSON (two forced GCs first)
//	cpu               CPU time used so far, user + system, in nanoseconds
//	profile PATH      start a CPU profile into PATH; "ok"
//	stop-profile      stop it; "ok"
//
// A failed command is answered "error ...". The load tool's main calls it
// first.
func ServeChild(ctx context.Context) (bool, error) {
	grpcAddr, httpAddr, stop, child, err := startChildServer(ctx)
	if !child || err != nil {
		return child, err
	}
	defer stop()
	fmt.Printf("grpc %s http %s\n", grpcAddr, cmp.Or(httpAddr, "-"))
	return true, answerCommands(os.Stdin)
}

// startChildServer starts the server the environment asks for; child is
// false when it asks for none (this process is the load tool itself).
func startChildServer(ctx context.Context) (grpcAddr, httpAddr string, stop func(), child bool, err error) {
	if cfgYAML, ok := os.LookupEnv(memoryChildEnv); ok {
		cfg, err := parseConfig(cfgYAML)
		if err != nil {
			return "", "", nil, true, err
		}
		b, err := startApp(ctx, cfg, discardLogger())
		if err != nil {
			return "", "", nil, true, err
		}
		return b.app.Server.GRPCAddr().String(), b.app.Server.HTTPAddr().String(), b.stop, true, nil
	}
	if specJSON, ok := os.LookupEnv(serverChildEnv); ok {
		var spec childSpec
		if err := json.Unmarshal([]byte(specJSON), &spec); err != nil {
			return "", "", nil, true, err
		}
		grpcAddr, httpAddr, stop, err := serveSpec(ctx, spec)
		return grpcAddr, httpAddr, stop, true, err
	}
	return "", "", nil, false, nil
}

// answerCommands answers each command line read from r (ServeChild's
// list) with one line on stdout, until r ends; a profile still running
// then is stopped.
func answerCommands(r io.Reader) error {
	in := bufio.NewScanner(r)
	var profile *os.File
	for in.Scan() {
		command, arg, _ := strings.Cut(in.Text(), " ")
		switch command {
		case "cpu":
			fmt.Println(int64(selfCPU()))
		case "profile":
			f, err := os.Create(arg)
			if err == nil {
				if err = pprof.StartCPUProfile(f); err != nil {
					f.Close()
				}
			}
			if err != nil {
				fmt.Printf("error %v\n", err)
				continue
			}
			profile = f
			fmt.Println("ok")
		case "stop-profile":
			if profile != nil {
				pprof.StopCPUProfile()
				profile.Close()
				profile = nil
			}
			fmt.Println("ok")
		default: // "measure"
			f := footprint{HeapMB: liveHeapMB(), RSSMB: rssMB(), MemLimitSet: debugMemLimitSet()}
			line, _ := json.Marshal(f)
			fmt.Printf("%s\n", line)
		}
	}
	if profile != nil {
		pprof.StopCPUProfile()
		profile.Close()
	}
	return in.Err()
}

// serveSpec starts what spec describes in this process.
func serveSpec(ctx context.Context, spec childSpec) (grpcAddr, httpAddr string, stop func(), err error) {
	log, closeLog, err := benchLogger()
	if err != nil {
		return "", "", nil, err
	}
	resp := &tokenbrokerv1.GetTokenResponse{}
	if err := proto.Unmarshal(spec.Response, resp); err != nil {
		closeLog()
		return "", "", nil, err
	}
	switch spec.Kind {
	case childBroker:
		cfg, err := parseConfig(spec.Config)
		if err != nil {
			closeLog()
			return "", "", nil, err
		}
		b, err := startApp(ctx, cfg, log)
		if err != nil {
			closeLog()
			return "", "", nil, err
		}
		return b.app.Server.GRPCAddr().String(), b.app.Server.HTTPAddr().String(), func() { b.stop(); closeLog() }, nil
	case childEchoGateway:
		base, stopEcho, grpcAddr, err := startGatewayEchoAddrs(ctx, resp, log)
		if err != nil {
			closeLog()
			return "", "", nil, err
		}
		return grpcAddr, strings.TrimPrefix(base, "http://"), func() { stopEcho(); closeLog() }, nil
	case childEchoGRPC, childEchoMTLS:
		var opts []grpc.ServerOption
		if spec.Kind == childEchoMTLS {
			tlsCfg, err := serverMTLS(spec.CertFile, spec.KeyFile, spec.CAFile)
			if err != nil {
				closeLog()
				return "", "", nil, err
			}
			opts = append(opts, grpc.Creds(credentials.NewTLS(tlsCfg)))
		}
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			closeLog()
			return "", "", nil, err
		}
		s := grpc.NewServer(opts...)
		tokenbrokerv1.RegisterTokenServiceServer(s, &echoService{resp: resp})
		go func() { _ = s.Serve(lis) }()
		return lis.Addr().String(), "", func() { s.Stop(); closeLog() }, nil
	}
	closeLog()
	return "", "", nil, fmt.Errorf("child server: unknown kind %q", spec.Kind)
}

// benchLogger is the logger every measured broker uses: cmd/server's JSON
// handler and batched writer, writing to /dev/null, so log formatting and
// the write are part of what is measured.
func benchLogger() (*slog.Logger, func(), error) {
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return nil, nil, err
	}
	out := logbuf.New(devnull, 100*time.Millisecond)
	return slog.New(out.JSONHandler(nil)), func() { out.Close(); devnull.Close() }, nil
}

// selfCPU is this process's CPU time, user and system, all threads.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
