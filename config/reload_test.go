package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// TestSecretFileLongerThanOneRead: a reader that returns one byte per Read
// (as pipes and network file systems may) still yields the whole secret.
func TestSecretFileLongerThanOneRead(t *testing.T) {
	t.Parallel()
	want := strings.Repeat("0123456789abcdef", 1000) // 16000 bytes
	got, err := readBounded(iotest.OneByteReader(strings.NewReader(want)), "test")
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatalf("read %d bytes, want %d", len(got), len(want))
	}
	if _, err := readBounded(strings.NewReader(strings.Repeat("x", maxSecretFile+1)), "big"); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("oversized secret: err = %v", err)
	}
}

func TestSecretFileReadWhole(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "secret")
	want := strings.Repeat("s", maxSecretFile-1)
	if err := os.WriteFile(path, []byte(want+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := ResolveSecret("file:"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.Reveal() != want {
		t.Fatalf("secret has %d bytes, want %d", len(got.Reveal()), len(want))
	}
}

func TestAPIKeyHashesOneOrList(t *testing.T) {
	t.Parallel()
	cfg, err := Parse([]byte(`
clients:
  one: {api_key_sha256: aa, allow: [p]}
  two:
    api_key_sha256: [bb, cc]
    allow: [p]
`), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Clients["one"].APIKeySHA256; !slices.Equal(got, Hashes{"aa"}) {
		t.Errorf("one = %v", got)
	}
	if got := cfg.Clients["two"].APIKeySHA256; !slices.Equal(got, Hashes{"bb", "cc"}) {
		t.Errorf("two = %v", got)
	}
	if _, err := Parse([]byte("clients:\n  x: {api_key_sha256: {a: b}, allow: [p]}\n"), nil); err == nil {
		t.Error("a map as api_key_sha256 was accepted")
	}
}

func TestSecretFilesAndShutdownDelay(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key")
	if err := os.WriteFile(keyFile, []byte("k"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse([]byte("shutdown_delay: 7s\ncache:\n  encryption_keys: [\"file:"+keyFile+"\"]\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.SecretFiles(); !slices.Equal(got, []string{keyFile}) {
		t.Errorf("SecretFiles() = %v", got)
	}
	if cfg.ShutdownDelay != 7*time.Second {
		t.Errorf("shutdown_delay = %s", cfg.ShutdownDelay)
	}
	for _, bad := range []string{"soon", "-1s"} {
		if _, err := Parse([]byte("shutdown_delay: "+bad+"\n"), nil); err == nil || !strings.Contains(err.Error(), "shutdown_delay") {
			t.Errorf("shutdown_delay %q: err = %v", bad, err)
		}
	}
}
