package bench

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"
)

// RedisServer is a throw-away redis-server on a free loopback port.
type RedisServer struct {
	cmd  *exec.Cmd
	dir  string
	Addr string
}

// StartRedis starts redis-server from PATH without persistence.
func StartRedis() (*RedisServer, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server not on PATH (scripts/deps.sh installs it): %w", err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := lis.Addr().(*net.TCPAddr).Port
	lis.Close()
	dir, err := os.MkdirTemp("", "tokenbroker-bench-redis")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir)
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	r := &RedisServer{cmd: cmd, dir: dir, Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", r.Addr, 100*time.Millisecond); err == nil {
			c.Close()
			return r, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.Stop()
	return nil, fmt.Errorf("redis-server on %s did not start", r.Addr)
}

// Freeze stops the process (SIGSTOP): connections hang, nothing answers.
func (r *RedisServer) Freeze() { _ = r.cmd.Process.Signal(syscall.SIGSTOP) }

// Thaw resumes a frozen process.
func (r *RedisServer) Thaw() { _ = r.cmd.Process.Signal(syscall.SIGCONT) }

// Stop kills the process and removes its directory.
func (r *RedisServer) Stop() {
	_ = r.cmd.Process.Signal(syscall.SIGCONT)
	_ = r.cmd.Process.Kill()
	_ = r.cmd.Wait()
	os.RemoveAll(r.dir)
}

// cacheKeyB64 is a fresh base64 AES-256 key for cache.encryption_keys.
func cacheKeyB64() string {
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	return base64.StdEncoding.EncodeToString(k)
}

// redisCacheYAML is the cache block of a broker using addr.
func redisCacheYAML(addr, key string, l1 bool) string {
	return fmt.Sprintf(`
cache:
  redis:
    addrs: [%s]
  encryption_keys: [%q]
  l1_disabled: %t
`, addr, key, !l1)
}
