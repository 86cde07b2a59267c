package redistest

import (
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Cluster is a Redis Cluster of three masters, with or without replicas.
type Cluster struct {
	Nodes []*Server
	// Addrs are the nodes' addresses, as a cluster client's seed list.
	Addrs []string
}

// StartCluster starts three cluster-enabled servers, joins them with
// redis-cli --cluster create, and waits until every node reports
// cluster_state:ok.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	return startCluster(t, 0, "5000")
}

// StartClusterWithReplicas starts three masters with one replica each
// (six servers, --cluster-replicas 1) and a node timeout of one second,
// so that a killed master's replica is promoted within a few seconds;
// the other shards keep serving meanwhile (cluster-require-full-coverage
// no). It returns once every master has its replica attached.
func StartClusterWithReplicas(t testing.TB) *Cluster {
	t.Helper()
	c := startCluster(t, 1, "1000", "--cluster-require-full-coverage", "no")
	deadline := time.Now().Add(startTimeout)
	for _, n := range c.Nodes {
		for {
			info, err := Do(n.Addr, "INFO", "replication")
			if err == nil && (strings.Contains(info, "role:slave") && strings.Contains(info, "master_link_status:up") ||
				strings.Contains(info, "role:master") && strings.Contains(info, "connected_slaves:1")) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("redistest: cluster node %s has no working replication within %v: %v\n%s", n.Addr, startTimeout, err, info)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return c
}

// MasterOf returns the node that serves key's slot now.
func (c *Cluster) MasterOf(t testing.TB, key string) *Server {
	t.Helper()
	n, err := c.Owner(key)
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	return n
}

// Owner returns the node that serves key's slot now, as the first node
// that knows one sees the cluster; an error while none does.
func (c *Cluster) Owner(key string) (*Server, error) {
	for _, asked := range c.Nodes {
		slotText, err := Do(asked.Addr, "CLUSTER", "KEYSLOT", key)
		if err != nil {
			continue
		}
		slot, _ := strconv.Atoi(slotText)
		nodes, err := Do(asked.Addr, "CLUSTER", "NODES")
		if err != nil {
			continue
		}
		for line := range strings.Lines(nodes) {
			f := strings.Fields(line)
			if len(f) < 9 || !strings.Contains(f[2], "master") || strings.Contains(f[2], "fail") {
				continue
			}
			addr, _, _ := strings.Cut(f[1], "@")
			for _, r := range f[8:] {
				lo, hi, isRange := strings.Cut(r, "-")
				if !isRange {
					hi = lo
				}
				l, err1 := strconv.Atoi(lo)
				h, err2 := strconv.Atoi(hi)
				if err1 == nil && err2 == nil && l <= slot && slot <= h {
					for _, n := range c.Nodes {
						if n.Addr == addr {
							return n, nil
						}
					}
				}
			}
		}
		// This node does not know an owner yet (gossip after a
		// failover): ask the next.
	}
	return nil, fmt.Errorf("no master serves the slot of %q", key)
}

func startCluster(t testing.TB, replicas int, nodeTimeout string, extra ...string) *Cluster {
	t.Helper()
	cli := Binary(t, "redis-cli")
	c := &Cluster{}
	for range 3 * (1 + replicas) {
		n := Start(t, append([]string{"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", nodeTimeout}, extra...)...)
		c.Nodes = append(c.Nodes, n)
		c.Addrs = append(c.Addrs, n.Addr)
	}
	args := append([]string{"--cluster", "create"}, c.Addrs...)
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	out, err := exec.Command(cli, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("redistest: redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(startTimeout)
	for _, n := range c.Nodes {
		for {
			info, err := Do(n.Addr, "CLUSTER", "INFO")
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("redistest: cluster node %s not ok within %v: %v\n%s", n.Addr, startTimeout, err, info)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return c
}
