package config

import (
	"os"
	"strings"
	"testing"
)

// TestREADMEConfigExampleParses keeps the README's configuration reference
// honest: its example must load as it is shown.
func TestREADMEConfigExampleParses(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(raw), "## Configuration")
	if !ok {
		t.Fatal("README has no Configuration section")
	}
	_, block, ok := strings.Cut(rest, "```yaml\n")
	if !ok {
		t.Fatal("the Configuration section has no yaml example")
	}
	block, _, _ = strings.Cut(block, "```")
	env := func(name string) (string, bool) { return "value-of-" + name, true }
	cfg, err := Parse([]byte(block), env)
	if err != nil {
		t.Fatalf("README configuration example: %v", err)
	}
	if cfg.Cache.Redis == nil || len(cfg.Profiles) == 0 {
		t.Fatalf("the example lost its redis or profiles block: %+v", cfg)
	}
}
