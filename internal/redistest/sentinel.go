package redistest

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// SentinelMaster is the master name StartSentinel monitors.
const SentinelMaster = "tokenbroker"

// StartSentinel starts a Sentinel (redis-server --sentinel) monitoring
// master under the name SentinelMaster, and waits until it knows the
// master's address.
func StartSentinel(t testing.TB, master *Server) *Server {
	t.Helper()
	dir := t.TempDir()
	conf := filepath.Join(dir, "sentinel.conf")
	body := "sentinel monitor " + SentinelMaster + " 127.0.0.1 " + strconv.Itoa(master.Port) + " 1\n" +
		"sentinel down-after-milliseconds " + SentinelMaster + " 5000\n"
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	// The config file must come first: redis-server reads it, then the
	// options; Sentinel rewrites it as it learns.
	s := startWith(t, []string{conf, "--sentinel"})
	deadline := time.Now().Add(startTimeout)
	for {
		if addr, err := Do(s.Addr, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SentinelMaster); err == nil && addr != "" {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: sentinel does not know master %s", SentinelMaster)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
