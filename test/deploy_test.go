package test

import (
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tokenbroker/tokenbroker/config"
	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
	"github.com/tokenbroker/tokenbroker/internal/app"
	"github.com/tokenbroker/tokenbroker/internal/redistest"
	"github.com/tokenbroker/tokenbroker/vendors"
)

// repoFile reads a file of the repository (tests run in test/).
func repoFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", filepath.FromSlash(path)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// envRefs are the ${NAME} references in a config file.
var envRefs = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

func referencedEnv(configText string) []string {
	var names []string
	for _, m := range envRefs.FindAllStringSubmatch(configText, -1) {
		if !slices.Contains(names, m[1]) {
			names = append(names, m[1])
		}
	}
	sort.Strings(names)
	return names
}

func mapLookup(env map[string]string) config.Lookup {
	return func(name string) (string, bool) {
		v, ok := env[name]
		return v, ok
	}
}

// parseDeployedConfig parses a shipped config as the server would, with
// env as the environment: unknown keys, unset variables and settings or
// profiles the vendors reject all fail.
func parseDeployedConfig(t *testing.T, what, text string, env map[string]string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(text), mapLookup(env))
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if _, err := app.ServiceConfig(cfg, vendors.Default()); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return cfg
}

func listenPort(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	return n
}

// serveDeployedConfig starts a broker from a shipped config rewritten by
// replace (old, new pairs: listeners onto free loopback ports, Redis and
// the simulator onto the test's).
func serveDeployedConfig(t *testing.T, text string, env map[string]string, replace ...string) (*app.App, tokenbrokerv1.TokenServiceClient) {
	t.Helper()
	text = strings.NewReplacer(replace...).Replace(text)
	cfg, err := config.Parse([]byte(text), mapLookup(env))
	if err != nil {
		t.Fatal(err)
	}
	b := startBroker(t, nil, cfg)
	return b.app, b.client
}

