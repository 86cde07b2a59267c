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

	"go.yaml.in/yaml/v3"

	"github.com/tokenbroker/tokenbroker/app"
	"github.com/tokenbroker/tokenbroker/config"
	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
	"github.com/tokenbroker/tokenbroker/testkit/brokertest"
	"github.com/tokenbroker/tokenbroker/testkit/redistest"
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
	b := brokertest.StartBroker(t, nil, cfg)
	return b.App, b.Client
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
	Build struct {
		Context string `yaml:"context"`
		Target  string `yaml:"target"`
	} `yaml:"build"`
	Image       string `yaml:"image"`
	Healthcheck struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
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
	stages := dockerfileStages(t)
	if sim.Build.Target != "vendorsim" || !stages["vendorsim"] {
		t.Errorf("vendorsim builds target %q; the Dockerfile's stages are %v", sim.Build.Target, stages)
	}
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
		if svc.Build.Target != "tokenbroker" || !stages["tokenbroker"] || svc.Image == sim.Image {
			t.Errorf("%s builds target %q as %q: want the production image (target tokenbroker), not the simulator's %q", name, svc.Build.Target, svc.Image, sim.Image)
		}
		configPath := flagValue(t, svc.Command, "--config")
		// The image has no shell: the health check is the broker's
		// subcommand, on the config the replica runs with.
		if hc := svc.Healthcheck.Test; len(hc) < 3 || hc[0] != "CMD" || hc[1] != "/tokenbroker" || hc[2] != "healthcheck" || flagValue(t, hc, "--config") != configPath {
			t.Errorf("%s healthcheck %v, want [CMD /tokenbroker healthcheck --config %s]", name, hc, configPath)
		}
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
		sim := brokertest.StartSim(t)
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

// dockerfileStages returns the Dockerfile's stage names, and checks that
// every base image that is not a stage is pinned by digest.
func dockerfileStages(t *testing.T) map[string]bool {
	t.Helper()
	args := map[string]string{}
	stages := map[string]bool{}
	for _, line := range strings.Split(string(repoFile(t, "Dockerfile")), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		switch strings.ToUpper(fields[0]) {
		case "ARG":
			if name, value, ok := strings.Cut(fields[1], "="); ok {
				args[name] = strings.Trim(value, `"`)
			}
		case "FROM":
			image := fields[1]
			if m := dockerArg.FindStringSubmatch(image); m != nil {
				image = args[m[1]]
			}
			if !stages[image] && !strings.Contains(image, "@sha256:") {
				t.Errorf("Dockerfile: FROM %s is not pinned by digest", fields[1])
			}
			if len(fields) == 4 && strings.EqualFold(fields[2], "AS") {
				stages[fields[3]] = true
			}
		}
	}
	return stages
}

var dockerArg = regexp.MustCompile(`^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$`)
