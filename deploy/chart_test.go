package deploy

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/big"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

const chartDir = "deploy/helm/tokenbroker"

// The value sets CI renders: the smallest install that runs (the defaults
// and one caller; the defaults alone refuse to render), and the full
// production example.
var valueSets = map[string][]string{
	"minimal values":    minimalValues,
	"production values": {"-f", chartDir + "/ci/production-values.yaml", "--kube-version", "1.31"},
}

// minimalValues render for a current cluster: offline, Helm assumes
// Kubernetes 1.20, which the chart's kubeVersion (>= 1.23) refuses.
var minimalValues = []string{"-f", chartDir + "/ci/minimal-values.yaml", "--kube-version", "1.31"}

// exampleAPIKey is the key whose SHA-256 both CI value sets give a caller.
const exampleAPIKey = "example-api-key-change-me"

// rendered is one install's objects, by kind and name.
type rendered map[string]any

func (r rendered) get(t *testing.T, kind, name string) any {
	t.Helper()
	obj, ok := r[kind+"/"+name]
	if !ok {
		t.Fatalf("no %s %s among %v", kind, name, slices.Sorted(maps.Keys(r)))
	}
	return obj
}

// newObject returns the Go type of an apiVersion and kind the chart may
// render; anything else is a test failure.
func newObject(apiVersion, kind string) (any, error) {
	switch apiVersion + " " + kind {
	case "v1 ConfigMap":
		return &corev1.ConfigMap{}, nil
	case "v1 Service":
		return &corev1.Service{}, nil
	case "v1 ServiceAccount":
		return &corev1.ServiceAccount{}, nil
	case "v1 Pod":
		return &corev1.Pod{}, nil
	case "apps/v1 Deployment":
		return &appsv1.Deployment{}, nil
	case "policy/v1 PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, nil
	case "autoscaling/v2 HorizontalPodAutoscaler":
		return &autoscalingv2.HorizontalPodAutoscaler{}, nil
	case "networking.k8s.io/v1 NetworkPolicy":
		return &networkingv1.NetworkPolicy{}, nil
	case "monitoring.coreos.com/v1 ServiceMonitor":
		return &monitoringv1.ServiceMonitor{}, nil
	case "monitoring.coreos.com/v1 PrometheusRule":
		return &monitoringv1.PrometheusRule{}, nil
	}
	return nil, fmt.Errorf("the chart renders %s %s, which this test does not know", apiVersion, kind)
}

// decodeStrict decodes JSON into v, failing on unknown or duplicate fields.
func decodeStrict(doc []byte, v any) error {
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data")
	}
	return nil
}

// render runs helm template and decodes every object strictly.
func render(t *testing.T, args ...string) rendered {
	t.Helper()
	out, err := run(t, nil, "helm", append([]string{"template", "tokenbroker", chartDir, "--namespace", "tokens"}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	objects := rendered{}
	reader := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(out)))
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		var meta struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			t.Fatalf("%v in\n%s", err, doc)
		}
		if meta.Kind == "" {
			continue // a document with only comments
		}
		obj, err := newObject(meta.APIVersion, meta.Kind)
		if err != nil {
			t.Fatal(err)
		}
		if err := decodeStrict(doc, obj); err != nil {
			t.Fatalf("%s %s does not decode strictly into its type: %v", meta.Kind, meta.Metadata.Name, err)
		}
		key := meta.Kind + "/" + meta.Metadata.Name
		if _, dup := objects[key]; dup {
			t.Fatalf("%s rendered twice", key)
		}
		objects[key] = obj
	}
	return objects
}

func TestChartRendersStrictlyValidObjects(t *testing.T) {
	t.Parallel()
	for name, args := range valueSets {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			objects := render(t, args...)
			for _, want := range []string{"ConfigMap/tokenbroker", "Deployment/tokenbroker", "Service/tokenbroker", "Service/tokenbroker-headless", "PodDisruptionBudget/tokenbroker"} {
				objects.get(t, strings.Split(want, "/")[0], strings.Split(want, "/")[1])
			}
		})
	}
}

