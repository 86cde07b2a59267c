package redistest

import (
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// pingWithin is PING with a short deadline, to tell a frozen server.
func pingWithin(addr string, d time.Duration) error {
	conn, err := net.DialTimeout("tcp", addr, d)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(d))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	buf := make([]byte, 7)
	_, err = conn.Read(buf)
	return err
}

func TestServerLifecycle(t *testing.T) {
	t.Parallel()
	s := Start(t)
	if reply, err := Do(s.Addr, "SET", "k", "v"); err != nil || reply != "OK" {
		t.Fatalf("SET = %q, %v", reply, err)
	}
	s.Freeze()
	if err := pingWithin(s.Addr, 100*time.Millisecond); err == nil {
		t.Fatal("a frozen server answered")
	}
	s.Thaw()
	if err := pingWithin(s.Addr, 10*time.Second); err != nil {
		t.Fatalf("thawed: %v", err)
	}
	if reply, _ := Do(s.Addr, "GET", "k"); reply != "v" {
		t.Fatalf("a frozen server lost its data: GET = %q", reply)
	}
	s.Kill()
	if err := pingWithin(s.Addr, 100*time.Millisecond); err == nil {
		t.Fatal("a killed server answered")
	}
	port := s.Port
	s.Restart()
	if s.Port != port {
		t.Fatalf("restarted on port %d, was %d", s.Port, port)
	}
	if reply, _ := Do(s.Addr, "EXISTS", "k"); reply != "0" {
		t.Fatalf("a restarted server kept data without persistence: EXISTS = %q", reply)
	}
}

func TestCluster(t *testing.T) {
	t.Parallel()
	c := StartCluster(t)
	if len(c.Addrs) != 3 {
		t.Fatalf("addrs = %v", c.Addrs)
	}
	info, err := Do(c.Addrs[0], "CLUSTER", "INFO")
	if err != nil || !strings.Contains(info, "cluster_known_nodes:3") {
		t.Fatalf("CLUSTER INFO = %q, %v", info, err)
	}
}

func TestMissingBinarySkipsOutsideCI(t *testing.T) {
	if os.Getenv("CI") == "true" {
		t.Skip("under CI=true a missing binary fails the test, by design")
	}
	t.Run("missing", func(t *testing.T) {
		Binary(t, "redis-server-that-does-not-exist")
		t.Error("Binary returned for a missing binary instead of skipping")
	})
}
