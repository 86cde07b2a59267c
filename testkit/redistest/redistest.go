// Package redistest starts real redis-server processes for tests: a
// standalone server or a three-master Redis Cluster on free loopback ports,
// each in its own t.TempDir(), stopped in t.Cleanup. Servers can be killed
// and restarted on the same port, or frozen (SIGSTOP) and thawed, to test
// how the broker lives through Redis outages.
//
// The binaries come from PATH (redis-server, and redis-cli for a cluster).
// When they are missing the test is skipped, except under CI=true, where a
// missing Redis is a failure: CI must never pass by skipping the Redis suite.
package redistest

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// startTimeout bounds how long a server may take to answer PING.
const startTimeout = 10 * time.Second

// Binary returns the path of name on PATH. A missing binary skips the test,
// or fails it when the environment has CI=true.
func Binary(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("redistest: %s not found on PATH, and CI=true forbids skipping the Redis tests (.ci/run installs it with scripts/deps.sh)", name)
	}
	t.Skipf("redistest: %s not found on PATH; install Redis to run this test", name)
	return ""
}

// Server is one redis-server process.
type Server struct {
	t    testing.TB
	bin  string
	dir  string
	args []string
	// Port and Addr ("127.0.0.1:<port>") stay the same across restarts.
	Port int
	Addr string
	// Password is the --requirepass the server was started with, if any.
	Password string
	// TLS, for a server from StartTLS, trusts its certificate.
	TLS *tls.Config

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// Start starts a standalone redis-server on a free loopback port, without
// persistence, and waits until it answers PING. extra are further
// command-line options, such as "--cluster-enabled", "yes".
func Start(t testing.TB, extra ...string) *Server {
	t.Helper()
	return startWith(t, nil, extra...)
}

// startWith starts redis-server with lead arguments (a config file) before
// the standard options and extra.
func startWith(t testing.TB, lead []string, extra ...string) *Server {
	t.Helper()
	return startServer(t, lead, nil, extra...)
}

// tlsFiles are a TLS server's certificate and key files, and the client
// configuration that trusts the certificate.
type tlsFiles struct {
	cert, key string
	client    *tls.Config
}

// startServer starts redis-server on a free port: plain, or TLS only
// (the plain port off) when tf is set.
func startServer(t testing.TB, lead []string, tf *tlsFiles, extra ...string) *Server {
	t.Helper()
	bin := Binary(t, "redis-server")
	dir := t.TempDir()
	var lastErr error
	// A port found free can be taken by another process before the server
	// binds it; try a few.
	for range 3 {
		port, err := FreePort()
		if err != nil {
			t.Fatal(err)
		}
		s := &Server{t: t, bin: bin, dir: dir, Port: port, Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
		for i, a := range extra {
			if a == "--requirepass" && i+1 < len(extra) {
				s.Password = extra[i+1]
			}
		}
		portArgs := []string{"--port", strconv.Itoa(port)}
		if tf != nil {
			s.TLS = tf.client
			portArgs = []string{"--port", "0", "--tls-port", strconv.Itoa(port),
				"--tls-cert-file", tf.cert, "--tls-key-file", tf.key, "--tls-auth-clients", "no"}
		}
		s.args = append(append(append(lead[:len(lead):len(lead)], portArgs...),
			"--bind", "127.0.0.1",
			"--save", "",
			"--appendonly", "no",
			"--dir", dir,
			"--logfile", filepath.Join(dir, "redis.log"),
		), extra...)
		if lastErr = s.start(); lastErr == nil {
			t.Cleanup(s.cleanup)
			return s
		}
	}
	t.Fatalf("redistest: redis-server did not start: %v\n%s", lastErr, tailFile(filepath.Join(dir, "redis.log")))
	return nil
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("redistest: net.Listen: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// start runs the process and waits for PING; the caller holds no lock.
func (s *Server) start() error {
	cmd := exec.Command(s.bin, s.args...)
	cmd.Dir = s.dir
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.bin, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()
	deadline := time.Now().Add(startTimeout)
	for {
		if err := s.ping(); err == nil {
			return nil
		} else if time.Now().After(deadline) {
			s.Kill()
			return fmt.Errorf("no PONG from %s within %v: %w", s.Addr, startTimeout, err)
		}
		select {
		case <-exited:
			return fmt.Errorf("redis-server on port %d exited at start", s.Port)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Kill ends the server with SIGKILL (no shutdown, data lost) and waits for
// it to exit.
func (s *Server) Kill() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-exited
}

// Restart starts a killed server again on the same port and waits for PING.
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill()
	if err := s.start(); err != nil {
		s.t.Fatalf("redistest: restart: %v\n%s", err, tailFile(filepath.Join(s.dir, "redis.log")))
	}
}

// Freeze stops the server with SIGSTOP: connections stay open and
// established, and nothing is answered, like a stalled host. It returns
// once the process is stopped (FreezeProcess), so nothing the test sends
// afterwards is answered until Thaw.
func (s *Server) Freeze() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		s.t.Fatal("redistest: Freeze of a server that is not running")
	}
	if err := FreezeProcess(s.cmd.Process); err != nil {
		s.t.Fatal(err)
	}
}

// Thaw resumes a frozen server with SIGCONT and returns once it runs
// again (ThawProcess).
func (s *Server) Thaw() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		s.t.Fatal("redistest: Thaw of a server that is not running")
	}
	if err := ThawProcess(s.cmd.Process); err != nil {
		s.t.Fatal(err)
	}
}

// cleanup kills the server; SIGKILL ends a frozen process too.
func (s *Server) cleanup() { s.Kill() }

// Do sends one command over a fresh connection and returns the reply as
// text: bulk and simple strings, integers, and flat arrays of those joined
// by spaces. It is for helpers and assertions that must not depend on a
// client library.
func Do(addr string, args ...string) (string, error) {
	return DoAuth(addr, "", args...)
}

// DoAuth is Do on a connection that first authenticates with password
// (none when empty).
func DoAuth(addr, password string, args ...string) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	rd := bufio.NewReader(conn)
	if password != "" {
		if _, err := conn.Write(command("AUTH", password)); err != nil {
			return "", err
		}
		if _, err := readReply(rd, false); err != nil {
			return "", fmt.Errorf("AUTH: %w", err)
		}
	}
	if _, err := conn.Write(command(args...)); err != nil {
		return "", err
	}
	return readReply(rd, true)
}

// command encodes args as a RESP array of bulk strings.
func command(args ...string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	return []byte(b.String())
}

func readReply(rd *bufio.Reader, arrays bool) (string, error) {
	line, err := rd.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("empty reply")
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "", errors.New(line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", err
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(rd, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(line[1:])
		if err != nil || !arrays {
			return "", fmt.Errorf("unsupported reply %q", line)
		}
		items := make([]string, 0, max(n, 0))
		for range n {
			item, err := readReply(rd, false)
			if err != nil {
				return "", err
			}
			items = append(items, item)
		}
		return strings.Join(items, " "), nil
	}
	return "", fmt.Errorf("unsupported reply %q", line)
}

func (s *Server) ping() error {
	if s.TLS != nil {
		return pingTLS(s.Addr, s.TLS)
	}
	reply, err := Do(s.Addr, "PING")
	if err != nil && strings.HasPrefix(err.Error(), "NOAUTH") {
		return nil // up, and wants a password
	}
	if err != nil {
		return err
	}
	if reply != "PONG" {
		return fmt.Errorf("PING answered %q", reply)
	}
	return nil
}

// tailFile returns the end of a log file for a failure message.
func tailFile(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if len(b) > 4096 {
		b = b[len(b)-4096:]
	}
	return string(b)
}