func TestChartRefusesContradictions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"the defaults: no callers", []string{"--set", "config.clients=null"}, "no callers are configured"},
		{"Kubernetes older than the chart's kubeVersion", []string{"--kube-version", "1.22"}, "chart requires kubeVersion: >=1.23.0-0"},
		{"a value of the wrong type", []string{"--set", "replicaCount=three"}, "at '/replicaCount': got string, want integer"},
		{"a misspelled value", []string{"--set", "replicaCont=5"}, "additional properties 'replicaCont' not allowed"},
		{"a misspelled nested value", []string{"--set", "redis.adrs[0]=redis:6379"}, "at '/redis': additional properties 'adrs' not allowed"},
		{"a port out of range", []string{"--set", "ports.http=80800"}, "at '/ports/http'"},
		{"an unknown broker config key", []string{"--set", "config.servce.refresh_ahead=0.5"}, "additional properties 'servce' not allowed"},
		{"an unknown access log policy", []string{"--set", "config.access_log.cache_hits=some"}, "at '/config/access_log/cache_hits'"},
		{"alerts that cannot select this install", []string{"--set", "metrics.prometheusRule.enabled=true"}, "set metrics.prometheusRule.selector"},
		{"Redis without encryption keys", []string{"--set", "redis.addrs[0]=redis:6379"}, "redis needs encryptionKeys"},
		{"listeners in config", []string{"--set", "config.grpc_addr=0.0.0.0:1"}, "config.grpc_addr is set by the chart"},
		{"mTLS without TLS", []string{"--set", "tls.clientCA.enabled=true"}, "needs tls.secretName"},
		{"a memory limit GOMEMLIMIT cannot follow", []string{"--set", "resources.limits.memory=0.5Gi"}, "goMemLimitPercent"},
		{"a digest that is not one", []string{"--set", "image.digest=latest"}, "sha256:"},
		{"secret keys without the Secret", []string{"--set", "encryptionKeys[0]=k"}, "set existingSecret"},
		{"a NetworkPolicy that would block Redis", []string{"--set", "networkPolicy.enabled=true", "--set", "redis.addrs[0]=redis:6379", "--set", "existingSecret=s", "--set", "encryptionKeys[0]=k"}, "networkPolicy.redis.peers"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			args := tc.args
			if args != nil {
				// Callers configured, so that each case fails on its own.
				args = append(slices.Clone(minimalValues), args...)
			}
			_, err := run(t, nil, "helm", append([]string{"template", "tokenbroker", chartDir}, args...)...)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("helm template %v = %v, want an error containing %q", tc.args, err, tc.wantErr)
			}
		})
	}
}

func TestChartAgreesWithTheServer(t *testing.T) {
	t.Parallel()
	for name, args := range valueSets {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			checkInstall(t, render(t, args...))
		})
	}
}

// drainTimeout is what Kubernetes must wait after the broker's
// shutdown_delay: the drain of in-flight calls (at most 15 s, server
// package) and a margin to exit.
const drainTimeout = 20 * time.Second

// defaultShutdownDelay is shutdown_delay's default (docs/design.md, Operations).
const defaultShutdownDelay = 5 * time.Second

// envRef and fileRef are the config's secret references (docs/design.md, Configuration).
var (
	envRef  = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)
	fileRef = regexp.MustCompile(`file:(/[^\s"',\]}]+)`)
)

