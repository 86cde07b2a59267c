package redistest

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// SentinelMaster is the master name StartSentinel monitors.
const SentinelMaster = "tokenbroker"

// StartSentinel starts a Sentinel (redis-server --sentinel) monitoring
// master under the name SentinelMaster, and waits until it knows the
// master's address. It declares the master down after 5 s and has no
// password.
func StartSentinel(t testing.TB, master *Server) *Server {
	t.Helper()
	return StartSentinelWith(t, master, SentinelOptions{})
}

// SentinelOptions tune StartSentinelWith; zero values are the defaults.
type SentinelOptions struct {
	// DownAfter is how long the master may not answer before the
	// Sentinel declares it down and fails over to a replica (5 s).
	DownAfter time.Duration
	// Password protects the Sentinel itself (requirepass); a master with
	// a Password is monitored with the master's.
	Password string
}

// StartSentinelWith is StartSentinel with options.
func StartSentinelWith(t testing.TB, master *Server, o SentinelOptions) *Server {
	t.Helper()
	downAfter := o.DownAfter
	if downAfter <= 0 {
		downAfter = 5 * time.Second
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "sentinel.conf")
	ms := strconv.FormatInt(downAfter.Milliseconds(), 10)
	body := "sentinel monitor " + SentinelMaster + " 127.0.0.1 " + strconv.Itoa(master.Port) + " 1\n" +
		"sentinel down-after-milliseconds " + SentinelMaster + " " + ms + "\n" +
		"sentinel failover-timeout " + SentinelMaster + " " + strconv.FormatInt(max(3*downAfter.Milliseconds(), 3000), 10) + "\n"
	if master.Password != "" {
		body += "sentinel auth-pass " + SentinelMaster + " " + master.Password + "\n"
	}
	if o.Password != "" {
		body += "requirepass " + o.Password + "\n"
	}
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	// The config file must come first: redis-server reads it, then the
	// options; Sentinel rewrites it as it learns.
	s := startWith(t, []string{conf, "--sentinel"})
	s.Password = o.Password
	deadline := time.Now().Add(startTimeout)
	for {
		if addr, err := DoAuth(s.Addr, o.Password, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SentinelMaster); err == nil && addr != "" {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: sentinel does not know master %s", SentinelMaster)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// StartReplica starts a redis-server replicating master and waits until
// its link to the master is up.
func StartReplica(t testing.TB, master *Server) *Server {
	t.Helper()
	r := Start(t, "--replicaof", "127.0.0.1", strconv.Itoa(master.Port))
	deadline := time.Now().Add(startTimeout)
	for {
		if info, err := Do(r.Addr, "INFO", "replication"); err == nil && strings.Contains(info, "master_link_status:up") {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: replica %s never linked to master %s", r.Addr, master.Addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
