package deploy

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/yaml"
)

// external are series the rules read that Prometheus or
// kube-state-metrics export, not the broker.
var external = map[string]string{
	"up":                            "Prometheus, per scrape target",
	"kube_deployment_spec_replicas": "kube-state-metrics",
	"kube_deployment_status_replicas_available": "kube-state-metrics",
}

// Grafana's interval variables, which PromQL does not know.
var grafanaIntervals = strings.NewReplacer("$__rate_interval", "5m", "${__rate_interval}", "5m", "$__interval", "1m", "$__range", "1h")

// metricNames parses a PromQL expression and returns the metric names it
// selects.
func metricNames(expr string) ([]string, error) {
	node, err := parser.NewParser(parser.Options{}).ParseExpr(grafanaIntervals.Replace(expr))
	if err != nil {
		return nil, err
	}
	var names []string
	parser.Inspect(node, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			if vs.Name == "" {
				err = fmt.Errorf("selector %s names no metric", vs)
			}
			names = append(names, vs.Name)
		}
		return nil
	})
	return names, err
}

// checkNames fails for every metric expr names that neither the broker
// exports nor is listed in external.
func checkNames(t *testing.T, where, expr string, exported map[string]bool) {
	t.Helper()
	names, err := metricNames(expr)
	if err != nil {
		t.Errorf("%s: %v\n%s", where, err, expr)
		return
	}
	for _, n := range names {
		if !exported[n] && external[n] == "" {
			t.Errorf("%s: %s is not a metric the broker exports", where, n)
		}
	}
}

// The parts of a Grafana dashboard the checks read.
type grafanaDashboard struct {
	ID            *int   `json:"id"`
	UID           string `json:"uid"`
	Title         string `json:"title"`
	SchemaVersion int    `json:"schemaVersion"`
	Templating    struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Definition string          `json:"definition"`
			Datasource *grafanaRef     `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
	Panels []grafanaPanel `json:"panels"`
}

type grafanaPanel struct {
	Title      string         `json:"title"`
	Type       string         `json:"type"`
	Datasource *grafanaRef    `json:"datasource"`
	Targets    []grafanaQuery `json:"targets"`
	Panels     []grafanaPanel `json:"panels"` // a collapsed row's
}

type grafanaQuery struct {
	Expr       string      `json:"expr"`
	Datasource *grafanaRef `json:"datasource"`
}

type grafanaRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

var labelValues = regexp.MustCompile(`^label_values\((.+),\s*[a-zA-Z_]+\)$`)

func TestDashboard(t *testing.T) {
	t.Parallel()
	var d grafanaDashboard
	if err := json.Unmarshal(readRepoFile(t, "deploy/grafana/tokenbroker.json"), &d); err != nil {
		t.Fatal(err)
	}
	// Importable as is: no numeric id, a stable uid, and every query on
	// the datasource variable rather than an id from our Grafana.
	if d.ID != nil || d.UID == "" || d.Title == "" || d.SchemaVersion == 0 {
		t.Errorf("id %v, uid %q, title %q, schemaVersion %d: want no id, a uid, a title and a schema version", d.ID, d.UID, d.Title, d.SchemaVersion)
	}
	var dsVar string
	for _, v := range d.Templating.List {
		if v.Type == "datasource" && strings.Contains(string(v.Query), "prometheus") {
			dsVar = "${" + v.Name + "}"
		}
	}
	if dsVar == "" {
		t.Fatal("no Prometheus datasource variable")
	}
	exported := brokerMetrics(t)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		if v.Datasource == nil || v.Datasource.UID != dsVar {
			t.Errorf("variable %s does not query %s", v.Name, dsVar)
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			t.Errorf("variable %s: query %s: %v", v.Name, v.Query, err)
			continue
		}
		m := labelValues.FindStringSubmatch(q.Query)
		if m == nil {
			t.Errorf("variable %s: query %q is not label_values(<selector>, <label>)", v.Name, q.Query)
			continue
		}
		checkNames(t, "variable "+v.Name, m[1], exported)
	}
	var panels []grafanaPanel
	var walk func([]grafanaPanel)
	walk = func(ps []grafanaPanel) {
		for _, p := range ps {
			panels = append(panels, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	queries := 0
	for _, p := range panels {
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != dsVar {
			t.Errorf("panel %q: datasource %+v, want %s", p.Title, p.Datasource, dsVar)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for i, q := range p.Targets {
			queries++
			if q.Datasource == nil || q.Datasource.UID != dsVar {
				t.Errorf("panel %q query %d: datasource %+v, want %s", p.Title, i, q.Datasource, dsVar)
			}
			checkNames(t, fmt.Sprintf("panel %q query %d", p.Title, i), q.Expr, exported)
		}
	}
	if queries == 0 {
		t.Error("the dashboard has no queries")
	}
}

func TestAlertRulesNameExportedMetrics(t *testing.T) {
	t.Parallel()
	var file struct {
		Groups []struct {
			Rules []struct {
				Alert       string            `json:"alert"`
				Record      string            `json:"record"`
				Expr        string            `json:"expr"`
				Annotations map[string]string `json:"annotations"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := yaml.Unmarshal(readRepoFile(t, "deploy/prometheus/alerts.yaml"), &file); err != nil {
		t.Fatal(err)
	}
	runbooks := string(readRepoFile(t, "docs/operations.md"))
	exported := brokerMetrics(t)
	rules := 0
	for _, g := range file.Groups {
		for _, r := range g.Rules {
			rules++
			checkNames(t, "alert "+r.Alert, r.Expr, exported)
			// Each alert's runbook is a heading of docs/operations.md.
			if !strings.Contains(runbooks, "\n### "+r.Alert+"\n") {
				t.Errorf("alert %s has no runbook heading \"### %s\" in docs/operations.md", r.Alert, r.Alert)
			}
			if !strings.HasSuffix(r.Annotations["runbook_url"], "docs/operations.md#"+strings.ToLower(r.Alert)) {
				t.Errorf("alert %s: runbook_url %q does not point at its runbook", r.Alert, r.Annotations["runbook_url"])
			}
		}
	}
	if rules == 0 {
		t.Error("no rules")
	}
}