func checkInstall(t *testing.T, objects rendered) {
	deploy := objects.get(t, "Deployment", "tokenbroker").(*appsv1.Deployment)
	pod := deploy.Spec.Template
	selector, err := metav1LabelSelector(deploy.Spec.Selector.MatchLabels)
	if err != nil || !selector.Matches(labels.Set(pod.Labels)) {
		t.Fatalf("the Deployment's selector %v does not match its pods' labels %v", deploy.Spec.Selector, pod.Labels)
	}
	if sc := pod.Spec.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		t.Error("pods must run as non-root")
	}
	if pod.Spec.AutomountServiceAccountToken == nil || *pod.Spec.AutomountServiceAccountToken {
		t.Error("the broker does not talk to the Kubernetes API: no service account token")
	}
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("containers = %d, want 1", len(pod.Spec.Containers))
	}
	c := pod.Spec.Containers[0]
	if sc := c.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("the container must have a read-only root and no privilege escalation")
	}

	// The config file: --config names a key of the mounted ConfigMap.
	configPath := flagValue(t, c.Args, "--config")
	cmName := ""
	mounts := map[string]corev1.Volume{} // mount path -> volume
	for _, vm := range c.VolumeMounts {
		for _, v := range pod.Spec.Volumes {
			if v.Name == vm.Name {
				mounts[vm.MountPath] = v
			}
		}
	}
	if v, ok := mounts[path.Dir(configPath)]; ok && v.ConfigMap != nil {
		cmName = v.ConfigMap.Name
	}
	cm := objects.get(t, "ConfigMap", cmName).(*corev1.ConfigMap)
	configText, ok := cm.Data[path.Base(configPath)]
	if !ok {
		t.Fatalf("ConfigMap %s has no key %s (--config %s)", cmName, path.Base(configPath), configPath)
	}
	if pod.Annotations["checksum/config"] == "" {
		t.Error("no checksum/config annotation: a config change would not roll the pods")
	}
	var cfg brokerConfig
	if err := yaml.Unmarshal([]byte(configText), &cfg); err != nil {
		t.Fatal(err)
	}

	// Env: every ${NAME} the config references is set.
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	for _, m := range envRef.FindAllStringSubmatch(configText, -1) {
		if _, ok := env[m[1]]; !ok {
			t.Errorf("the config references ${%s}, which the container's env does not set", m[1])
		}
	}
	checkGOMEMLIMIT(t, c, env)

	// Files: every file the config names is in a mounted volume, and a
	// file of a Secret volume with items is one of its items.
	var files []string
	for _, m := range fileRef.FindAllStringSubmatch(configText, -1) {
		files = append(files, m[1])
	}
	files = append(files, cfg.TLS.CertFile, cfg.TLS.KeyFile, cfg.TLS.ClientCAFile)
	if cfg.Cache.Redis != nil {
		files = append(files, cfg.Cache.Redis.TLSCAFile)
	}
	for _, f := range files {
		if f == "" {
			continue
		}
		v, ok := mounts[path.Dir(f)]
		if !ok {
			t.Errorf("the config names %s, in no mounted volume", f)
			continue
		}
		if v.Secret != nil && len(v.Secret.Items) > 0 && !slices.ContainsFunc(v.Secret.Items, func(k corev1.KeyToPath) bool { return k.Path == path.Base(f) }) {
			t.Errorf("the config names %s, but volume %s mounts only %v", f, v.Name, v.Secret.Items)
		}
	}

	// Ports: the container's named ports are the config's listeners, on
	// every interface of the pod.
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	for name, addr := range map[string]string{"grpc": cfg.GRPCAddr, "http": cfg.HTTPAddr} {
		host, port, err := net.SplitHostPort(addr)
		if err != nil || host != "0.0.0.0" || port != strconv.Itoa(int(ports[name])) {
			t.Errorf("%s_addr %q, container port %s = %d", name, addr, name, ports[name])
		}
	}
	scheme := corev1.URISchemeHTTP
	if cfg.TLS.CertFile != "" {
		scheme = corev1.URISchemeHTTPS
	}
	for name, probe := range map[string]*corev1.Probe{"/healthz": c.LivenessProbe, "/readyz": c.ReadinessProbe} {
		if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Path != name || probe.HTTPGet.Port.String() != "http" || probe.HTTPGet.Scheme != scheme {
			t.Errorf("probe %s: %+v, want GET %s %s on port http", name, probe, scheme, name)
		}
	}
	if c.ReadinessProbe != nil && c.ReadinessProbe.TimeoutSeconds < 1 {
		t.Errorf("readiness timeout %ds: /readyz may take up to 1s", c.ReadinessProbe.TimeoutSeconds)
	}
	if a := pod.Annotations["prometheus.io/port"]; a != "" && a != strconv.Itoa(int(ports["http"])) {
		t.Errorf("prometheus.io/port = %q, want the http port %d", a, ports["http"])
	}

	// Shutdown: Kubernetes waits for the delay and the drain.
	delay := defaultShutdownDelay
	if cfg.ShutdownDelay != "" {
		if delay, err = time.ParseDuration(cfg.ShutdownDelay); err != nil {
			t.Fatalf("shutdown_delay %q: %v", cfg.ShutdownDelay, err)
		}
	}
	if g := pod.Spec.TerminationGracePeriodSeconds; g == nil || time.Duration(*g)*time.Second < delay+drainTimeout {
		t.Errorf("terminationGracePeriodSeconds %v < shutdown_delay %v + drain %v", g, delay, drainTimeout)
	}

	checkServices(t, objects, pod.Labels, ports)
	checkBrokerRuns(t, configText, configPath, cfg, env, mounts, helmTestArgs(t, objects, cfg))
}

