package brokertest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// ServerBinary returns ./cmd/server built for this test process: with
// -race when the test binary was built with -race. The first call builds
// it (go build, a warm cache makes that a link); every later call of the
// process returns the same file. RunTests removes it.
func ServerBinary(t testing.TB) string {
	t.Helper()
	return BuildServer(t, raceEnabled)
}

// BuildServer is ServerBinary with the race detector chosen by the caller
// (the chaos run's CHAOS_RACE=0). Each flavour is built once per process.
func BuildServer(t testing.TB, race bool) string {
	t.Helper()
	path, err := builds[race]()
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// builds holds one build per flavour: false without, true with -race.
var builds = map[bool]func() (string, error){
	false: sync.OnceValues(func() (string, error) { return buildServer("tokenbroker-server") }),
	true:  sync.OnceValues(func() (string, error) { return buildServer("tokenbroker-server-race", "-race") }),
}

// binDir is the directory of the builds, made on first use.
var (
	binDirMu sync.Mutex
	binDir   string
)

// RunTests runs m and then removes the binaries ServerBinary built. A
// TestMain that starts server processes ends with
// os.Exit(brokertest.RunTests(m)).
func RunTests(m *testing.M) int {
	code := m.Run()
	binDirMu.Lock()
	defer binDirMu.Unlock()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	return code
}

// buildServer compiles ./cmd/server of this module into binDir as name.
func buildServer(name string, flags ...string) (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("brokertest: building ./cmd/server needs go on PATH: %v", err)
	}
	root, err := moduleRoot(goBin)
	if err != nil {
		return "", err
	}
	binDirMu.Lock()
	if binDir == "" {
		binDir, err = os.MkdirTemp("", "tokenbroker-test-bin-")
	}
	dir := binDir
	binDirMu.Unlock()
	if err != nil {
		return "", fmt.Errorf("brokertest: %w", err)
	}
	bin := filepath.Join(dir, name)
	args := append(append([]string{"build"}, flags...), "-o", bin, "./cmd/server")
	cmd := exec.Command(goBin, args...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("brokertest: go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return bin, nil
}

// moduleRoot is the directory of the go.mod of the package under test (a
// test runs in its package's directory).
func moduleRoot(goBin string) (string, error) {
	out, err := exec.Command(goBin, "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("brokertest: go env GOMOD: %v", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("brokertest: not inside a module (go env GOMOD: %q)", mod)
	}
	return filepath.Dir(mod), nil
}