var (
	exportedOnce sync.Mutex
	exported     map[string]bool
)

// brokerMetrics returns the metric names (samples, with a histogram's
// _bucket, _sum and _count) a running broker exports once it has served
// the calls that give every family a series: a fetch, a cache hit, a
// rejection and the negative-cache answer after it, an unknown profile,
// an invalidation, a wait on another holder's fetch lease in Redis, and a
// refresh ahead of expiry.
func brokerMetrics(t *testing.T) map[string]bool {
	t.Helper()
	exportedOnce.Lock()
	defer exportedOnce.Unlock()
	if exported != nil {
		return exported
	}
	redisAddr := startRedis(t)
	simAddr := freeAddr(t)
	start(t, nil, filepath.Join(bin, "vendorsim"), "--addr", simAddr, "--ttl", "10m")
	waitFor(t, "the vendor simulator listens", func() error {
		conn, err := net.DialTimeout("tcp", simAddr, time.Second)
		if err == nil {
			conn.Close()
		}
		return err
	})
	config := fmt.Sprintf(`cache:
  redis:
    addrs: [%s]
  encryption_keys: [%s]
vendors:
  smartdocumentor:
    token_url: http://%s/smartdocumentor/connect/token
service:
  refresh_ahead: 0.001
  force_refresh_interval: 0s
profiles:
  demo:
    vendor: smartdocumentor
    credentials: {client_id: demo-client, client_secret: demo-secret}
  expired:
    vendor: smartdocumentor
    credentials: {client_id: demo-client, client_secret: not-the-secret}
`, redisAddr, base64.StdEncoding.EncodeToString(make([]byte, 32)), simAddr)
	base := startBroker(t, config)
	// A replica without the in-process level exports its own Redis read
	// counters.
	noL1 := startBroker(t, strings.Replace(config, "cache:\n", "cache:\n  l1_disabled: true\n", 1))
	call := func(path, body string, want int) {
		t.Helper()
		code, resp, err := post(base+path, body)
		if err != nil || code != want {
			t.Fatalf("POST %s %s = %d %s, %v; want %d", path, body, code, resp, err, want)
		}
	}
	if code, _, err := get(http.DefaultClient, base+"/v1/vendors"); err != nil || code != http.StatusOK {
		t.Fatalf("GET /v1/vendors = %d, %v", code, err)
	}
	call("/v1/token", `{"profile":"demo"}`, http.StatusOK)
	call("/v1/token", `{"profile":"demo"}`, http.StatusOK)
	call("/v1/token", `{"profile":"expired"}`, http.StatusBadRequest)
	call("/v1/token", `{"profile":"expired"}`, http.StatusBadRequest)
	call("/v1/token", `{"profile":"no-such-profile"}`, http.StatusNotFound)
	call("/v1/token:invalidate", `{"profile":"demo","access_token":"not-the-cached-one"}`, http.StatusOK)

	// Hold demo's fetch lease as another replica would: a forced refresh
	// waits for it to expire.
	keys, err := redisDo(redisAddr, "KEYS", "tokenbroker:v1:*:token")
	if err != nil || len(keys) != 1 {
		t.Fatalf("token keys in Redis: %v, %v; want demo's", keys, err)
	}
	leaseKey := strings.TrimSuffix(keys[0], ":token") + ":lock"
	if reply, err := redisDo(redisAddr, "SET", leaseKey, "another-replica", "PX", "300", "NX"); err != nil || len(reply) != 1 || reply[0] != "OK" {
		t.Fatalf("SET %s: %v %v", leaseKey, reply, err)
	}
	call("/v1/token", `{"profile":"demo","force_refresh":true}`, http.StatusOK)

	scrape := func() (map[string]bool, error) {
		code, body, err := get(http.DefaultClient, base+"/metrics")
		if err != nil || code != http.StatusOK {
			return nil, fmt.Errorf("GET /metrics = %d, %v", code, err)
		}
		return sampleNames(body), nil
	}
	// The demo token has used more than 0.1% of its life within a second:
	// a cache hit then starts a refresh in the background.
	waitFor(t, "a refresh ahead of expiry", func() error {
		call("/v1/token", `{"profile":"demo"}`, http.StatusOK)
		names, err := scrape()
		if err == nil && !names["tokenbroker_refresh_ahead_total"] {
			err = errors.New("tokenbroker_refresh_ahead_total not exported yet")
		}
		return err
	})
	names, err := scrape()
	if err != nil {
		t.Fatal(err)
	}
	if code, resp, err := post(noL1+"/v1/token", `{"profile":"demo"}`); err != nil || code != http.StatusOK {
		t.Fatalf("GetToken without L1 = %d %s, %v", code, resp, err)
	}
	code, body, err := get(http.DefaultClient, noL1+"/metrics")
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET /metrics without L1 = %d, %v", code, err)
	}
	maps.Copy(names, sampleNames(body))
	for _, want := range []string{"tokenbroker_lock_wait_duration_seconds_count", "tokenbroker_negative_cache_hits_total", "tokenbroker_invalidations_total", "tokenbroker_build_info", "tokenbroker_redis_breaker_open"} {
		if !names[want] {
			t.Fatalf("the driven broker does not export %s", want)
		}
	}
	exported = names
	return exported
}