// brokerConfig is the part of tokenbroker.yaml the checks read; the
// broker itself checks the whole file (--check-config).
type brokerConfig struct {
	GRPCAddr      string `json:"grpc_addr"`
	HTTPAddr      string `json:"http_addr"`
	ShutdownDelay string `json:"shutdown_delay"`
	Cache         struct {
		Redis *struct {
			Addrs     []string `json:"addrs"`
			TLSCAFile string   `json:"tls_ca_file"`
		} `json:"redis"`
		EncryptionKeys []string `json:"encryption_keys"`
	} `json:"cache"`
	Clients map[string]any `json:"clients"`
	TLS     struct {
		CertFile     string `json:"cert_file"`
		KeyFile      string `json:"key_file"`
		ClientCAFile string `json:"client_ca_file"`
	} `json:"tls"`
}

func checkGOMEMLIMIT(t *testing.T, c corev1.Container, env map[string]corev1.EnvVar) {
	t.Helper()
	limit, ok := c.Resources.Limits[corev1.ResourceMemory]
	if !ok {
		return
	}
	e, ok := env["GOMEMLIMIT"]
	if !ok {
		t.Error("a memory limit and no GOMEMLIMIT")
		return
	}
	n, err := strconv.ParseInt(e.Value, 10, 64)
	if err != nil || n <= 0 || n >= limit.Value() || n < limit.Value()/2 {
		t.Errorf("GOMEMLIMIT %q for a %s limit: want a byte count a little below it", e.Value, limit.String())
	}
}

func checkServices(t *testing.T, objects rendered, podLabels map[string]string, ports map[string]int32) {
	t.Helper()
	services := map[string]*corev1.Service{}
	for key, obj := range objects {
		if svc, ok := obj.(*corev1.Service); ok {
			services[key] = svc
			if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(podLabels)) || len(svc.Spec.Selector) == 0 {
				t.Errorf("%s does not select the pods", key)
			}
			for _, p := range svc.Spec.Ports {
				if cp, ok := ports[p.TargetPort.String()]; !ok || cp != p.Port {
					t.Errorf("%s port %s: %d -> %q, container ports %v", key, p.Name, p.Port, p.TargetPort.String(), ports)
				}
			}
		}
	}
	headless := services["Service/tokenbroker-headless"]
	if headless == nil || headless.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Error("no headless Service for round_robin gRPC clients")
	} else if slices.ContainsFunc(headless.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == "http" }) {
		t.Error("the headless Service has the http port: a ServiceMonitor would scrape every pod twice")
	}
	if obj, ok := objects["PodDisruptionBudget/tokenbroker"]; ok {
		pdb := obj.(*policyv1.PodDisruptionBudget)
		sel, err := metav1LabelSelector(pdb.Spec.Selector.MatchLabels)
		if err != nil || !sel.Matches(labels.Set(podLabels)) {
			t.Error("the PodDisruptionBudget does not select the pods")
		}
	}
	if obj, ok := objects["ServiceMonitor/tokenbroker"]; ok {
		sm := obj.(*monitoringv1.ServiceMonitor)
		main := services["Service/tokenbroker"]
		sel, err := metav1LabelSelector(sm.Spec.Selector.MatchLabels)
		if err != nil || !sel.Matches(labels.Set(main.Labels)) {
			t.Error("the ServiceMonitor does not select the Service")
		}
		if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != "http" || sm.Spec.Endpoints[0].Path != "/metrics" {
			t.Errorf("ServiceMonitor endpoints %+v, want /metrics on port http", sm.Spec.Endpoints)
		}
		if main.Labels[sm.Spec.JobLabel] != "tokenbroker" {
			t.Errorf("the scrape job would be %q: the alert rules select job=\"tokenbroker\"", main.Labels[sm.Spec.JobLabel])
		}
		if ep := sm.Spec.Endpoints[0]; ep.Scheme != nil && *ep.Scheme == "https" {
			tc := ep.TLSConfig
			if tc == nil || tc.InsecureSkipVerify != nil && *tc.InsecureSkipVerify ||
				tc.ServerName == nil || *tc.ServerName != "tokenbroker.tokens.svc" ||
				tc.CA.Secret == nil || tc.CA.Secret.Key != "ca.crt" {
				t.Errorf("the HTTPS scrape must verify the certificate (CA ca.crt, server name tokenbroker.tokens.svc): %+v", tc)
			}
		}
	}
	if obj, ok := objects["PrometheusRule/tokenbroker"]; ok {
		var file struct {
			Groups []monitoringv1.RuleGroup `json:"groups"`
		}
		// The install's own matchers in place of the plain file's.
		installs := strings.NewReplacer(
			`job="tokenbroker"`, `job="tokenbroker", namespace="tokens", service="tokenbroker"`,
			`deployment="tokenbroker"`, `namespace="tokens", deployment="tokenbroker"`,
		).Replace(string(readRepoFile(t, "deploy/prometheus/alerts.yaml")))
		if err := decodeStrict([]byte(installs), &file); err != nil {
			t.Fatal(err)
		}
		got, _ := json.Marshal(obj.(*monitoringv1.PrometheusRule).Spec.Groups)
		want, _ := json.Marshal(file.Groups)
		if !bytes.Equal(got, want) {
			t.Errorf("the PrometheusRule's groups are not deploy/prometheus/alerts.yaml's for this install:\n%s\nwant\n%s", got, want)
		}
	}
	if obj, ok := objects["ConfigMap/tokenbroker-dashboard"]; ok {
		if obj.(*corev1.ConfigMap).Data["tokenbroker.json"] != strings.TrimRight(string(readRepoFile(t, "deploy/grafana/tokenbroker.json")), "\n") {
			t.Error("the dashboard ConfigMap is not deploy/grafana/tokenbroker.json")
		}
	}
}