func httpStatus(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// The parts of docker-compose.yml the checks read.
type composeFile struct {
	Services map[string]composeService `yaml:"services"`
}

type composeService struct {
	Image       string            `yaml:"image"`
	NetworkMode string            `yaml:"network_mode"`
	Entrypoint  []string          `yaml:"entrypoint"`
	Command     []string          `yaml:"command"`
	Ports       []string          `yaml:"ports"`
	Environment map[string]string `yaml:"environment"`
	Volumes     []string          `yaml:"volumes"`
}

// flagValue returns the value after flag in args.
func flagValue(t *testing.T, args []string, flag string) string {
	t.Helper()
	i := slices.Index(args, flag)
	if i < 0 || i+1 >= len(args) {
		t.Fatalf("%v has no %s value", args, flag)
	}
	return args[i+1]
}

// composeDefault resolves "${NAME:-default}" as docker-compose does with
// NAME unset.
var composeVar = regexp.MustCompile(`^\$\{([A-Za-z_][A-Za-z0-9_]*):-([^}]*)\}$`)

func TestComposeFileMatchesTheServer(t *testing.T) {
	t.Parallel()
	var cf composeFile
	if err := yaml.Unmarshal(repoFile(t, "docker-compose.yml"), &cf); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"redis", "vendorsim", "tokenbroker-1", "tokenbroker-2"} {
		if _, ok := cf.Services[name]; !ok {
			t.Fatalf("docker-compose.yml has no service %s", name)
		}
	}
	sim := cf.Services["vendorsim"]
	if !slices.Equal(sim.Entrypoint, []string{"/vendorsim"}) {
		t.Errorf("vendorsim entrypoint = %v, want the image's /vendorsim", sim.Entrypoint)
	}
	simAddr := flagValue(t, sim.Command, "--addr")
	if host, _, _ := net.SplitHostPort(simAddr); host != "127.0.0.1" {
		t.Errorf("vendorsim --addr %s: the brokers reach it on their shared loopback", simAddr)
	}

	var configs []*config.Config
	var texts []string
	published := map[int]bool{}
	for _, p := range sim.Ports {
		parts := strings.Split(p, ":")
		if len(parts) != 3 || parts[0] != "127.0.0.1" || parts[1] != parts[2] {
			t.Errorf("vendorsim port %q: want 127.0.0.1:P:P (host loopback, same port)", p)
			continue
		}
		n, _ := strconv.Atoi(parts[2])
		published[n] = true
	}
	listened := map[int]string{}
	for _, name := range []string{"tokenbroker-1", "tokenbroker-2"} {
		svc := cf.Services[name]
		if svc.NetworkMode != "service:vendorsim" {
			t.Errorf("%s network_mode = %q, want service:vendorsim", name, svc.NetworkMode)
		}
		if svc.Image != sim.Image {
			t.Errorf("%s image %q, vendorsim %q: one image holds both binaries", name, svc.Image, sim.Image)
		}
		configPath := flagValue(t, svc.Command, "--config")
		var hostFile string
		for _, v := range svc.Volumes {
			parts := strings.Split(v, ":")
			if len(parts) >= 2 && parts[1] == configPath {
				hostFile = strings.TrimPrefix(parts[0], "./")
			}
		}
		if hostFile == "" {
			t.Fatalf("%s: no volume mounts its --config %s", name, configPath)
		}
		text := string(repoFile(t, hostFile))
		env := map[string]string{}
		for k, v := range svc.Environment {
			if m := composeVar.FindStringSubmatch(v); m != nil {
				if m[1] != k {
					t.Errorf("%s: %s defaults from ${%s}", name, k, m[1])
				}
				v = m[2]
			}
			env[k] = v
		}
		if got, want := sortedKeys(env), referencedEnv(text); !slices.Equal(got, want) {
			t.Errorf("%s: environment %v, but %s references %v", name, got, hostFile, want)
		}
		if key, err := base64.StdEncoding.DecodeString(env["TOKENBROKER_CACHE_KEY"]); err != nil || len(key) != 32 {
			t.Errorf("%s: the dev default TOKENBROKER_CACHE_KEY is not base64 of 32 bytes", name)
		}
		cfg := parseDeployedConfig(t, hostFile, text, env)
		for _, addr := range []string{cfg.GRPCAddr, cfg.HTTPAddr} {
			p := listenPort(t, addr)
			if !published[p] {
				t.Errorf("%s listens on %s, not published by the vendorsim service (%v)", name, addr, sim.Ports)
			}
			if other, dup := listened[p]; dup {
				t.Errorf("%s and %s both listen on port %d in one network namespace", name, other, p)
			}
			listened[p] = name
		}
		if cfg.Cache.Redis == nil || !slices.Equal(cfg.Cache.Redis.Addrs, []string{"redis:6379"}) {
			t.Errorf("%s: cache.redis must be the compose service redis:6379", name)
		}
		for id, settings := range cfg.Vendors {
			for k, v := range settings {
				if s, ok := v.(string); ok && strings.HasPrefix(s, "http://") && !strings.HasPrefix(s, "http://"+simAddr+"/") {
					t.Errorf("%s: vendors.%s.%s = %s, not the simulator at %s", name, id, k, s, simAddr)
				}
			}
		}
		configs = append(configs, cfg)
		texts = append(texts, text)
	}
	if len(published) != len(listened) {
		t.Errorf("vendorsim publishes ports %v, the brokers listen on %v", sim.Ports, listened)
	}
	// The replicas differ only in their listeners.
	a, b := *configs[0], *configs[1]
	a.GRPCAddr, a.HTTPAddr, b.GRPCAddr, b.HTTPAddr = "", "", "", ""
	if !reflect.DeepEqual(a, b) {
		t.Error("the two replicas' configs differ beyond grpc_addr and http_addr")
	}

	t.Run("demo profiles get tokens from the simulator through Redis", func(t *testing.T) {
		t.Parallel()
		srv := redistest.Start(t)
		sim := startSim(t)
		simHost := strings.TrimPrefix(sim.URL(), "http://")
		env := map[string]string{"TOKENBROKER_CACHE_KEY": base64.StdEncoding.EncodeToString(make([]byte, 32))}
		a, client := serveDeployedConfig(t, texts[0], env,
			configs[0].GRPCAddr, "127.0.0.1:0", configs[0].HTTPAddr, "127.0.0.1:0",
			"redis:6379", srv.Addr, simAddr, simHost)
		for name := range configs[0].Profiles {
			resp, err := client.GetToken(ctxT(t), &tokenbrokerv1.GetTokenRequest{Profile: name})
			if err != nil {
				t.Errorf("profile %s: %v", name, err)
				continue
			}
			if !sim.ValidToken(configs[0].Profiles[name].Vendor, resp.GetAccessToken()) {
				t.Errorf("profile %s: the simulator did not issue the token", name)
			}
		}
		base := "http://" + a.Server.HTTPAddr().String()
		for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
			if code := httpStatus(t, base+path); code != http.StatusOK {
				t.Errorf("GET %s = %d", path, code)
			}
		}
	})
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// The parts of the Kubernetes manifests the checks read.
type k8sObject struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name   string            `yaml:"name"`
		Labels map[string]string `yaml:"labels"`
	} `yaml:"metadata"`
	Data map[string]string `yaml:"data"`
	Spec struct {
		// Deployment
		Replicas *int `yaml:"replicas"`
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Template struct {
			Metadata struct {
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"metadata"`
			Spec struct {
				SecurityContext struct {
					RunAsNonRoot *bool `yaml:"runAsNonRoot"`
				} `yaml:"securityContext"`
				Containers []k8sContainer `yaml:"containers"`
				Volumes    []struct {
					Name      string `yaml:"name"`
					ConfigMap struct {
						Name string `yaml:"name"`
					} `yaml:"configMap"`
				} `yaml:"volumes"`
			} `yaml:"spec"`
		} `yaml:"template"`
		// Service (selector is a plain map there), PodDisruptionBudget
		Ports []struct {
			Name       string `yaml:"name"`
			Port       int    `yaml:"port"`
			TargetPort string `yaml:"targetPort"`
		} `yaml:"ports"`
		MaxUnavailable *int `yaml:"maxUnavailable"`
	} `yaml:"spec"`
	// ServiceSelector is spec.selector of a Service, decoded separately.
	ServiceSelector map[string]string `yaml:"-"`
}

type k8sContainer struct {
	Name  string   `yaml:"name"`
	Args  []string `yaml:"args"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	Env []struct {
		Name      string `yaml:"name"`
		ValueFrom struct {
			SecretKeyRef struct {
				Name string `yaml:"name"`
				Key  string `yaml:"key"`
			} `yaml:"secretKeyRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	LivenessProbe  k8sProbe `yaml:"livenessProbe"`
	ReadinessProbe k8sProbe `yaml:"readinessProbe"`
	VolumeMounts   []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
}

type k8sProbe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"`
	} `yaml:"httpGet"`
	TimeoutSeconds int `yaml:"timeoutSeconds"`
}

// loadManifests decodes every document of the kustomization's resources.
func loadManifests(t *testing.T) map[string]*k8sObject {
	t.Helper()
	var kust struct {
		Resources []string `yaml:"resources"`
	}
	if err := yaml.Unmarshal(repoFile(t, "deploy/kubernetes/kustomization.yaml"), &kust); err != nil {
		t.Fatal(err)
	}
	objects := map[string]*k8sObject{}
	for _, res := range kust.Resources {
		dec := yaml.NewDecoder(strings.NewReader(string(repoFile(t, "deploy/kubernetes/"+res))))
		for {
			var node yaml.Node
			if err := dec.Decode(&node); err == io.EOF {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", res, err)
			}
			obj := &k8sObject{}
			if err := node.Decode(obj); err != nil {
				t.Fatalf("%s: %v", res, err)
			}
			if obj.Kind == "Service" {
				var svc struct {
					Spec struct {
						Selector map[string]string `yaml:"selector"`
					} `yaml:"spec"`
				}
				if err := node.Decode(&svc); err != nil {
					t.Fatalf("%s: %v", res, err)
				}
				obj.ServiceSelector = svc.Spec.Selector
			}
			objects[obj.Kind+"/"+obj.Metadata.Name] = obj
		}
	}
	return objects
}

func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func TestKubernetesManifestsMatchTheServer(t *testing.T) {
	t.Parallel()
	objects := loadManifests(t)
	deploy, ok := objects["Deployment/tokenbroker"]
	if !ok {
		t.Fatalf("no Deployment tokenbroker in %v", sortedObjectNames(objects))
	}
	if deploy.Spec.Replicas == nil || *deploy.Spec.Replicas != 3 {
		t.Errorf("replicas = %v, want 3", deploy.Spec.Replicas)
	}
	pod := deploy.Spec.Template
	if !selects(deploy.Spec.Selector.MatchLabels, pod.Metadata.Labels) {
		t.Error("the Deployment's selector does not match its pods")
	}
	if rn := pod.Spec.SecurityContext.RunAsNonRoot; rn == nil || !*rn {
		t.Error("pods must run as non-root")
	}
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("containers = %d, want 1", len(pod.Spec.Containers))
	}
	c := pod.Spec.Containers[0]

	// The config: --config names a key of the mounted ConfigMap.
	configPath := flagValue(t, c.Args, "--config")
	var text string
	for _, vm := range c.VolumeMounts {
		if filepath.Dir(configPath) != vm.MountPath {
			continue
		}
		for _, v := range pod.Spec.Volumes {
			if v.Name != vm.Name {
				continue
			}
			cm, ok := objects["ConfigMap/"+v.ConfigMap.Name]
			if !ok {
				t.Fatalf("volume %s: no ConfigMap %s", v.Name, v.ConfigMap.Name)
			}
			text, ok = cm.Data[filepath.Base(configPath)]
			if !ok {
				t.Fatalf("ConfigMap %s has no key %s", v.ConfigMap.Name, filepath.Base(configPath))
			}
		}
	}
	if text == "" {
		t.Fatalf("--config %s is not in a mounted ConfigMap", configPath)
	}

	// Env: exactly the variables the config references, from the Secret.
	env := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom.SecretKeyRef.Name != "tokenbroker-secrets" || e.ValueFrom.SecretKeyRef.Key == "" {
			t.Errorf("env %s does not come from the tokenbroker-secrets Secret", e.Name)
		}
		env[e.Name] = "test-value"
	}
	if got, want := sortedKeys(env), referencedEnv(text); !slices.Equal(got, want) {
		t.Errorf("container env %v, config references %v", got, want)
	}
	env["TOKENBROKER_CACHE_KEY"] = base64.StdEncoding.EncodeToString(make([]byte, 32))
	cfg := parseDeployedConfig(t, "ConfigMap tokenbroker-config", text, env)
	if len(cfg.Clients) == 0 {
		t.Error("the cluster config has no clients: every pod IP would hand out tokens to anyone")
	}

	// Ports: the container's named ports are the config's listeners.
	containerPorts := map[string]int{}
	for _, p := range c.Ports {
		containerPorts[p.Name] = p.ContainerPort
	}
	if containerPorts["grpc"] != listenPort(t, cfg.GRPCAddr) || containerPorts["http"] != listenPort(t, cfg.HTTPAddr) {
		t.Errorf("container ports %v, config grpc_addr %s http_addr %s", containerPorts, cfg.GRPCAddr, cfg.HTTPAddr)
	}
	if pod.Metadata.Annotations["prometheus.io/port"] != strconv.Itoa(containerPorts["http"]) {
		t.Errorf("prometheus.io/port = %q, want the http port", pod.Metadata.Annotations["prometheus.io/port"])
	}
	for name, probe := range map[string]k8sProbe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		if probe.HTTPGet.Port != "http" {
			t.Errorf("%s probe port %q, want the http port", name, probe.HTTPGet.Port)
		}
	}
	if c.LivenessProbe.HTTPGet.Path != "/healthz" || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("probes on %q and %q, want /healthz and /readyz", c.LivenessProbe.HTTPGet.Path, c.ReadinessProbe.HTTPGet.Path)
	}
	if c.ReadinessProbe.TimeoutSeconds < 1 {
		t.Errorf("readiness timeout %ds: /readyz may take up to 1s", c.ReadinessProbe.TimeoutSeconds)
	}

	// Services select the pods and target named container ports.
	services := 0
	for _, obj := range objects {
		if obj.Kind != "Service" {
			continue
		}
		services++
		if !selects(obj.ServiceSelector, pod.Metadata.Labels) {
			t.Errorf("Service %s does not select the pods", obj.Metadata.Name)
		}
		for _, p := range obj.Spec.Ports {
			if cp, ok := containerPorts[p.TargetPort]; !ok || cp != p.Port {
				t.Errorf("Service %s port %s: %d -> %q, container ports %v", obj.Metadata.Name, p.Name, p.Port, p.TargetPort, containerPorts)
			}
		}
	}
	if services == 0 {
		t.Error("no Service")
	}
	pdb, ok := objects["PodDisruptionBudget/tokenbroker"]
	if !ok {
		t.Fatal("no PodDisruptionBudget tokenbroker")
	}
	if !selects(pdb.Spec.Selector.MatchLabels, pod.Metadata.Labels) {
		t.Error("the PodDisruptionBudget does not select the pods")
	}
	if pdb.Spec.MaxUnavailable == nil || *pdb.Spec.MaxUnavailable < 1 || *pdb.Spec.MaxUnavailable >= *deploy.Spec.Replicas {
		t.Errorf("PodDisruptionBudget maxUnavailable = %v", pdb.Spec.MaxUnavailable)
	}

	// The probe and scrape paths are the server's: a broker started from
	// this config (listeners and Redis moved to the test's) answers them.
	srv := redistest.Start(t)
	env["REDIS_PASSWORD"] = "" // the test's Redis has no password
	a, _ := serveDeployedConfig(t, text, env,
		cfg.GRPCAddr, "127.0.0.1:0", cfg.HTTPAddr, "127.0.0.1:0", cfg.Cache.Redis.Addrs[0], srv.Addr)
	base := "http://" + a.Server.HTTPAddr().String()
	for _, path := range []string{c.LivenessProbe.HTTPGet.Path, c.ReadinessProbe.HTTPGet.Path, pod.Metadata.Annotations["prometheus.io/path"]} {
		start := time.Now()
		if code := httpStatus(t, base+path); code != http.StatusOK {
			t.Errorf("GET %s = %d, want 200", path, code)
		}
		if took := time.Since(start); took > time.Second {
			t.Errorf("GET %s took %v", path, took)
		}
	}
}

func sortedObjectNames(m map[string]*k8sObject) []string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}