// startBroker starts the built broker on config with listeners on free
// loopback ports, and returns its HTTP base URL once it is ready.
func startBroker(t *testing.T, config string) string {
	t.Helper()
	httpAddr := freeAddr(t)
	config = fmt.Sprintf("grpc_addr: %s\nhttp_addr: %s\n", freeAddr(t), httpAddr) + config
	configFile := filepath.Join(t.TempDir(), "tokenbroker.yaml")
	writeFile(t, configFile, []byte(config))
	start(t, nil, filepath.Join(bin, "tokenbroker"), "--config", configFile)
	base := "http://" + httpAddr
	waitFor(t, "the broker becomes ready", func() error {
		code, body, err := get(http.DefaultClient, base+"/readyz")
		if err == nil && (code != http.StatusOK || strings.Contains(body, "degraded")) {
			err = fmt.Errorf("/readyz = %d %s", code, body)
		}
		return err
	})
	return base
}

// sampleNames reads the metric names of a Prometheus text exposition.
func sampleNames(text string) map[string]bool {
	names := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			names[line[:i]] = true
		}
	}
	return names
}

// startRedis starts a redis-server (scripts/deps.sh installs it) on a
// free loopback port, without persistence.
func startRedis(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatal("redis-server is not on PATH: run scripts/deps.sh")
	}
	addr := freeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	start(t, nil, path, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	waitFor(t, "redis-server answers", func() error {
		reply, err := redisDo(addr, "PING")
		if err == nil && !slices.Equal(reply, []string{"PONG"}) {
			err = fmt.Errorf("PING = %v", reply)
		}
		return err
	})
	return addr
}

// redisDo sends one command and returns its reply: a status or bulk
// string, or an array of bulk strings.
func redisDo(addr string, args ...string) ([]string, error) {
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	var cmd strings.Builder
	fmt.Fprintf(&cmd, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&cmd, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := conn.Write([]byte(cmd.String())); err != nil {
		return nil, err
	}
	r := bufio.NewReader(conn)
	readLine := func() (string, error) {
		line, err := r.ReadString('\n')
		return strings.TrimSuffix(line, "\r\n"), err
	}
	readBulk := func(header string) (string, error) {
		n, err := strconv.Atoi(header[1:])
		if err != nil || n < 0 {
			return "", fmt.Errorf("bulk header %q", header)
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
	line, err := readLine()
	if err != nil {
		return nil, err
	}
	switch line[0] {
	case '+':
		return []string{line[1:]}, nil
	case '-':
		return nil, errors.New(line[1:])
	case '$':
		s, err := readBulk(line)
		return []string{s}, err
	case '*':
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return nil, err
		}
		out := make([]string, 0, n)
		for range n {
			h, err := readLine()
			if err != nil {
				return nil, err
			}
			s, err := readBulk(h)
			if err != nil {
				return nil, err
			}
			out = append(out, s)
		}
		return out, nil
	}
	return nil, fmt.Errorf("unexpected reply %q", line)
}