func metav1LabelSelector(matchLabels map[string]string) (labels.Selector, error) {
	if len(matchLabels) == 0 {
		return nil, errors.New("empty selector")
	}
	return labels.SelectorFromSet(matchLabels), nil
}

func flagValue(t *testing.T, args []string, flag string) string {
	t.Helper()
	i := slices.Index(args, flag)
	if i < 0 || i+1 >= len(args) {
		t.Fatalf("%v has no %s value", args, flag)
	}
	return args[i+1]
}

func readRepoFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, filepath.FromSlash(name)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkBrokerRuns runs the broker built from this repository on the
// rendered config, with the pod's mounts moved to a temporary directory
// (Secret files made up, TLS from a test CA) and the listeners and Redis
// moved to loopback: --check-config accepts it, the server starts, its
// probe and scrape paths answer 200 within 1 s, and the healthcheck
// subcommand agrees.
func checkBrokerRuns(t *testing.T, configText, configPath string, cfg brokerConfig, env map[string]corev1.EnvVar, mounts map[string]corev1.Volume, helmTest []string) {
	t.Helper()
	root := t.TempDir()
	moved := func(p string) string { return filepath.Join(root, filepath.FromSlash(p)) }
	cacheKeys := map[string]bool{}
	for _, k := range cfg.Cache.EncryptionKeys {
		cacheKeys[strings.TrimPrefix(k, "file:")] = true
	}
	var tlsFiles map[string][]byte
	if cfg.TLS.CertFile != "" {
		tlsFiles = testTLS(t)
	}
	for _, m := range fileRef.FindAllStringSubmatch(configText, -1) {
		value := []byte("made-up-secret\n")
		if cacheKeys[m[1]] {
			value = []byte(base64.StdEncoding.EncodeToString(make([]byte, 32)))
		}
		writeFile(t, moved(m[1]), value)
	}
	for p, name := range map[string]string{cfg.TLS.CertFile: "cert", cfg.TLS.KeyFile: "key", cfg.TLS.ClientCAFile: "ca"} {
		if p != "" {
			writeFile(t, moved(p), tlsFiles[name])
		}
	}
	if cfg.Cache.Redis != nil && cfg.Cache.Redis.TLSCAFile != "" {
		writeFile(t, moved(cfg.Cache.Redis.TLSCAFile), tlsFiles["ca"])
	}
	var environ []string
	for name, e := range env {
		if e.Value != "" {
			environ = append(environ, name+"="+e.Value)
		} else {
			environ = append(environ, name+"=made-up-value")
		}
	}

	grpcAddr, httpAddr := freeAddr(t), freeAddr(t)
	replace := []string{"/etc/tokenbroker/", moved("/etc/tokenbroker") + "/", cfg.GRPCAddr, grpcAddr, cfg.HTTPAddr, httpAddr}
	if cfg.Cache.Redis != nil {
		// Nothing listens there: the broker starts degraded, as it does
		// when Redis is down, and still answers /readyz within 1 s.
		for _, a := range cfg.Cache.Redis.Addrs {
			replace = append(replace, a, "127.0.0.1:1")
		}
	}
	text := strings.NewReplacer(replace...).Replace(configText)
	file := moved(configPath)
	writeFile(t, file, []byte(text))

	if out, err := run(t, environ, "tokenbroker", "--check-config", "--config", file); err != nil {
		t.Fatalf("the broker rejects the rendered config: %v", err)
	} else if !strings.Contains(out, "ok") {
		t.Errorf("--check-config printed %q", out)
	}
	args := []string{"--config", file}
	if len(cfg.Clients) == 0 {
		args = append(args, "--insecure-allow-unauthenticated")
	}
	start(t, environ, filepath.Join(bin, "tokenbroker"), args...)
	scheme := "http"
	if cfg.TLS.CertFile != "" {
		scheme = "https"
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	defer client.CloseIdleConnections()
	base := scheme + "://" + httpAddr
	waitFor(t, "the broker becomes ready", func() error {
		code, body, err := get(client, base+"/readyz")
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("/readyz = %d %s", code, body)
		}
		return err
	})
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		began := time.Now()
		if code, _, err := get(client, base+p); err != nil || code != http.StatusOK {
			t.Errorf("GET %s = %d, %v", p, code, err)
		}
		if took := time.Since(began); took > time.Second {
			t.Errorf("GET %s took %v", p, took)
		}
	}
	if _, err := run(t, environ, "tokenbroker", "healthcheck", "--config", file); err != nil {
		t.Errorf("healthcheck against a ready broker: %v", err)
	}

	// helm test's command, with the Service's address replaced by the
	// broker's and its files by local ones.
	var testFiles []string
	for i, a := range helmTest {
		switch {
		case i > 0 && helmTest[i-1] == "--addr":
			helmTest[i] = httpAddr
		case strings.HasPrefix(a, "/etc/tokenbroker/"):
			helmTest[i] = moved(a)
			testFiles = append(testFiles, a)
		}
	}
	for _, f := range testFiles {
		switch path.Base(f) {
		case "ca.crt":
			writeFile(t, moved(f), tlsFiles["ca"])
		default:
			writeFile(t, moved(f), []byte(exampleAPIKey+"\n"))
		}
	}
	out, err := run(t, environ, "tokenbroker", helmTest...)
	if err != nil {
		t.Errorf("helm test's command against the broker: %v", err)
	} else if slices.Contains(helmTest, "--api-key-file") && !strings.Contains(out, "ListVendors: 6 vendors") {
		t.Errorf("helm test's command printed %q, want ListVendors' six vendors", out)
	}
}

