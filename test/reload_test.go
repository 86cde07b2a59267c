package test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
	"github.com/tokenbroker/tokenbroker/testkit/brokertest"
)

// reloadWithin is how soon a changed file must take effect (README, Zero-downtime operations).
const reloadWithin = 2 * time.Second

// volume is a directory laid out like a Kubernetes ConfigMap or Secret
// volume: the files are symlinks into "..data", itself a symlink to a
// timestamped directory, and an update writes a new directory and swaps
// "..data" in one rename.
type volume struct {
	dir string
	n   int
}

func newVolume(t *testing.T, files map[string]string) *volume {
	t.Helper()
	v := &volume{dir: t.TempDir()}
	v.update(t, files)
	for name := range files {
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(v.dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return v
}

func (v *volume) path(name string) string { return filepath.Join(v.dir, name) }

// update writes files into a new version and swaps it in atomically.
func (v *volume) update(t *testing.T, files map[string]string) {
	t.Helper()
	v.n++
	version := fmt.Sprintf("..v%d", v.n)
	if err := os.Mkdir(filepath.Join(v.dir, version), 0o700); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(v.dir, version, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tmp := filepath.Join(v.dir, "..data_tmp")
	if err := os.Symlink(version, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(v.dir, "..data")); err != nil {
		t.Fatal(err)
	}
}

// reloadsTotal reads tokenbroker_config_reloads_total{result} from
// /metrics (-1 when it cannot).
func (p *proc) reloadsTotal(result string) int {
	code, body := p.get("/metrics")
	if code != http.StatusOK {
		return -1
	}
	m := regexp.MustCompile(`(?m)^tokenbroker_config_reloads_total\{result="` + result + `"\} (\d+)`).FindStringSubmatch(body)
	if m == nil {
		return -1
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// withKey is ctx carrying an API key as gRPC metadata.
func withKey(ctx context.Context, key string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+key)
}

// reloadConfig renders a configuration of the reload test.
type reloadConfig struct {
	grpcAddr, httpAddr, simURL, secretFile string
	profiles                               []string // besides acme-sd
	keys                                   []string // billing's API keys
	extra                                  string
}

func (c reloadConfig) yaml() string {
	var b strings.Builder
	fmt.Fprintf(&b, "grpc_addr: %s\nhttp_addr: %s\nshutdown_delay: 0s\n", c.grpcAddr, c.httpAddr)
	fmt.Fprintf(&b, "vendors:\n  smartdocumentor:\n    token_url: %s/smartdocumentor/connect/token\n", c.simURL)
	fmt.Fprintf(&b, "profiles:\n  acme-sd:\n    vendor: smartdocumentor\n    credentials: {client_id: demo-client, client_secret: \"file:%s\"}\n", c.secretFile)
	for _, name := range c.profiles {
		fmt.Fprintf(&b, "  %s:\n    vendor: smartdocumentor\n    credentials: {client_id: demo-client, client_secret: demo-secret}\n", name)
	}
	hashes := make([]string, len(c.keys))
	for i, k := range c.keys {
		hashes[i] = sha256Hex(k)
	}
	fmt.Fprintf(&b, "clients:\n  billing:\n    api_key_sha256: [%s]\n    allow: [%s]\n", strings.Join(hashes, ", "), strings.Join(append([]string{"acme-sd"}, c.profiles...), ", "))
	return b.String() + c.extra
}

// TestReloadUnderLoad changes a running server's configuration step by
// step while callers keep calling: each change takes effect within 2 s,
// an invalid file and a change that needs a restart are refused while the
// previous configuration keeps serving, and not one call fails.
func TestReloadUnderLoad(t *testing.T) {
	bin := brokertest.ServerBinary(t)
	sim := brokertest.StartSim(t)
	// The rotated vendor secret is valid too (the vendor's overlap).
	sim.AddAccount("smartdocumentor", map[string]string{"client_id": "demo-client", "client_secret": "rotated-secret"})

	secrets := newVolume(t, map[string]string{"client_secret": "demo-secret\n"})
	p := newProc(t, bin, "")
	cfg := reloadConfig{grpcAddr: p.GRPCAddr, httpAddr: p.HTTPAddr, simURL: sim.URL(), secretFile: secrets.path("client_secret"),
		profiles: []string{"old-sd"}, keys: []string{"key-one"}}
	config := newVolume(t, map[string]string{"tokenbroker.yaml": cfg.yaml()})
	p.SetConfigPath(config.path("tokenbroker.yaml"))
	if err := p.start(); err != nil {
		t.Fatal(err)
	}
	write := func(c reloadConfig) time.Time {
		config.update(t, map[string]string{"tokenbroker.yaml": c.yaml()})
		return time.Now()
	}

	conn, err := grpc.NewClient(p.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	client := tokenbrokerv1.NewTokenServiceClient(conn)
	call := func(key, profile string) (*tokenbrokerv1.GetTokenResponse, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return client.GetToken(withKey(ctx, key), &tokenbrokerv1.GetTokenRequest{Profile: profile})
	}
	// The callers use the current key; the rotation below moves them to
	// the new one while both are configured.
	var currentKey atomic.Value
	currentKey.Store("key-one")
	callers := startCallers(t)
	var stats callerStats
	callers.run(8, 5*time.Millisecond, &stats, func(int) error {
		_, err := call(currentKey.Load().(string), "acme-sd")
		return err
	})
	if brokertest.Poll(30*time.Second, brokertest.Holds(func() bool { return stats.ok.Load() >= 50 })) != nil {
		t.Fatalf("callers do not get going: %s", &stats)
	}

	// effective waits for cond after a change written at since.
	effective := func(step string, since time.Time, cond func() bool) {
		t.Helper()
		if brokertest.Poll(10*time.Second, brokertest.Holds(cond)) != nil {
			t.Fatalf("%s: not in effect after 10s", step)
		}
		took := time.Since(since)
		t.Logf("%s: in effect after %v", step, took.Round(time.Millisecond))
		if took > reloadWithin {
			t.Errorf("%s took %v, more than %v", step, took, reloadWithin)
		}
	}
	codeOf := func(key, profile string) codes.Code {
		_, err := call(key, profile)
		return status.Code(err)
	}

	cfg.profiles = []string{"old-sd", "new-sd"}
	effective("add a profile", write(cfg), func() bool { return codeOf("key-one", "new-sd") == codes.OK })

	cfg.profiles = []string{"new-sd"}
	effective("remove a profile", write(cfg), func() bool { return codeOf("key-one", "old-sd") == codes.PermissionDenied })

	before, err := call("key-one", "acme-sd")
	if err != nil {
		t.Fatal(err)
	}
	issued := sim.Issued("smartdocumentor")
	since := time.Now()
	secrets.update(t, map[string]string{"client_secret": "rotated-secret\n"})
	effective("change a profile's file: secret", since, func() bool {
		r, err := call("key-one", "acme-sd")
		return err == nil && r.AccessToken != before.AccessToken && sim.Issued("smartdocumentor") > issued
	})

	cfg.keys = []string{"key-one", "key-two"}
	effective("add an API key", write(cfg), func() bool { return codeOf("key-two", "acme-sd") == codes.OK })
	currentKey.Store("key-two")
	callsWithNewKey := stats.ok.Load()
	if brokertest.Poll(10*time.Second, brokertest.Holds(func() bool { return stats.ok.Load() > callsWithNewKey+50 })) != nil {
		t.Fatal("callers stalled after switching keys")
	}

	cfg.keys = []string{"key-two"}
	effective("remove an API key", write(cfg), func() bool { return codeOf("key-one", "acme-sd") == codes.Unauthenticated })

	invalid := p.reloadsTotal("invalid")
	broken := cfg
	broken.extra = "profilez: {}\n" // an unknown key: the whole file is refused
	broken.profiles = []string{"new-sd", "never-sd"}
	effective("an invalid file is rejected", write(broken), func() bool { return p.reloadsTotal("invalid") == invalid+1 })
	if got := codeOf("key-two", "never-sd"); got != codes.PermissionDenied {
		t.Errorf("a profile of the rejected file answers %v", got)
	}
	if got := codeOf("key-two", "new-sd"); got != codes.OK {
		t.Errorf("after the rejected file the previous configuration does not serve: %v", got)
	}

	refused := p.reloadsTotal("restart_required")
	moved := cfg
	moved.grpcAddr = "127.0.0.1:1"
	moved.profiles = []string{"new-sd", "never-sd"}
	effective("a change that needs a restart is refused", write(moved), func() bool { return p.reloadsTotal("restart_required") == refused+1 })
	if got := codeOf("key-two", "never-sd"); got != codes.PermissionDenied {
		t.Errorf("a profile of the refused file answers %v: part of it was applied", got)
	}

	// Back to a good file, then SIGHUP: it reloads and does not end the
	// process.
	ok := p.reloadsTotal("ok")
	write(cfg)
	if brokertest.Poll(10*time.Second, brokertest.Holds(func() bool { return p.reloadsTotal("ok") == ok+1 })) != nil {
		t.Fatal("the good file was not reloaded")
	}
	if err := p.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	effective("SIGHUP reloads", time.Now(), func() bool { return p.reloadsTotal("ok") == ok+2 })

	logs, err := os.ReadFile(p.LogFile())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`"configuration reload rejected, the previous configuration keeps serving: config [^ ]+: line \d+: field profilez not found`),
		regexp.MustCompile(`"configuration reload refused: grpc_addr changed, which needs a restart; nothing in the file was applied`),
	} {
		if n := len(want.FindAllIndex(logs, -1)); n != 1 {
			t.Errorf("the log says %d times %s", n, want)
		}
	}
	for _, secret := range []string{"demo-secret", "rotated-secret", "key-one", "key-two"} {
		if strings.Contains(string(logs), secret) {
			t.Errorf("the log holds the secret %q", secret)
		}
	}

	callers.stop()
	t.Logf("callers during the reloads: %s", &stats)
	if stats.failed.Load() != 0 {
		t.Fatalf("failed calls: %s", &stats)
	}
}