// helmTestArgs returns the helm test pod's command, after checking it
// reaches the Service over the scheme the broker serves, verifies the
// certificate with TLS, and calls ListVendors with a key.
func helmTestArgs(t *testing.T, objects rendered, cfg brokerConfig) []string {
	t.Helper()
	pod := objects.get(t, "Pod", "tokenbroker-test").(*corev1.Pod)
	if pod.Annotations["helm.sh/hook"] != "test" || pod.Spec.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("the test pod is not a helm test hook that runs once: %v, restartPolicy %q", pod.Annotations, pod.Spec.RestartPolicy)
	}
	for key, obj := range objects {
		if svc, ok := obj.(*corev1.Service); ok && labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(pod.Labels)) {
			t.Errorf("%s selects the test pod: callers would reach it", key)
		}
	}
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("test pod containers = %d, want 1", len(pod.Spec.Containers))
	}
	args := slices.Clone(pod.Spec.Containers[0].Args)
	if len(args) == 0 || args[0] != "healthcheck" {
		t.Fatalf("the test pod runs %v, want the broker's healthcheck", args)
	}
	if got := flagValue(t, args, "--addr"); got != "tokenbroker.tokens.svc:8080" {
		t.Errorf("the test pod checks %s, want the Service's HTTP port", got)
	}
	if cfg.TLS.CertFile != "" && flagValue(t, args, "--server-name") != "tokenbroker.tokens.svc" {
		t.Errorf("with TLS the test pod must verify the certificate's name: %v", args)
	}
	if !slices.Contains(args, "--api-key-file") {
		t.Errorf("both CI value sets give the test an API key: %v", args)
	}
	return args
}

func writeFile(t *testing.T, name string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// testTLS returns a CA and a server certificate for 127.0.0.1 and
// tokenbroker.tokens.svc (the Service's name, which helm test verifies) it
// signed,
// PEM: "ca", "cert", "key".
func testTLS(t *testing.T) map[string][]byte {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "tokenbroker"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"tokenbroker.tokens.svc"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return map[string][]byte{
		"ca":   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		"cert": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		"key":  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
	}
}
